package api

import (
	"net/http"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/prometheus/client_golang/prometheus"
)

// Limits bound what one client, authenticated or not, can make a node
// hold (SPEC §6 "Unauthenticated or slow client"). Zero fields take the
// defaults below.
type Limits struct {
	// HeaderTimeout bounds reading a request's headers (default 10 s).
	HeaderTimeout time.Duration
	// BodyTimeout bounds reading a request's body, plus 1 s per MiB the
	// action accepts (default 30 s: 31 s for the 1 MiB actions).
	BodyTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle this long (default 2 min).
	IdleTimeout time.Duration
	// MaxConnections caps open connections in all (0: no cap) and
	// MaxConnectionsPerSource from one address (an IPv6 /64; peers in
	// TrustedProxies are exempt). Enforced by LimitListener.
	MaxConnections, MaxConnectionsPerSource int
	// PerToken and PerSource limit request rates (zero: no limit).
	PerToken, PerSource Rate
}

// Defaults of Limits and of the `coffer server` flags.
const (
	DefaultHeaderTimeout = 10 * time.Second
	DefaultBodyTimeout   = 30 * time.Second
	DefaultIdleTimeout   = 2 * time.Minute
	// DefaultMaxConnectionsPerSource leaves `coffer bench` (64 persistent
	// connections, all to one node at worst) four times its need.
	DefaultMaxConnectionsPerSource = 256
	// DefaultRatePerSource and DefaultRatePerToken are far above what one
	// node serves (about 12,000 requests/s on the benchmark machine), so
	// that `coffer bench` at 64 clients with one token from one host is
	// never throttled; they cap a flood, not normal load.
	DefaultRatePerSource = "50000:100000"
	DefaultRatePerToken  = "50000:100000"
)

// writeMargin is the time an answer may take to be written after the
// action's own time limit.
const writeMargin = 30 * time.Second

func (l Limits) withDefaults() Limits {
	if l.HeaderTimeout <= 0 {
		l.HeaderTimeout = DefaultHeaderTimeout
	}
	if l.BodyTimeout <= 0 {
		l.BodyTimeout = DefaultBodyTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	return l
}

// bodyTimeout is the time allowed to read a body of up to limit bytes.
func (l Limits) bodyTimeout(limit int64) time.Duration {
	mib := (limit + 1<<20 - 1) >> 20
	return l.BodyTimeout + time.Duration(mib)*time.Second
}

// NewHTTPServer returns an http.Server for s with every timeout set: headers
// within HeaderTimeout; a whole request (headers and a 1 MiB body) within
// ReadTimeout, which actions with a larger body extend; the answer within
// WriteTimeout, which a snapshot download extends as it streams.
func (s *Server) NewHTTPServer() *http.Server {
	l := s.cfg.Limits
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: l.HeaderTimeout,
		ReadTimeout:       l.HeaderTimeout + l.bodyTimeout(apitypes.MaxBodyBytes),
		WriteTimeout:      l.HeaderTimeout + l.bodyTimeout(apitypes.MaxBodyBytes) + requestTimeout + writeMargin,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
}

// setBodyDeadline allows limit bytes of body from now on.
func (s *Server) setBodyDeadline(w http.ResponseWriter, limit int64) time.Time {
	d := time.Now().Add(s.cfg.Limits.bodyTimeout(limit))
	_ = http.NewResponseController(w).SetReadDeadline(d) // unsupported only in tests' recorders
	return d
}

// Metrics of the HTTP limits; labelled by kind only (never an address or
// a token).
var (
	rateLimitedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "coffer_http_rate_limited_total", Help: "Requests answered RateLimited, by limit (source or token).",
	}, []string{"limit"})
	connRefusedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "coffer_http_connections_refused_total", Help: "HTTP connections closed at accept, by cap (total or source).",
	}, []string{"cap"})
	openConns = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "coffer_http_open_connections", Help: "HTTP connections open (counted by the connection caps).",
	})
)

// LimitCollectors are the metrics of the HTTP limits, for /metrics.
func LimitCollectors() []prometheus.Collector {
	return []prometheus.Collector{rateLimitedTotal, connRefusedTotal, openConns}
}

// DefaultMaxConnections is half the process's open-file limit (the rest is
// for the Raft log, snapshots, the cluster port and gossip), at most 4096.
func DefaultMaxConnections() int {
	n, ok := openFileLimit()
	if !ok || n/2 >= 4096 {
		return 4096
	}
	return max(int(n/2), 64)
}

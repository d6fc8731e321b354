package api

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// LimitListener caps ln's open connections: at most max in all and
// perSource from one address (an IPv6 /64), 0 meaning no cap. Peers inside
// trusted (reverse proxies, which carry many clients on their connections)
// count toward the total only. A connection over a cap is closed at once,
// before a byte is read, with a reset (no TIME_WAIT is left on the node).
func LimitListener(ln net.Listener, max, perSource int, trusted []netip.Prefix, logger hclog.Logger) net.Listener {
	if max <= 0 && perSource <= 0 {
		return ln
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &limitListener{Listener: ln, max: max, perSource: perSource, trusted: trusted,
		bySource: map[netip.Addr]int{}, logger: logger}
}

type limitListener struct {
	net.Listener
	max, perSource int
	trusted        []netip.Prefix
	logger         hclog.Logger

	mu       sync.Mutex
	total    int
	bySource map[netip.Addr]int
	lastLog  time.Time
	refused  int // since the last log line
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := sourceKey(parseAddr(c.RemoteAddr().String()))
		perSource := !l.isTrusted(src)
		if capName := l.admit(src, perSource); capName != "" {
			connRefusedTotal.WithLabelValues(capName).Inc()
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			c.Close()
			continue
		}
		openConns.Inc()
		return &limitedConn{Conn: c, l: l, src: src, perSource: perSource}, nil
	}
}

func (l *limitListener) isTrusted(a netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// admit counts a new connection from src, or names the cap it exceeds.
func (l *limitListener) admit(src netip.Addr, perSource bool) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	capName := ""
	switch {
	case l.max > 0 && l.total >= l.max:
		capName = "total"
	case perSource && l.perSource > 0 && l.bySource[src] >= l.perSource:
		capName = "source"
	}
	if capName != "" {
		// One line per 10 s at most: a flood must not become a log flood.
		l.refused++
		if now := time.Now(); now.Sub(l.lastLog) >= 10*time.Second {
			l.logger.Warn("HTTP connections refused: over the connection cap", "cap", capName, "source", src.String(),
				"refused", l.refused, "open", l.total, "max_connections", l.max, "max_connections_per_source", l.perSource)
			l.lastLog, l.refused = now, 0
		}
		return capName
	}
	l.total++
	if perSource {
		l.bySource[src]++
	}
	return ""
}

func (l *limitListener) release(src netip.Addr, perSource bool) {
	l.mu.Lock()
	l.total--
	if perSource {
		if n := l.bySource[src] - 1; n > 0 {
			l.bySource[src] = n
		} else {
			delete(l.bySource, src)
		}
	}
	l.mu.Unlock()
	openConns.Dec()
}

type limitedConn struct {
	net.Conn
	l         *limitListener
	src       netip.Addr
	perSource bool
	closed    atomic.Bool
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c.src, c.perSource)
	}
	return err
}

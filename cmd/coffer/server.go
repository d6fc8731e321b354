package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cofferhq/coffer/api"
	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/internal/gctune"
	"github.com/cofferhq/coffer/kms"
	"github.com/cofferhq/coffer/node"
	"github.com/hashicorp/go-hclog"
)

// serverFlags are the flags of `coffer server` (SPEC §4); each is also read
// from COFFER_<FLAG> in upper snake case.
type serverFlags struct {
	nodeID, dataDir, httpAddr, clusterAddr, gossipAddr, advertise string
	bootstrap, dev, logJSON                                       bool
	join                                                          stringList
	rootKeyFile, tlsCert, tlsKey, tlsCA, trustedProxies           string
	auditFile, logLevel, pprofAddr, raftLogStore                  string
	snapshotInterval                                              time.Duration
	snapshotRetain                                                int
	snapshotDir                                                   string
	deadServerCleanup                                             bool
	deadServerThreshold                                           time.Duration
	// HTTP limits (SPEC §6 "Unauthenticated or slow client").
	maxConns, maxConnsPerSource             int
	rateLimitPerSource, rateLimitPerToken   api.Rate
	headerTimeout, bodyTimeout, idleTimeout time.Duration
}

type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

func newServerFlagSet(f *serverFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("coffer server", flag.ContinueOnError)
	fs.StringVar(&f.nodeID, "node-id", "", "unique id of this node (default: the host name)")
	fs.StringVar(&f.dataDir, "data-dir", "", "directory for the Raft log, snapshots and the audit store")
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:7700", "HTTP API listen address")
	fs.StringVar(&f.clusterAddr, "cluster-addr", "127.0.0.1:7701", "Raft and forwarding listen address")
	fs.StringVar(&f.gossipAddr, "gossip-addr", "127.0.0.1:7702", "memberlist gossip listen address")
	fs.StringVar(&f.advertise, "advertise", "", "host peers should use to reach this node (when binding 0.0.0.0)")
	fs.BoolVar(&f.bootstrap, "bootstrap", false, "form a new cluster with this node")
	fs.Var(&f.join, "join", "gossip address of a current member (repeatable; retried until it succeeds)")
	fs.StringVar(&f.rootKeyFile, "root-key-file", "", "file with the cluster root key (base64, one per line, newest last)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate (PEM)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS private key (PEM)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "CA certificate (PEM) that signs every node's certificate")
	fs.StringVar(&f.trustedProxies, "trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For is honoured")
	fs.StringVar(&f.auditFile, "audit-file", "", "also append every audit entry to this file as JSON lines")
	fs.StringVar(&f.logLevel, "log-level", "info", "trace, debug, info, warn or error")
	fs.BoolVar(&f.logJSON, "log-json", false, "log as JSON")
	fs.DurationVar(&f.snapshotInterval, "snapshot-interval", 0, "write a snapshot file this often (e.g. 1h; 0: off)")
	fs.IntVar(&f.snapshotRetain, "snapshot-retain", 7, "automated snapshot files to keep")
	fs.StringVar(&f.snapshotDir, "snapshot-dir", "", "directory of automated snapshot files (default DATA_DIR/snapshots-auto)")
	fs.BoolVar(&f.deadServerCleanup, "dead-server-cleanup", false, "remove servers failed for longer than --dead-server-threshold (keeping a healthy majority)")
	fs.DurationVar(&f.deadServerThreshold, "dead-server-threshold", 5*time.Minute, "how long a server must be failed before cleanup removes it")
	fs.StringVar(&f.raftLogStore, "raft-log-store", "", "Raft log store: wal or bolt (default: wal for a new data dir, else the one it holds)")
	fs.StringVar(&f.pprofAddr, "pprof-addr", "", "serve Go pprof profiles on this address (e.g. 127.0.0.1:6060; keep it private)")
	fs.BoolVar(&f.dev, "dev", false, "run one in-memory node with a fresh root key and print a root token")
	fs.IntVar(&f.maxConns, "max-connections", api.DefaultMaxConnections(),
		"cap on open HTTP connections; more are closed at once (0: no cap; the default is half the open-file limit, at most 4096)")
	fs.IntVar(&f.maxConnsPerSource, "max-connections-per-source", api.DefaultMaxConnectionsPerSource,
		"cap on open HTTP connections from one address (an IPv6 /64); --trusted-proxies are exempt (0: no cap)")
	f.rateLimitPerSource, _ = api.ParseRate(api.DefaultRatePerSource)
	f.rateLimitPerToken, _ = api.ParseRate(api.DefaultRatePerToken)
	fs.Var(&f.rateLimitPerSource, "rate-limit-per-source",
		"requests/s from one address as `RATE[:BURST]` (burst default 2×RATE; 0: no limit); over it: RateLimited 429 with Retry-After")
	fs.Var(&f.rateLimitPerToken, "rate-limit-per-token",
		"requests/s with one token as `RATE[:BURST]` (burst default 2×RATE; 0: no limit); sys/health and /metrics are exempt from both")
	fs.DurationVar(&f.headerTimeout, "http-header-timeout", api.DefaultHeaderTimeout, "time a client has to send a request's headers")
	fs.DurationVar(&f.bodyTimeout, "http-body-timeout", api.DefaultBodyTimeout,
		"time a client has to send a request's body, plus 1s per MiB the action accepts (31s for 1 MiB; sys/restore: +1s per MiB of its limit)")
	fs.DurationVar(&f.idleTimeout, "http-idle-timeout", api.DefaultIdleTimeout, "close a keep-alive connection idle this long")
	return fs
}

// applyEnv sets every flag not given on the command line from its
// COFFER_<FLAG> variable.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(fl *flag.Flag) {
		v := getenv("COFFER_" + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_")))
		if v != "" && err == nil {
			if e := fs.Set(fl.Name, v); e != nil {
				err = fmt.Errorf("COFFER_%s: %w", strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_")), e)
			}
		}
	})
	return err
}

func runServer(args []string) int {
	var f serverFlags
	fs := newServerFlagSet(&f)
	if err := applyEnv(fs, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 2
	}
	// Command-line flags override the environment; a repeatable flag given
	// on the command line replaces the environment's list.
	envJoin := f.join
	f.join = nil
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(f.join) == 0 {
		f.join = envJoin
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "error: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := serve(&f); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	return 0
}

func serve(f *serverFlags) error {
	logger := hclog.New(&hclog.LoggerOptions{Name: "coffer", Level: hclog.LevelFromString(f.logLevel), JSONFormat: f.logJSON, Output: os.Stderr})
	if !gctune.Start() {
		logger.Info("GC headroom left to GOGC/GOMEMLIMIT from the environment")
	}
	cfg := node.Config{
		NodeID: f.nodeID, DataDir: f.dataDir, Dev: f.dev, HTTPAddr: advertisedHTTP(f.httpAddr, f.advertise), ClusterAddr: f.clusterAddr,
		GossipAddr: f.gossipAddr, Advertise: f.advertise, Bootstrap: f.bootstrap, Join: f.join,
		AuditFile: f.auditFile, Logger: logger, RaftLogStore: f.raftLogStore,
		DeadServerCleanup: f.deadServerCleanup, DeadServerThreshold: f.deadServerThreshold,
		SnapshotInterval: f.snapshotInterval, SnapshotRetain: f.snapshotRetain, SnapshotDir: f.snapshotDir,
	}
	if cfg.NodeID == "" {
		if f.dev {
			cfg.NodeID = "dev"
		} else if h, err := os.Hostname(); err == nil {
			cfg.NodeID = h
		}
	}
	var err error
	switch {
	case f.dev && f.rootKeyFile == "":
		line, err := kms.GenerateRootKey()
		if err != nil {
			return err
		}
		cfg.RootKeys, err = kms.ParseRootKeys([]byte(line))
		if err != nil {
			return err
		}
	case f.rootKeyFile == "":
		return errors.New("--root-key-file is required (create one with `coffer operator keygen --out FILE` and use the same file on every node)")
	default:
		if cfg.RootKeys, err = kms.LoadRootKeyFile(f.rootKeyFile); err != nil {
			return err
		}
	}
	var apiTLS *tls.Config
	if f.tlsCert != "" || f.tlsKey != "" || f.tlsCA != "" {
		if apiTLS, cfg.ServerTLS, cfg.ClientTLS, err = loadTLS(f.tlsCert, f.tlsKey, f.tlsCA); err != nil {
			return err
		}
	}
	var proxies []netip.Prefix
	for _, p := range strings.Split(f.trustedProxies, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return fmt.Errorf("--trusted-proxies: %q is not a CIDR: %w", p, err)
		}
		proxies = append(proxies, pfx)
	}

	if f.pprofAddr != "" {
		if err := servePprof(f.pprofAddr, logger); err != nil {
			return err
		}
	}
	limits, err := f.limits()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		return fmt.Errorf("listen on --http-addr %s: %w", f.httpAddr, err)
	}
	ln = api.LimitListener(ln, limits.MaxConnections, limits.MaxConnectionsPerSource, proxies, logger.Named("http"))
	n, err := node.New(cfg)
	if err != nil {
		ln.Close()
		return err
	}
	defer n.Close()
	apiSrv := api.New(n, api.Config{TrustedProxies: proxies, Limits: limits, Extra: map[string]http.Handler{"/metrics": api.MetricsHandler(n)}})
	srv := apiSrv.NewHTTPServer()
	srv.TLSConfig = apiTLS
	srv.ErrorLog = logger.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	errCh := make(chan error, 1)
	go func() {
		if apiTLS != nil {
			errCh <- srv.ServeTLS(ln, "", "")
		} else {
			errCh <- srv.Serve(ln)
		}
	}()
	scheme := "http"
	if apiTLS != nil {
		scheme = "https"
	}
	logger.Info("coffer node started", "node_id", cfg.NodeID, "http", scheme+"://"+ln.Addr().String(), "cluster", n.ClusterAddr(), "dev", f.dev,
		"max_connections", limits.MaxConnections, "max_connections_per_source", limits.MaxConnectionsPerSource,
		"rate_limit_per_source", limits.PerSource.String(), "rate_limit_per_token", limits.PerToken.String())
	warnExposure(logger, ln.Addr().String(), apiTLS != nil, f.clusterAddr, cfg.ServerTLS != nil)
	if f.dev {
		if err := devInit(scheme + "://" + ln.Addr().String()); err != nil {
			return err
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	select {
	case s := <-sig:
		logger.Info("shutting down", "signal", s.String())
	case err := <-errCh:
		return fmt.Errorf("http server: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	return nil
}

// limits checks and returns the HTTP limits of the flags.
func (f *serverFlags) limits() (api.Limits, error) {
	switch {
	case f.maxConns < 0:
		return api.Limits{}, errors.New("--max-connections must be 0 (no cap) or more")
	case f.maxConnsPerSource < 0:
		return api.Limits{}, errors.New("--max-connections-per-source must be 0 (no cap) or more")
	case f.headerTimeout <= 0 || f.bodyTimeout <= 0 || f.idleTimeout <= 0:
		return api.Limits{}, errors.New("--http-header-timeout, --http-body-timeout and --http-idle-timeout must be positive")
	}
	return api.Limits{
		HeaderTimeout: f.headerTimeout, BodyTimeout: f.bodyTimeout, IdleTimeout: f.idleTimeout,
		MaxConnections: f.maxConns, MaxConnectionsPerSource: f.maxConnsPerSource,
		PerSource: f.rateLimitPerSource, PerToken: f.rateLimitPerToken,
	}, nil
}

// warnExposure warns, at start, about a port reachable from other hosts
// without encryption: the HTTP API over plain HTTP (tokens and secret
// values cross the network in clear), and the cluster port without TLS
// (peers authenticate, but Raft traffic — wrapped key material, audit
// entries, encrypted values — is not encrypted).
func warnExposure(logger hclog.Logger, httpAddr string, httpTLS bool, clusterAddr string, clusterTLS bool) {
	if !httpTLS && !loopbackOnly(httpAddr) {
		logger.Warn("SECURITY: the HTTP API is served as plain HTTP on a non-loopback address: tokens and secret values cross the network unencrypted; use --tls-cert, --tls-key and --tls-ca (see docs/OPERATIONS.md)",
			"http_addr", httpAddr)
	}
	if !clusterTLS && !loopbackOnly(clusterAddr) {
		logger.Warn("SECURITY: the cluster port runs without TLS on a non-loopback address: peers are authenticated but the traffic is not encrypted; use --tls-cert, --tls-key and --tls-ca",
			"cluster_addr", clusterAddr)
	}
}

// loopbackOnly reports whether a listen address accepts connections from
// this host only (an empty or unspecified host means every interface).
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.Unmap().IsLoopback()
}

// advertisedHTTP is the API address peers and `node list` show: the bind
// address, with --advertise's host when binding all interfaces.
func advertisedHTTP(bind, advertise string) string {
	host, port, err := net.SplitHostPort(bind)
	if err != nil || advertise == "" {
		return bind
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		ah := advertise
		if h, _, err := net.SplitHostPort(advertise); err == nil {
			ah = h
		}
		return net.JoinHostPort(ah, port)
	}
	return bind
}

// devInit initializes the dev node and prints its root token on stdout
// (the one place Coffer shows a token: the user asked for a dev node).
func devInit(base string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Post(base+"/v1/sys/init", "application/json", bytes.NewReader([]byte("{}")))
		if err == nil {
			var out apitypes.InitResponse
			decErr := json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && decErr == nil {
				fmt.Printf("\nCoffer dev node is running (in memory: everything is lost when it stops).\n\n")
				fmt.Printf("    export COFFER_ADDR=%s\n", base)
				fmt.Printf("    export COFFER_TOKEN=%s\n\n", out.RootToken)
				fmt.Printf("Root token: %s\n\n", out.RootToken)
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("dev node did not become ready within 30s")
		}
		time.Sleep(50 * time.Millisecond) // waiting for our own node to elect itself
	}
}

// loadTLS builds the API's server config and the cluster port's mutual-TLS
// server and client configs from one certificate, key and CA.
func loadTLS(certFile, keyFile, caFile string) (apiTLS, clusterServer, clusterClient *tls.Config, err error) {
	if certFile == "" || keyFile == "" || caFile == "" {
		return nil, nil, nil, errors.New("--tls-cert, --tls-key and --tls-ca go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load TLS certificate/key: %w", err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read --tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, nil, fmt.Errorf("--tls-ca %s holds no PEM certificate", caFile)
	}
	apiTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	clusterServer = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
	// Peers are dialed by address; each node certificate is checked against
	// the cluster CA (its SAN need not match the dialed address).
	clusterClient = &tls.Config{
		Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		VerifyPeerCertificate: verifyAgainst(pool),
	}
	return apiTLS, clusterServer, clusterClient, nil
}

func verifyAgainst(pool *x509.CertPool) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("peer presented no certificate")
		}
		certs := make([]*x509.Certificate, len(raw))
		for i, r := range raw {
			c, err := x509.ParseCertificate(r)
			if err != nil {
				return err
			}
			certs[i] = c
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err
	}
}

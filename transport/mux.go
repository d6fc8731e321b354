package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Defaults; tests shorten them through listen's config.
const (
	defaultHandshakeTimeout = 10 * time.Second
	// Server side idle limit for RPC connections. It must stay well above the
	// client's idle limit so the client, not the server, retires idle pooled
	// connections; otherwise a request could race a server-side close.
	defaultServerIdleTimeout = 5 * time.Minute
	// Once a frame has started arriving, the rest must follow within this.
	defaultFrameTimeout = time.Minute
	// Virtual listeners queue this many routed connections before the router
	// starts waiting (bounded by the handshake timeout) for an Accept.
	acceptBacklog = 64
)

type muxConfig struct {
	handshakeTimeout  time.Duration
	serverIdleTimeout time.Duration
	frameTimeout      time.Duration
}

func defaultMuxConfig() muxConfig {
	return muxConfig{
		handshakeTimeout:  defaultHandshakeTimeout,
		serverIdleTimeout: defaultServerIdleTimeout,
		frameTimeout:      defaultFrameTimeout,
	}
}

// Mux owns the cluster port: one TCP listener whose connections are routed by
// their first byte to Raft's stream layer or to the forwarding RPC server.
type Mux struct {
	ln     net.Listener
	auth   Config
	logger hclog.Logger
	cfg    muxConfig

	raftLn *virtualListener
	rpcLn  *virtualListener

	// ctx is the parent of every RPC handler context; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup // accept loops and routers; not handlers

	mu      sync.Mutex
	conns   map[net.Conn]struct{} // being routed or serving RPC; closed by Close
	serving bool                  // ServeRPC was called
}

// Listen opens the cluster port on addr and starts routing connections from
// peers that prove membership (see Config). It fails if cfg can't
// authenticate peers, e.g. when the node's own certificate lacks the node
// marking for cfg.NodeID.
func Listen(addr string, cfg Config) (*Mux, error) {
	return listen(addr, cfg, defaultMuxConfig())
}

func listen(addr string, auth Config, cfg muxConfig) (*Mux, error) {
	if err := auth.validate(true); err != nil {
		return nil, err
	}
	logger := auth.logger().Named("transport")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on cluster address %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mux{
		ln:     ln,
		auth:   auth,
		logger: logger,
		cfg:    cfg,
		ctx:    ctx,
		cancel: cancel,
		closed: make(chan struct{}),
		conns:  make(map[net.Conn]struct{}),
	}
	m.raftLn = newVirtualListener(m, ln.Addr())
	m.rpcLn = newVirtualListener(m, ln.Addr())
	m.wg.Add(1)
	go m.acceptLoop()
	return m, nil
}

// Addr returns the address the cluster port is bound to.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Close stops the listener, makes both virtual listeners' Accept fail,
// cancels running RPC handlers' contexts and closes RPC connections and those
// still being routed. Raft connections already handed over belong to Raft's
// transport, which closes them itself.
func (m *Mux) Close() error {
	var err error
	m.closeOnce.Do(func() {
		// closed flips under mu so track and ServeRPC, which check it under
		// mu, never register work after this point.
		m.mu.Lock()
		close(m.closed)
		for c := range m.conns {
			c.Close()
		}
		m.mu.Unlock()
		m.cancel()
		err = m.ln.Close()
		m.raftLn.Close()
		m.rpcLn.Close()
		m.wg.Wait()
	})
	return err
}

func (m *Mux) isClosed() bool {
	select {
	case <-m.closed:
		return true
	default:
		return false
	}
}

// track registers a connection so Close can interrupt it; it reports false
// (and closes c) if the mux is already closed.
func (m *Mux) track(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.isClosed() {
		c.Close()
		return false
	}
	m.conns[c] = struct{}{}
	return true
}

func (m *Mux) untrack(c net.Conn) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
}

func (m *Mux) acceptLoop() {
	defer m.wg.Done()
	var backoff time.Duration
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if m.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient failures (EMFILE...) must not kill the cluster port;
			// back off like net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			m.logger.Error("accept failed; retrying", "error", err, "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-m.closed:
				return
			}
			continue
		}
		backoff = 0
		if !m.track(c) {
			return
		}
		m.wg.Add(1)
		go m.route(c)
	}
}

// route authenticates the peer under a deadline, so a silent or slow client
// cannot pin this goroutine, then hands the connection to a virtual
// listener. Nothing but the handshake is read before the peer has proven
// membership: a TLS handshake with a node certificate, or the
// challenge-response of handshake.go.
func (m *Mux) route(raw net.Conn) {
	defer m.wg.Done()
	remote := raw.RemoteAddr().String()
	if err := raw.SetDeadline(time.Now().Add(m.cfg.handshakeTimeout)); err != nil {
		m.drop(raw, raw)
		return
	}
	c, peer, proto, err := m.authenticate(raw)
	if err != nil {
		m.refuse(remote, err)
		m.drop(raw, c)
		return
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		m.drop(raw, c)
		return
	}
	var vl *virtualListener
	var routed net.Conn
	switch proto {
	case ByteRaft:
		vl, routed = m.raftLn, newRaftFilterConn(c, peer, m.refuseRaftRPC)
	case ByteRPC:
		vl, routed = m.rpcLn, &authConn{Conn: c, peer: peer}
	default:
		m.logger.Debug("closing connection with unknown protocol byte", "remote", remote, "peer", peer, "byte", proto)
		m.drop(raw, c)
		return
	}
	// Swap the tracked raw conn for the routed one: a raft conn is Raft's to
	// close from now on; an RPC conn is re-tracked by the RPC server.
	m.untrack(raw)
	if !vl.deliver(routed, m.cfg.handshakeTimeout) {
		m.logger.Debug("no acceptor for routed connection; closing", "remote", remote, "byte", proto)
		c.Close()
	}
}

// authenticate proves the peer's membership and returns the connection to
// use from now on (TLS or raw), the peer's node id and the protocol byte.
func (m *Mux) authenticate(raw net.Conn) (c net.Conn, peer string, proto byte, err error) {
	if m.auth.ServerTLS == nil {
		peer, proto, err = serverHandshake(raw, &m.auth)
		return raw, peer, proto, err
	}
	tc := tls.Server(raw, m.auth.ServerTLS)
	if err := tc.Handshake(); err != nil {
		quiet := errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded)
		return tc, "", 0, &handshakeError{reason: RefusedTLS, quiet: quiet, err: fmt.Errorf("TLS handshake failed: %w", err)}
	}
	if peer, err = peerNodeID(tc); err != nil {
		return tc, "", 0, &handshakeError{reason: RefusedCertificate, err: fmt.Errorf("peer certificate is not a node certificate: %w", err)}
	}
	var b [1]byte
	if _, err := io.ReadFull(tc, b[:]); err != nil {
		return tc, "", 0, classify(err, false)
	}
	return tc, peer, b[0], nil
}

// refuse logs and counts a peer that failed to prove membership. Peers that
// sent nothing (port scans, TCP health checks) are logged at Debug only.
func (m *Mux) refuse(remote string, err error) {
	reason := RefusedHandshake
	var he *handshakeError
	quiet := false
	if errors.As(err, &he) {
		reason, quiet = he.reason, he.quiet
	}
	if quiet || m.isClosed() {
		m.logger.Debug("cluster port: connection closed before authentication", "remote", remote, "error", err)
		return
	}
	m.logger.Warn("cluster port: refused a peer that did not prove membership", "remote", remote, "reason", reason, "error", err)
	m.auth.refused(reason)
}

// refuseRaftRPC logs and counts a Raft RPC whose header doesn't name the
// authenticated peer (the filter closes the connection).
func (m *Mux) refuseRaftRPC(peer, remote, why string) {
	m.logger.Warn("cluster port: refused a Raft RPC", "remote", remote, "peer", peer, "reason", RefusedRaftHeader, "error", why)
	m.auth.refused(RefusedRaftHeader)
}

func (m *Mux) drop(raw, c net.Conn) {
	m.untrack(raw)
	c.Close()
}

// virtualListener is a net.Listener fed by the router instead of the kernel.
type virtualListener struct {
	m         *Mux
	addr      net.Addr
	ch        chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newVirtualListener(m *Mux, addr net.Addr) *virtualListener {
	return &virtualListener{m: m, addr: addr, ch: make(chan net.Conn, acceptBacklog), done: make(chan struct{})}
}

// deliver queues c for Accept, waiting at most wait: with nobody accepting
// (RaftLayer or ServeRPC never called, or closed) the connection is refused
// rather than held forever.
func (l *virtualListener) deliver(c net.Conn, wait time.Duration) bool {
	select {
	case <-l.done:
		return false
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case l.ch <- c:
		// Close may have drained the queue just before this send landed;
		// drain again so the connection is not leaked.
		select {
		case <-l.done:
			l.drain()
		default:
		}
		return true
	case <-l.done:
		return false
	case <-t.C:
		return false
	}
}

func (l *virtualListener) drain() {
	for {
		select {
		case c := <-l.ch:
			c.Close()
		default:
			return
		}
	}
}

func (l *virtualListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: net.ErrClosed}
	}
}

// Close stops this virtual listener only; the cluster port stays open for
// the other protocol. Queued, never-accepted connections are closed.
func (l *virtualListener) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.drain()
	})
	return nil
}

func (l *virtualListener) Addr() net.Addr { return l.addr }

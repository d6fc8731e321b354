package transport

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/cofferhq/coffer/errs"
	"github.com/hashicorp/go-hclog"
)

const (
	maxIdlePerAddr = 32
	// Pooled connections idle longer than this are closed rather than
	// reused. Kept well under the server's idle limit so the client always
	// retires a connection before the server would.
	defaultClientIdleTimeout = 90 * time.Second
)

// RPCClient calls Handlers on other nodes over their cluster port. It keeps
// persistent connections per address and is safe for concurrent use.
type RPCClient struct {
	auth        Config
	logger      hclog.Logger
	idleTimeout time.Duration

	mu     sync.Mutex
	idle   map[string][]*clientConn // LIFO: the warmest connection is last
	closed bool
}

type clientConn struct {
	net.Conn
	br        *bufio.Reader
	fresh     bool // no request sent yet
	broken    bool // closed by a context cancellation
	idleSince time.Time
}

// NewRPCClient returns a client that proves membership with cfg on every
// connection it opens and checks the server's (ServerTLS is not used).
func NewRPCClient(cfg Config) (*RPCClient, error) {
	if err := cfg.validate(false); err != nil {
		return nil, err
	}
	return &RPCClient{
		auth:        cfg,
		logger:      cfg.logger().Named("transport"),
		idleTimeout: defaultClientIdleTimeout,
		idle:        make(map[string][]*clientConn),
	}, nil
}

// Call sends one request to the node at addr and waits for its answer.
//
// It honours ctx: the deadline bounds dialing and the exchange and is passed
// to the remote handler; cancellation closes the connection. Network
// failures, timeouts and cancellation return an *errs.Error with code
// Unavailable ("forward to <addr>: ..."); an error returned by the remote
// handler comes back as an *errs.Error with the remote code and message.
func (c *RPCClient) Call(ctx context.Context, addr string, method uint8, body []byte) ([]byte, error) {
	if len(body) > maxRequestBody {
		return nil, errs.New(errs.TooLarge, "forward to %s: request of %d bytes exceeds the %d-byte frame limit", addr, len(body), maxRequestBody)
	}
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, unavailable(addr, err)
		}
		cc, err := c.get(ctx, addr)
		if err != nil {
			return nil, unavailable(addr, err)
		}
		resp, remote, retry, err := c.roundTrip(ctx, cc, method, body)
		if err == nil {
			c.put(addr, cc)
			if remote != nil {
				return nil, remote
			}
			return resp, nil
		}
		// The connection's state is unknown after any transport error.
		cc.Close()
		if retry && attempt == 0 && ctx.Err() == nil {
			c.logger.Debug("pooled connection was stale; retrying on a new one", "addr", addr, "error", err)
			continue
		}
		return nil, unavailable(addr, err)
	}
}

func unavailable(addr string, err error) *errs.Error {
	return errs.New(errs.Unavailable, "forward to %s: %v", addr, err)
}

// roundTrip writes one request and reads its response on cc. ok responses
// and remote errors leave cc reusable; err means cc is broken. retry reports
// that the request certainly never reached the handler on a connection taken
// from the pool, so sending it again cannot execute it twice.
func (c *RPCClient) roundTrip(ctx context.Context, cc *clientConn, method uint8, body []byte) (resp []byte, remote *errs.Error, retry bool, err error) {
	reused := !cc.fresh
	deadline, hasDeadline := ctx.Deadline()
	cc.SetDeadline(deadline) // zero when ctx has none: no limit
	// A cancel without a deadline can only interrupt blocked I/O by closing.
	stop := context.AfterFunc(ctx, func() { cc.Close() })
	defer func() {
		if !stop() {
			// Cancelled, possibly right as a good answer arrived: the
			// connection is (being) closed and must not be pooled.
			cc.broken = true
		}
		// "i/o timeout" or "use of closed connection" hide the cause. The
		// conn deadline can fire a moment before ctx's own timer marks it.
		switch {
		case err == nil:
		case ctx.Err() != nil:
			err = ctx.Err()
		case hasDeadline && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(deadline):
			err = context.DeadlineExceeded
		}
	}()

	var timeout time.Duration
	if hasDeadline {
		timeout = time.Until(deadline)
	}
	bufs := net.Buffers{encodeRequestHeader(0, method, timeout, len(body)), body}
	if _, err := bufs.WriteTo(cc.Conn); err != nil {
		return nil, nil, reused, err
	}
	cc.fresh = false
	p, n, err := readFrame(cc.br)
	if err != nil {
		// A reset before any answer byte means the peer's socket was closed
		// with our request unread (a read-then-close yields EOF instead), so
		// the handler never saw it.
		return nil, nil, reused && n == 0 && isReset(err), err
	}
	resp, remote, err = decodeResponse(p)
	return resp, remote, false, err
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// get returns a live pooled connection to addr or dials a new one.
func (c *RPCClient) get(ctx context.Context, addr string) (*clientConn, error) {
	now := time.Now()
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, errors.New("client closed")
		}
		pool := c.idle[addr]
		if len(pool) == 0 {
			c.mu.Unlock()
			break
		}
		cc := pool[len(pool)-1]
		pool[len(pool)-1] = nil
		c.idle[addr] = pool[:len(pool)-1]
		c.mu.Unlock()
		// The server never speaks unprompted, so buffered bytes, EOF or an
		// error on an idle connection all mean it is dead (typically the
		// peer restarted). Checking here is what lets a restart go unnoticed
		// by callers.
		if now.Sub(cc.idleSince) < c.idleTimeout && cc.br.Buffered() == 0 && connAlive(cc.Conn) {
			return cc, nil
		}
		cc.Close()
	}
	conn, err := dial(ctx, addr, &c.auth, ByteRPC)
	if err != nil {
		return nil, err
	}
	return &clientConn{Conn: conn, br: bufio.NewReader(conn), fresh: true}, nil
}

func (c *RPCClient) put(addr string, cc *clientConn) {
	if cc.broken {
		cc.Close()
		return
	}
	cc.SetDeadline(time.Time{})
	cc.idleSince = time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	pool := c.idle[addr]
	// Calls take from the top, so after a burst the bottom of the stack can
	// sit unused; retire what outlived the idle limit instead of keeping
	// sockets the server will close anyway.
	for len(pool) > 0 && cc.idleSince.Sub(pool[0].idleSince) >= c.idleTimeout {
		pool[0].Close()
		pool[0] = nil
		pool = pool[1:]
	}
	c.idle[addr] = pool
	if c.closed || len(pool) >= maxIdlePerAddr {
		cc.Close()
		return
	}
	c.idle[addr] = append(pool, cc)
}

// Close closes idle connections; later Calls fail with Unavailable. Calls in
// flight finish and their connections are closed instead of pooled.
func (c *RPCClient) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for addr, pool := range c.idle {
		for _, cc := range pool {
			cc.Close()
		}
		delete(c.idle, addr)
	}
}

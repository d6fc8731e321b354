package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// requestTimeout bounds one request of a run; redialPause is the pause
// after a failed connection attempt.
const (
	requestTimeout = 30 * time.Second
	redialPause    = 50 * time.Millisecond
)

// conn is one closed-loop client's keep-alive HTTP/1.1 connection to one
// node. It writes each request in one syscall and reads the answer on the
// calling goroutine: net/http's client hands every request to a writer and
// a reader goroutine per connection, and at thousands of requests a second
// that cost the load tool more CPU than the nodes spent serving HTTP, on a
// machine where the two share the cores.
type conn struct {
	addr  string // host:port
	host  string // Host header
	tls   *tls.Config
	token string

	mu      sync.Mutex // guards nc against abort
	nc      net.Conn
	aborted bool

	br  *bufio.Reader
	req []byte // reused request buffer
}

func newConn(target, token string, tlsConf *tls.Config) (*conn, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("node URL %q: %w", target, err)
	}
	c := &conn{host: u.Host, token: token}
	switch u.Scheme {
	case "http":
		c.addr = hostPort(u, "80")
	case "https":
		c.addr = hostPort(u, "443")
		c.tls = &tls.Config{MinVersion: tls.VersionTLS12}
		if tlsConf != nil {
			c.tls = tlsConf.Clone()
		}
		if c.tls.ServerName == "" {
			c.tls.ServerName = u.Hostname()
		}
	default:
		return nil, fmt.Errorf("node URL %q: scheme must be http or https", target)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("node URL %q: a node URL has no path", target)
	}
	return c, nil
}

func hostPort(u *url.URL, port string) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// abort closes the connection for good: a run that ends or is canceled
// interrupts the requests in flight.
func (c *conn) abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.aborted = true
	if c.nc != nil {
		_ = c.nc.Close()
	}
}

func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nc != nil {
		_ = c.nc.Close()
		c.nc = nil
	}
}

func (c *conn) dial(ctx context.Context) error {
	d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	var nc net.Conn
	var err error
	if c.tls != nil {
		nc, err = (&tls.Dialer{NetDialer: &d, Config: c.tls}).DialContext(ctx, "tcp", c.addr)
	} else {
		nc, err = d.DialContext(ctx, "tcp", c.addr)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aborted {
		_ = nc.Close()
		return context.Canceled
	}
	c.nc = nc
	if c.br == nil {
		c.br = bufio.NewReaderSize(nc, 16<<10)
	} else {
		c.br.Reset(nc)
	}
	return nil
}

// post sends POST /v1/<action> with a JSON body and returns "" or the
// error code of the answer ("NetworkError", "Canceled" or "HTTP<status>"
// when there is none).
func (c *conn) post(ctx context.Context, action string, body []byte) string {
	if c.nc == nil {
		if err := c.dial(ctx); err != nil {
			// A node that is down refuses at once: pause rather than spin.
			select {
			case <-ctx.Done():
			case <-time.After(redialPause):
			}
			if ctx.Err() != nil {
				return "Canceled"
			}
			return "NetworkError"
		}
	}
	deadline := time.Now().Add(requestTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.nc.SetDeadline(deadline)

	b := append(c.req[:0], "POST /v1/"...)
	b = append(b, action...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.host...)
	b = append(b, "\r\nUser-Agent: coffer-bench\r\nAuthorization: Bearer "...)
	b = append(b, c.token...)
	b = append(b, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	c.req = b
	if _, err := c.nc.Write(b); err != nil {
		return c.failed(ctx)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return c.failed(ctx)
	}
	code := ""
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e) != nil || e.Error.Code == "" {
			code = fmt.Sprintf("HTTP%d", resp.StatusCode)
		} else {
			code = e.Error.Code
		}
	}
	// The body must be read to its end for the next answer to start where
	// it should.
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		if r := c.failed(ctx); r == "Canceled" {
			return r
		}
	}
	_ = resp.Body.Close()
	if resp.Close {
		c.close()
	}
	return code
}

// failed drops the connection after a transport error; the next request
// dials again.
func (c *conn) failed(ctx context.Context) string {
	c.close()
	if ctx.Err() != nil {
		return "Canceled"
	}
	// The connection's deadline is the run's end: it may fire a moment
	// before the context notices.
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return "Canceled"
	}
	return "NetworkError"
}

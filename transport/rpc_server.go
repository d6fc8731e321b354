package transport

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime/debug"
	"time"

	"github.com/cofferhq/coffer/errs"
)

// Handler answers one forwarded request. method and body are opaque to this
// package. A returned error travels to the caller as an *errs.Error (errors
// without a code become Internal with their text, see errs.As), so it must
// not carry secret material; an uncoded context error becomes Unavailable.
// ctx is cancelled when the caller's deadline (sent with the request) passes
// or the mux closes; PeerID(ctx) is the caller's authenticated node id. Only
// peers that proved membership reach a Handler.
type Handler func(ctx context.Context, method uint8, body []byte) ([]byte, error)

// ServeRPC starts serving ByteRPC connections with h in background
// goroutines; it returns at once. Each connection handles its requests one at
// a time (clients pool connections for concurrency). Only the first call has
// an effect; calling it after Close does nothing.
func (m *Mux) ServeRPC(h Handler) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.serving || m.isClosed() {
		m.logger.Error("ServeRPC called twice or after Close; ignoring")
		return
	}
	m.serving = true
	m.wg.Add(1) // under mu: Close cannot be waiting yet
	go func() {
		defer m.wg.Done()
		for {
			c, err := m.rpcLn.Accept()
			if err != nil {
				return
			}
			if !m.track(c) {
				return
			}
			go m.serveRPCConn(c, h)
		}
	}()
}

func (m *Mux) serveRPCConn(c net.Conn, h Handler) {
	defer func() {
		m.untrack(c)
		c.Close()
	}()
	remote := c.RemoteAddr().String()
	peer := Peer(c)
	connCtx := context.WithValue(m.ctx, peerKey{}, peer) // once per connection, not per call
	br := bufio.NewReader(c)
	for {
		// Idle pooled connections are legitimate, but not forever: the idle
		// limit bounds what an abandoned peer can hold.
		c.SetReadDeadline(time.Now().Add(m.cfg.serverIdleTimeout))
		if _, err := br.Peek(1); err != nil {
			m.logConnErr("RPC connection idle read ended", remote, err)
			return
		}
		c.SetReadDeadline(time.Now().Add(m.cfg.frameTimeout))
		p, _, err := readFrame(br)
		if err != nil {
			m.logConnErr("reading RPC request failed", remote, err)
			return
		}
		c.SetReadDeadline(time.Time{})
		method, timeout, body, err := decodeRequest(p)
		if err != nil {
			m.logger.Debug("malformed RPC request; closing", "remote", remote, "error", err)
			return
		}
		resp := m.handle(connCtx, h, method, timeout, body, remote, peer)
		c.SetWriteDeadline(time.Now().Add(m.cfg.frameTimeout))
		if _, err := c.Write(resp); err != nil {
			m.logConnErr("writing RPC response failed", remote, err)
			return
		}
	}
}

func (m *Mux) logConnErr(msg, remote string, err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || m.isClosed() {
		return // normal hang-up or shutdown
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		m.logger.Debug(msg, "remote", remote, "error", err)
		return
	}
	m.logger.Warn(msg, "remote", remote, "error", err)
}

// handle runs h and returns the encoded response frame. A panicking handler
// is a bug, but one request must not take the node (and its Raft
// membership) down with it.
func (m *Mux) handle(ctx context.Context, h Handler, method uint8, timeout time.Duration, body []byte, remote, peer string) (frame []byte) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	defer func() {
		if r := recover(); r != nil {
			m.logger.Error("RPC handler panicked", "method", method, "remote", remote, "peer", peer,
				"panic", r, "stack", string(debug.Stack()))
			frame = encodeResponse(nil, errs.New(errs.Internal, "internal error handling forwarded request"))
		}
	}()
	out, err := h(ctx, method, body)
	if err != nil {
		var coded *errs.Error
		if !errors.As(err, &coded) && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
			// The caller's propagated deadline ran out (or we are shutting
			// down): that is the caller timing out, not a server bug, so it
			// must not surface as Internal.
			return encodeResponse(nil, errs.New(errs.Unavailable, "%v", err))
		}
		return encodeResponse(nil, errs.As(err))
	}
	if len(out)+1 > MaxFrameSize {
		return encodeResponse(nil, errs.New(errs.TooLarge, "response of %d bytes exceeds the %d-byte frame limit", len(out), MaxFrameSize))
	}
	return encodeResponse(out, nil)
}

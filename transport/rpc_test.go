package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/errs"
)

func TestRPCRoundTrip(t *testing.T) {
	m := startMux(t, nil, nil, echo)
	c := newClient(t, nil)
	addr := m.Addr().String()
	for _, tc := range []struct {
		method uint8
		body   []byte
	}{
		{0, nil},
		{1, []byte("hello")},
		{255, bytes.Repeat([]byte{0xab}, 1<<20)},
	} {
		out, err := c.Call(ctxTimeout(t, 5*time.Second), addr, tc.method, tc.body)
		if err != nil {
			t.Fatalf("Call(%d): %v", tc.method, err)
		}
		if out[0] != tc.method || !bytes.Equal(out[1:], tc.body) {
			t.Fatalf("Call(%d) echoed %d bytes, method %d", tc.method, len(out), out[0])
		}
	}
	if n := c.idleCount(addr); n != 1 {
		t.Fatalf("sequential calls left %d idle conns, want 1 reused", n)
	}
}

func TestRemoteErrorKeepsCodeAndMessage(t *testing.T) {
	codes := []errs.Code{errs.NotFound, errs.VersionMismatch, errs.PermissionDenied, errs.FailedPrecondition}
	m := startMux(t, nil, nil, func(_ context.Context, method uint8, _ []byte) ([]byte, error) {
		switch {
		case int(method) < len(codes):
			return nil, errs.New(codes[method], "thing %d", method)
		case method == 100:
			return nil, fmt.Errorf("apply: %w", errs.New(errs.Gone, "destroyed"))
		default:
			return nil, errors.New("plain failure")
		}
	})
	c := newClient(t, nil)
	addr := m.Addr().String()
	check := func(method uint8, code errs.Code, msg string) {
		t.Helper()
		_, err := c.Call(ctxTimeout(t, 5*time.Second), addr, method, nil)
		var e *errs.Error
		if !errors.As(err, &e) || e.Code != code || e.Message != msg {
			t.Fatalf("method %d: err = %#v, want %s %q", method, err, code, msg)
		}
	}
	for i, code := range codes {
		check(uint8(i), code, fmt.Sprintf("thing %d", i))
	}
	check(100, errs.Gone, "destroyed")
	check(101, errs.Internal, "plain failure")
	// An error frame is a complete answer: the connection stays pooled.
	if n := c.idleCount(addr); n != 1 {
		t.Fatalf("idle conns = %d, want 1", n)
	}
}

func TestHandlerPanicAnswersInternal(t *testing.T) {
	m := startMux(t, nil, nil, func(ctx context.Context, method uint8, body []byte) ([]byte, error) {
		if method == 1 {
			panic("boom")
		}
		return echo(ctx, method, body)
	})
	c := newClient(t, nil)
	addr := m.Addr().String()
	for range 3 {
		_, err := c.Call(ctxTimeout(t, 5*time.Second), addr, 1, nil)
		if !errs.Is(err, errs.Internal) {
			t.Fatalf("panicking handler: err = %v, want Internal", err)
		}
		if strings.Contains(err.Error(), "boom") {
			t.Fatalf("panic value leaked to the caller: %v", err)
		}
		if out, err := c.Call(ctxTimeout(t, 5*time.Second), addr, 2, []byte("x")); err != nil || string(out) != "\x02x" {
			t.Fatalf("call after panic = %q, %v", out, err)
		}
	}
}

func TestConcurrentCalls(t *testing.T) {
	var inFlight, peak atomic.Int32
	m := startMux(t, nil, nil, func(ctx context.Context, method uint8, body []byte) ([]byte, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		return echo(ctx, method, body)
	})
	c := newClient(t, nil)
	addr := m.Addr().String()
	var wg sync.WaitGroup
	errc := make(chan error, 100)
	for g := range 100 {
		wg.Go(func() {
			for i := range 20 {
				body := fmt.Appendf(nil, "goroutine %d call %d", g, i)
				out, err := c.Call(ctxTimeout(t, 10*time.Second), addr, uint8(g), body)
				if err != nil {
					errc <- err
					return
				}
				if out[0] != uint8(g) || !bytes.Equal(out[1:], body) {
					errc <- fmt.Errorf("goroutine %d got %q for %q", g, out, body)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if n := c.idleCount(addr); n < 1 || n > maxIdlePerAddr {
		t.Fatalf("idle conns = %d, want 1..%d", n, maxIdlePerAddr)
	}
	t.Logf("peak concurrent handlers: %d", peak.Load())
}

// A peer restart kills every pooled connection; the next call must succeed
// on a fresh one instead of surfacing the stale connection's error.
func TestServerRestartRecoversStalePooledConn(t *testing.T) {
	m := startMux(t, nil, nil, echo)
	addr := m.Addr().String()
	c := newClient(t, nil)
	if _, err := c.Call(ctxTimeout(t, 5*time.Second), addr, 1, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if c.idleCount(addr) == 0 {
			t.Fatal("no pooled conn to go stale")
		}
		m.Close()
		m = startMuxAt(t, addr, nil, nil, echo, testConfig())
		out, err := c.Call(ctxTimeout(t, 5*time.Second), addr, uint8(i), []byte("again"))
		if err != nil || string(out) != string(rune(i))+"again" {
			t.Fatalf("restart %d: Call = %q, %v", i, out, err)
		}
	}
}

// fakeServer speaks the RPC protocol by hand so tests can break connections
// at exact points.
type fakeServer struct {
	ln    net.Listener
	conns atomic.Int32
}

func newFakeServer(t *testing.T, serve func(n int, c *net.TCPConn, br *bufio.Reader)) *fakeServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fakeServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(fs.conns.Add(1))
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, proto, err := serverHandshake(c, &Config{NodeID: "fake", Keys: testKeys}); err != nil || proto != ByteRPC {
					return
				}
				c.SetDeadline(time.Time{})
				serve(n, c.(*net.TCPConn), bufio.NewReader(c))
			}()
		}
	}()
	return fs
}

func answer(c net.Conn, br *bufio.Reader) error {
	p, _, err := readFrame(br)
	if err != nil {
		return err
	}
	_, _, body, err := decodeRequest(p)
	if err != nil {
		return err
	}
	_, err = c.Write(encodeResponse(body, nil))
	return err
}

// The first connection answers once, then is reset with the next request
// unread, as a restarting peer does: the pooled connection passes the
// liveness check, fails before any answer byte, and Call retries once.
func TestStaleConnResetIsRetriedOnce(t *testing.T) {
	fs := newFakeServer(t, func(n int, c *net.TCPConn, br *bufio.Reader) {
		if n == 1 {
			if answer(c, br) != nil {
				return
			}
			br.Peek(1)     // the next request has arrived...
			c.SetLinger(0) // ...and is dropped with a reset
			return
		}
		for answer(c, br) == nil {
		}
	})
	c := newClient(t, nil)
	addr := fs.ln.Addr().String()
	if _, err := c.Call(ctxTimeout(t, 5*time.Second), addr, 1, []byte("one")); err != nil {
		t.Fatal(err)
	}
	out, err := c.Call(ctxTimeout(t, 5*time.Second), addr, 1, []byte("two"))
	if err != nil || string(out) != "two" {
		t.Fatalf("Call over reset pooled conn = %q, %v; want a transparent retry", out, err)
	}
	if n := fs.conns.Load(); n != 2 {
		t.Fatalf("server saw %d conns, want 2", n)
	}
}

// A connection closed after the server read the request may have executed
// it: Call must not send it again.
func TestNoRetryAfterRequestWasRead(t *testing.T) {
	fs := newFakeServer(t, func(n int, c *net.TCPConn, br *bufio.Reader) {
		if n == 1 {
			if answer(c, br) != nil {
				return
			}
			readFrame(br) // read the second request, then "crash"
			return
		}
		for answer(c, br) == nil {
		}
	})
	c := newClient(t, nil)
	addr := fs.ln.Addr().String()
	if _, err := c.Call(ctxTimeout(t, 5*time.Second), addr, 1, nil); err != nil {
		t.Fatal(err)
	}
	_, err := c.Call(ctxTimeout(t, 5*time.Second), addr, 1, nil)
	if !errs.Is(err, errs.Unavailable) || !strings.Contains(err.Error(), "forward to "+addr) {
		t.Fatalf("err = %v, want Unavailable naming the address", err)
	}
	if n := fs.conns.Load(); n != 1 {
		t.Fatalf("server saw %d conns, want 1 (no retry)", n)
	}
	// The broken conn was discarded: the next call dials afresh.
	if _, err := c.Call(ctxTimeout(t, 5*time.Second), addr, 1, nil); err != nil {
		t.Fatalf("call after failure: %v", err)
	}
}

func TestCallContextDeadlineAndCancel(t *testing.T) {
	started := make(chan struct{}, 1)
	handlerDone := make(chan error, 1)
	m := startMux(t, nil, nil, func(ctx context.Context, method uint8, body []byte) ([]byte, error) {
		if method != 1 {
			return echo(ctx, method, body)
		}
		started <- struct{}{}
		<-ctx.Done() // the caller's deadline travels with the request
		handlerDone <- ctx.Err()
		return nil, ctx.Err()
	})
	c := newClient(t, nil)
	addr := m.Addr().String()

	t.Run("deadline", func(t *testing.T) {
		begin := time.Now()
		_, err := c.Call(ctxTimeout(t, 100*time.Millisecond), addr, 1, nil)
		if !errs.Is(err, errs.Unavailable) || !strings.Contains(err.Error(), "deadline exceeded") {
			t.Fatalf("err = %v, want Unavailable deadline exceeded", err)
		}
		if d := time.Since(begin); d > 3*time.Second {
			t.Fatalf("Call took %v past its deadline", d)
		}
		<-started
		select {
		case err := <-handlerDone:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("handler ctx ended with %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("handler context was not cancelled by the propagated deadline")
		}
	})

	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			<-started
			cancel()
		}()
		_, err := c.Call(ctx, addr, 1, nil)
		if !errs.Is(err, errs.Unavailable) || !strings.Contains(err.Error(), "canceled") {
			t.Fatalf("err = %v, want Unavailable canceled", err)
		}
		// No deadline was sent, so the handler ends when the mux closes.
	})

	if out, err := c.Call(ctxTimeout(t, 5*time.Second), addr, 2, []byte("ok")); err != nil || string(out) != "\x02ok" {
		t.Fatalf("call after timeouts = %q, %v", out, err)
	}
	if _, err := c.Call(ctxTimeout(t, -time.Second), addr, 2, nil); !errs.Is(err, errs.Unavailable) {
		t.Fatalf("expired ctx: err = %v, want Unavailable", err)
	}
}

func TestFrameLimits(t *testing.T) {
	m := startMux(t, nil, nil, echo)
	addr := m.Addr().String()

	_, err := newClient(t, nil).Call(ctxTimeout(t, 5*time.Second), addr, 1, make([]byte, maxRequestBody+1))
	if !errs.Is(err, errs.TooLarge) {
		t.Fatalf("oversized request: err = %v, want TooLarge", err)
	}

	conn := dialRaw(t, addr, "node-2", ByteRPC)
	hdr := []byte{0, 0, 0, 0}
	putFrameHeader(hdr, MaxFrameSize+1)
	conn.Write(hdr)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatalf("server answered %d bytes to an oversized frame, want close", n)
	}
}

func TestClientClose(t *testing.T) {
	m := startMux(t, nil, nil, echo)
	c, err := NewRPCClient(Config{NodeID: "node-2", Keys: testKeys})
	if err != nil {
		t.Fatal(err)
	}
	addr := m.Addr().String()
	if _, err := c.Call(ctxTimeout(t, 5*time.Second), addr, 1, nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n := c.idleCount(addr); n != 0 {
		t.Fatalf("idle conns after Close = %d", n)
	}
	if _, err := c.Call(ctxTimeout(t, 5*time.Second), addr, 1, nil); !errs.Is(err, errs.Unavailable) {
		t.Fatalf("Call after Close = %v, want Unavailable", err)
	}
}

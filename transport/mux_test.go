package transport

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/cofferhq/coffer/errs"
	"github.com/hashicorp/raft"
)

// Raft's real NetworkTransport and the forwarding RPC run side by side on the
// same cluster port.
func TestRaftAndRPCShareOnePort(t *testing.T) {
	a := startMux(t, nil, nil, nil)
	b := startMux(t, nil, nil, echo)

	ta := raft.NewNetworkTransport(a.RaftLayer(nil), 2, 5*time.Second, io.Discard)
	tb := raft.NewNetworkTransport(b.RaftLayer(nil), 2, 5*time.Second, io.Discard)
	t.Cleanup(func() { ta.Close(); tb.Close() })
	if got, want := string(tb.LocalAddr()), b.Addr().String(); got != want {
		t.Fatalf("raft local addr = %s, want %s", got, want)
	}

	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case rpc := <-tb.Consumer():
				req, ok := rpc.Command.(*raft.AppendEntriesRequest)
				if !ok {
					rpc.Respond(nil, errors.New("unexpected command"))
					continue
				}
				rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: req.Entries[0].Index, Success: true}, nil)
			case <-done:
				return
			}
		}
	}()

	req := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("node-1"), Addr: []byte(a.Addr().String())},
		Term:      7,
		Entries:   []*raft.Log{{Index: 42, Term: 7, Type: raft.LogCommand, Data: []byte("opaque")}},
	}
	var resp raft.AppendEntriesResponse
	if err := ta.AppendEntries("b", raft.ServerAddress(b.Addr().String()), req, &resp); err != nil {
		t.Fatalf("AppendEntries: %v", err)
	}
	if !resp.Success || resp.Term != 7 || resp.LastLog != 42 {
		t.Fatalf("unexpected response %+v", resp)
	}

	// The RPC on the same port still works while Raft holds its connection.
	c := newClient(t, nil)
	out, err := c.Call(ctxTimeout(t, 5*time.Second), b.Addr().String(), 9, []byte("hi"))
	if err != nil || string(out) != "\x09hi" {
		t.Fatalf("Call = %q, %v", out, err)
	}
}

func TestRaftLayerRoutesByFirstByte(t *testing.T) {
	a := startMux(t, nil, nil, nil)
	b := startMux(t, nil, nil, nil)
	la, lb := a.RaftLayer(nil), b.RaftLayer(nil)

	conn, err := la.Dial(raft.ServerAddress(b.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	ping := encodeRaftRPC(t, rpcTimeoutNow, &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{ID: []byte("node-1")}})
	if _, err := conn.Write(ping); err != nil {
		t.Fatal(err)
	}
	in, err := lb.Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	defer in.Close()
	buf := make([]byte, len(ping))
	in.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(in, buf); err != nil || !bytes.Equal(buf, ping) {
		t.Fatalf("read %q, %v (the handshake must have been consumed)", buf, err)
	}

	adv := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 8301}
	if got := b.RaftLayer(adv).Addr(); got != adv {
		t.Fatalf("Addr = %v, want advertise %v", got, adv)
	}
	if got := lb.Addr().String(); got != b.Addr().String() {
		t.Fatalf("Addr = %v, want bound %v", got, b.Addr())
	}
}

func TestUnknownFirstByteIsClosed(t *testing.T) {
	var logs logBuffer
	m, err := listen("127.0.0.1:0", Config{NodeID: "node-1", Keys: testKeys, Logger: bufferLogger(&logs)}, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.ServeRPC(echo)

	cfg := Config{NodeID: "node-2", Keys: testKeys}
	if c, err := dial(ctxTimeout(t, 5*time.Second), m.Addr().String(), &cfg, 0x7f); err == nil {
		c.Close()
		t.Fatal("handshake with an unknown protocol byte succeeded")
	}
	waitFor(t, "debug log of the unknown byte", func() bool { return logs.contains("unknown protocol byte") })
}

// A client that connects and says nothing is dropped after the handshake
// timeout instead of holding a goroutine forever, with and without TLS.
func TestSilentClientIsDropped(t *testing.T) {
	ca := newTestCA(t, "ca")
	srvTLS, cliTLS := tlsPair(t, ca, "node")
	for name, cfg := range map[string]struct{ srv, cli *tls.Config }{"plain": {}, "tls": {srvTLS, cliTLS}} {
		t.Run(name, func(t *testing.T) {
			mc := testConfig()
			mc.handshakeTimeout = 100 * time.Millisecond
			m := startMuxAt(t, "127.0.0.1:0", cfg.srv, cfg.cli, echo, mc)
			conn, err := net.Dial("tcp", m.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			// The plaintext server sends its hello, then hangs up.
			if _, err := io.Copy(io.Discard, conn); errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read = %v, want the connection closed by the server", err)
			}
		})
	}
}

func TestCloseStopsAccept(t *testing.T) {
	m := startMux(t, nil, nil, echo)
	layer := m.RaftLayer(nil)
	addr := m.Addr().String()
	accepted := make(chan error, 1)
	go func() {
		_, err := layer.Accept()
		accepted <- err
	}()
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-accepted:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
	if _, err := layer.Accept(); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
	m.Close() // idempotent

	_, err := newClient(t, nil).Call(ctxTimeout(t, 5*time.Second), addr, 1, nil)
	if !errs.Is(err, errs.Unavailable) {
		t.Fatalf("Call to a closed mux = %v, want Unavailable", err)
	}
}

// Closing Raft's layer (as NetworkTransport.Close does) leaves the RPC side
// of the port working.
func TestRaftLayerCloseKeepsRPC(t *testing.T) {
	m := startMux(t, nil, nil, echo)
	layer := m.RaftLayer(nil)
	layer.Close()
	if _, err := layer.Accept(); err == nil {
		t.Fatal("Accept after layer Close succeeded")
	}
	if _, err := newClient(t, nil).Call(ctxTimeout(t, 5*time.Second), m.Addr().String(), 1, nil); err != nil {
		t.Fatalf("Call after raft layer Close: %v", err)
	}
	// The server no longer accepts Raft connections: a routed one is closed.
	conn, err := layer.Dial(raft.ServerAddress(m.Addr().String()), time.Second)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read = %v, want the raft connection refused", err)
	}
}

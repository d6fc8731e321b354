package transport

import (
	"bytes"
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/errs"
	"github.com/hashicorp/raft"
)

func TestMutualTLS(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	srvTLS, cliTLS := tlsPair(t, ca, "node-1")
	_, peerTLS := tlsPair(t, ca, "node-2")
	_, rogueTLS := tlsPair(t, newTestCA(t, "other CA"), "intruder")

	var handled atomic.Int32
	m := startMux(t, srvTLS, cliTLS, func(_ context.Context, method uint8, body []byte) ([]byte, error) {
		handled.Add(1)
		return append([]byte{method}, body...), nil
	})
	addr := m.Addr().String()

	t.Run("trusted peer", func(t *testing.T) {
		c := newClient(t, peerTLS)
		out, err := c.Call(ctxTimeout(t, 5*time.Second), addr, 3, []byte("sealed"))
		if err != nil || string(out) != "\x03sealed" {
			t.Fatalf("Call = %q, %v", out, err)
		}
		// TLS 1.3 post-handshake messages (session tickets) must not make
		// the pooled connection look dead to the liveness check.
		c.mu.Lock()
		pooled := c.idle[addr][0]
		c.mu.Unlock()
		if !connAlive(pooled.Conn) {
			t.Fatal("healthy pooled TLS conn reported dead")
		}
		if _, err := c.Call(ctxTimeout(t, 5*time.Second), addr, 4, nil); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		reused := len(c.idle[addr]) == 1 && c.idle[addr][0] == pooled
		c.mu.Unlock()
		if !reused {
			t.Fatal("second call did not reuse the pooled TLS conn")
		}
	})

	t.Run("raft over TLS", func(t *testing.T) {
		conn, err := m.RaftLayer(nil).Dial(raft.ServerAddress(addr), 5*time.Second)
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		defer conn.Close()
		vote := encodeRaftRPC(t, rpcRequestVote, &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ID: []byte("node-1")}, Term: 3})
		conn.Write(vote)
		in, err := m.RaftLayer(nil).Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		buf := make([]byte, len(vote))
		in.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(in, buf); err != nil || !bytes.Equal(buf, vote) {
			t.Fatalf("read %q, %v", buf, err)
		}
	})

	before := handled.Load()
	for name, c := range map[string]*RPCClient{
		"cert from another CA": newClient(t, rogueTLS),
		"plaintext":            newClient(t, nil),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.Call(ctxTimeout(t, 5*time.Second), addr, 1, []byte("let me in"))
			if !errs.Is(err, errs.Unavailable) {
				t.Fatalf("err = %v, want Unavailable", err)
			}
		})
	}
	if n := handled.Load(); n != before {
		t.Fatalf("handler ran %d times for refused clients", n-before)
	}

	t.Run("server with unknown CA", func(t *testing.T) {
		otherSrv, otherCli := tlsPair(t, newTestCA(t, "impostor CA"), "impostor")
		imp := startMux(t, otherSrv, otherCli, echo)
		_, err := newClient(t, cliTLS).Call(ctxTimeout(t, 5*time.Second), imp.Addr().String(), 1, nil)
		if !errs.Is(err, errs.Unavailable) {
			t.Fatalf("err = %v, want Unavailable", err)
		}
	})
}

package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/errs"
)

// refusals records OnRefusal calls.
type refusals struct {
	mu  sync.Mutex
	got []string
}

func (r *refusals) add(reason string) {
	r.mu.Lock()
	r.got = append(r.got, reason)
	r.mu.Unlock()
}

func (r *refusals) has(reason string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range r.got {
		if g == reason {
			return true
		}
	}
	return false
}

func TestHandshakeAuthenticatesBothSides(t *testing.T) {
	var peers sync.Map
	m := startMuxCfg(t, "127.0.0.1:0", Config{NodeID: "srv", Keys: testKeys}, func(ctx context.Context, method uint8, body []byte) ([]byte, error) {
		peers.Store(PeerID(ctx), true)
		return body, nil
	}, testConfig())
	c := newClientCfg(t, Config{NodeID: "cli", Keys: testKeys})
	if out, err := c.Call(ctxTimeout(t, 5*time.Second), m.Addr().String(), 1, []byte("x")); err != nil || string(out) != "x" {
		t.Fatalf("Call = %q, %v", out, err)
	}
	if _, ok := peers.Load("cli"); !ok {
		t.Fatal("handler did not see the authenticated peer id")
	}
	// Direct: the client learns the server's id.
	srv, cli := net.Pipe()
	defer srv.Close()
	defer cli.Close()
	errc := make(chan error, 1)
	go func() {
		peer, proto, err := serverHandshake(srv, &Config{NodeID: "srv", Keys: testKeys})
		if err == nil && (peer != "cli" || proto != ByteRaft) {
			err = errors.New("wrong peer or protocol: " + peer)
		}
		errc <- err
	}()
	id, err := clientHandshake(cli, &Config{NodeID: "cli", Keys: testKeys}, ByteRaft)
	if err != nil || id != "srv" {
		t.Fatalf("client: %q, %v", id, err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server: %v", err)
	}
}

// A root key rotation in progress: nodes holding [old] and [old, new] still
// authenticate each other, in both directions.
func TestHandshakeDuringRootKeyRotation(t *testing.T) {
	old, rotated := testKeys, append(append([][]byte{}, testKeys...), otherKeys[0])
	for _, tc := range []struct {
		name     string
		srv, cli [][]byte
	}{{"server rotated", rotated, old}, {"client rotated", old, rotated}, {"both rotated", rotated, rotated}} {
		t.Run(tc.name, func(t *testing.T) {
			m := startMuxCfg(t, "127.0.0.1:0", Config{NodeID: "srv", Keys: tc.srv}, echo, testConfig())
			c := newClientCfg(t, Config{NodeID: "cli", Keys: tc.cli})
			if _, err := c.Call(ctxTimeout(t, 5*time.Second), m.Addr().String(), 1, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestHandshakeWrongKeyRefused(t *testing.T) {
	var srvRef, cliRef refusals
	var handled atomic.Int32
	var logs logBuffer
	m := startMuxCfg(t, "127.0.0.1:0", Config{NodeID: "srv", Keys: testKeys, OnRefusal: srvRef.add, Logger: bufferLogger(&logs)},
		func(context.Context, uint8, []byte) ([]byte, error) { handled.Add(1); return nil, nil }, testConfig())
	c := newClientCfg(t, Config{NodeID: "intruder", Keys: otherKeys, OnRefusal: cliRef.add})
	if _, err := c.Call(ctxTimeout(t, 5*time.Second), m.Addr().String(), 1, nil); !errs.Is(err, errs.Unavailable) {
		t.Fatalf("Call with another cluster's key = %v, want Unavailable", err)
	}
	if handled.Load() != 0 {
		t.Fatal("handler ran for a peer with the wrong key")
	}
	waitFor(t, "server refusal", func() bool { return srvRef.has(RefusedKey) })
	if !cliRef.has(RefusedKey) {
		t.Fatal("client did not count the refusal")
	}
	if !logs.contains("did not prove membership") || !logs.contains("remote=127.0.0.1:") {
		t.Fatal("refusal not logged with the peer address")
	}

	// A server under another key is refused by a member dialing it: the
	// member never sends its request to an impostor.
	var got atomic.Int32
	imp := startMuxCfg(t, "127.0.0.1:0", Config{NodeID: "imp", Keys: otherKeys},
		func(context.Context, uint8, []byte) ([]byte, error) { got.Add(1); return nil, nil }, testConfig())
	if _, err := newClientCfg(t, Config{NodeID: "cli", Keys: testKeys}).Call(ctxTimeout(t, 5*time.Second), imp.Addr().String(), 1, []byte("secret")); !errs.Is(err, errs.Unavailable) {
		t.Fatalf("Call to an impostor = %v, want Unavailable", err)
	}
	if got.Load() != 0 {
		t.Fatal("request reached the impostor")
	}
}

// A MAC replayed from another connection (another server nonce) is refused,
// and so is the server's MAC reflected back as the client's.
func TestHandshakeReplayAndReflectionRefused(t *testing.T) {
	s := &serverHello{id: "srv"}
	c := &clientHello{proto: ByteRPC, id: "cli"}
	s.nonce[0], c.nonce[0] = 1, 2
	good := handshakeMAC(testKeys[0], labelC2S, s, c)
	reflected := handshakeMAC(testKeys[0], labelS2C, s, c)
	if good == reflected {
		t.Fatal("both directions have the same MAC")
	}
	s2 := *s
	s2.nonce[0] = 3
	if handshakeMAC(testKeys[0], labelC2S, &s2, c) == good {
		t.Fatal("MAC does not depend on the server nonce")
	}
	c2 := *c
	c2.id = "other"
	if handshakeMAC(testKeys[0], labelC2S, s, &c2) == good {
		t.Fatal("MAC does not bind the client id")
	}
}

func TestHandshakeMalformedRefused(t *testing.T) {
	valid := (&clientHello{proto: ByteRPC, id: "cli", macs: make([][macSize]byte, 1)}).encode()
	for _, tc := range []struct {
		name  string
		input []byte
		close bool // send input then hang up (else stay silent)
	}{
		{"bad magic", append([]byte("HTTP"), valid[4:]...), false},
		{"bad version", append(append([]byte{}, valid[:4]...), append([]byte{9}, valid[5:]...)...), false},
		{"truncated", valid[:20], false},
		{"truncated then closed", valid[:20], true},
		{"too many MACs", append(append([]byte{}, valid[:len(valid)-macSize-1]...), 200), false},
		{"empty id", append(append([]byte{}, valid[:38]...), 0), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ref refusals
			mc := testConfig()
			mc.handshakeTimeout = 200 * time.Millisecond
			var handled atomic.Int32
			m := startMuxCfg(t, "127.0.0.1:0", Config{NodeID: "srv", Keys: testKeys, OnRefusal: ref.add},
				func(context.Context, uint8, []byte) ([]byte, error) { handled.Add(1); return nil, nil }, mc)
			conn, err := net.Dial("tcp", m.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			conn.Write(tc.input)
			if tc.close {
				conn.(*net.TCPConn).CloseWrite()
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			// The server's hello, then nothing: it hangs up without a finish.
			rest, err := io.ReadAll(conn)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("server did not hang up within the handshake deadline")
			}
			if _, err := readServerHello(bytes.NewReader(rest)); err != nil || len(rest) != 4+1+nonceSize+1+3 {
				t.Fatalf("server sent %q after the refused hello", rest)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("refused after %v", d)
			}
			waitFor(t, "refusal counted", func() bool { return ref.has(RefusedHandshake) })
			if handled.Load() != 0 {
				t.Fatal("handler ran")
			}
		})
	}
}

// An oversized id length or MAC count can't make the server read or
// allocate more than the bounded hello.
func TestHandshakeBounds(t *testing.T) {
	h := &clientHello{proto: ByteRaft, id: string(bytes.Repeat([]byte("a"), 255)), macs: make([][macSize]byte, maxHandshakeKeys)}
	b := h.encode()
	if len(b) > 4+2+nonceSize+1+255+1+maxHandshakeKeys*macSize {
		t.Fatalf("hello of %d bytes", len(b))
	}
	got, err := readClientHello(bytes.NewReader(b))
	if err != nil || got.id != h.id || len(got.macs) != maxHandshakeKeys {
		t.Fatalf("round trip: %v", err)
	}
	// Extra bytes after a hello are never consumed.
	r := bytes.NewReader(append(b, "next"...))
	if _, err := readClientHello(r); err != nil || r.Len() != 4 {
		t.Fatalf("read past the hello: %d left, %v", r.Len(), err)
	}
}

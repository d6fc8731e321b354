package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"strings"
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

// Only node certificates open the cluster port: a certificate of the
// cluster's CA without the node marking (operator tls's client.pem) is
// refused on the server side, and a dialer refuses a server presenting one.
func TestTLSNodeCertificateRequired(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	srvTLS, cliTLS := tlsPair(t, ca, "n1")
	var ref refusals
	var handled atomic.Int32
	m := startMuxCfg(t, "127.0.0.1:0", Config{NodeID: "n1", ServerTLS: srvTLS, ClientTLS: cliTLS, OnRefusal: ref.add},
		func(context.Context, uint8, []byte) ([]byte, error) { handled.Add(1); return nil, nil }, testConfig())
	addr := m.Addr().String()

	clientPEM := cliTLS.Clone()
	clientPEM.Certificates = []tls.Certificate{ca.issueClient(t, "client")}
	c := newClientCfg(t, Config{NodeID: "client", ClientTLS: clientPEM})
	if _, err := c.Call(ctxTimeout(t, 5*time.Second), addr, 1, nil); !errs.Is(err, errs.Unavailable) {
		t.Fatalf("client.pem: err = %v, want Unavailable", err)
	}
	if _, err := m.RaftLayer(nil).Dial(raft.ServerAddress(addr), time.Second); err != nil {
		t.Fatalf("node dial: %v", err)
	}
	waitFor(t, "certificate refusal", func() bool { return ref.has(RefusedCertificate) })
	if handled.Load() != 0 {
		t.Fatal("handler ran for client.pem")
	}

	// A "server" holding the client certificate: members don't talk to it.
	fakeSrv := srvTLS.Clone()
	fakeSrv.Certificates = clientPEM.Certificates
	var got atomic.Int32
	imp, err := listen("127.0.0.1:0", Config{NodeID: "n1", ServerTLS: srvTLS, ClientTLS: cliTLS}, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	imp.auth.ServerTLS = fakeSrv // past validate, as a hostile server would be
	imp.ServeRPC(func(context.Context, uint8, []byte) ([]byte, error) { got.Add(1); return nil, nil })
	t.Cleanup(func() { imp.Close() })
	var cref refusals
	// As cmd/coffer configures it: any usage, verified against the CA.
	anyUsage := cliTLS.Clone()
	anyUsage.InsecureSkipVerify = true
	anyUsage.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return err
		}
		_, err = leaf.Verify(x509.VerifyOptions{Roots: ca.pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err
	}
	member := newClientCfg(t, Config{NodeID: "n2", ClientTLS: anyUsage, OnRefusal: cref.add})
	if _, err := member.Call(ctxTimeout(t, 5*time.Second), imp.Addr().String(), 1, []byte("secret")); !errs.Is(err, errs.Unavailable) {
		t.Fatalf("call to a non-node server = %v, want Unavailable", err)
	}
	if got.Load() != 0 || !cref.has(RefusedCertificate) {
		t.Fatalf("request reached a server without a node certificate (refusals %v)", cref.got)
	}
}

// A node whose own certificate isn't a node certificate for its id refuses
// to start.
func TestTLSOwnCertificateMustMatchNodeID(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	srvTLS, cliTLS := tlsPair(t, ca, "n1")
	if _, err := Listen("127.0.0.1:0", Config{NodeID: "n2", ServerTLS: srvTLS, ClientTLS: cliTLS}); err == nil || !strings.Contains(err.Error(), `"n1"`) {
		t.Fatalf("Listen as n2 with n1's certificate: %v", err)
	}
	old := srvTLS.Clone()
	old.Certificates = []tls.Certificate{ca.issueWith(t, "n1", nil, nil)}
	if _, err := Listen("127.0.0.1:0", Config{NodeID: "n1", ServerTLS: old, ClientTLS: cliTLS}); err == nil || !strings.Contains(err.Error(), "regenerate") {
		t.Fatalf("Listen with an unmarked certificate: %v", err)
	}
	loose := srvTLS.Clone()
	loose.ClientAuth = tls.RequestClientCert
	if _, err := Listen("127.0.0.1:0", Config{NodeID: "n1", ServerTLS: loose, ClientTLS: cliTLS}); err == nil {
		t.Fatal("Listen without verified client certificates succeeded")
	}
}

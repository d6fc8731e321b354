package transport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-msgpack/v2/codec"
)

// testConfig shortens the mux timeouts so the deadline tests run fast.
func testConfig() muxConfig {
	cfg := defaultMuxConfig()
	cfg.handshakeTimeout = 2 * time.Second
	return cfg
}

// startMux listens on a random loopback port and closes the mux at cleanup.
func startMux(t testing.TB, serverTLS, clientTLS *tls.Config, h Handler) *Mux {
	t.Helper()
	return startMuxAt(t, "127.0.0.1:0", serverTLS, clientTLS, h, testConfig())
}

func startMuxAt(t testing.TB, addr string, serverTLS, clientTLS *tls.Config, h Handler, cfg muxConfig) *Mux {
	t.Helper()
	return startMuxCfg(t, addr, authConfig(t, "node-1", serverTLS, clientTLS), h, cfg)
}

func startMuxCfg(t testing.TB, addr string, auth Config, h Handler, cfg muxConfig) *Mux {
	t.Helper()
	m, err := listen(addr, auth, cfg)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if h != nil {
		m.ServeRPC(h)
	}
	return m
}

func newClient(t testing.TB, clientTLS *tls.Config) *RPCClient {
	t.Helper()
	return newClientCfg(t, authConfig(t, "node-2", nil, clientTLS))
}

func newClientCfg(t testing.TB, cfg Config) *RPCClient {
	t.Helper()
	c, err := NewRPCClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// encodeRaftRPC encodes a request as hashicorp/raft's NetworkTransport
// sends it: the type byte, then go-msgpack.
func encodeRaftRPC(t testing.TB, rpcType byte, req any) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteByte(rpcType)
	if err := codec.NewEncoder(&b, &codec.MsgpackHandle{}).Encode(req); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// testKeys are the cluster-port keys of the plaintext test nodes; otherKeys
// those of another cluster.
var (
	testKeys  = [][]byte{bytes.Repeat([]byte{1}, 32)}
	otherKeys = [][]byte{bytes.Repeat([]byte{2}, 32)}
)

// authConfig is a plaintext config keyed with testKeys when both TLS
// configs are nil, else a TLS config whose node id is the one in the
// certificate (id when it has none).
func authConfig(t testing.TB, id string, serverTLS, clientTLS *tls.Config) Config {
	t.Helper()
	if serverTLS == nil && clientTLS == nil {
		return Config{NodeID: id, Keys: testKeys}
	}
	for _, c := range []*tls.Config{serverTLS, clientTLS} {
		if c != nil && len(c.Certificates) > 0 {
			leaf, err := x509.ParseCertificate(c.Certificates[0].Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			if nid, err := NodeIDFromCert(leaf); err == nil {
				id = nid
			}
			break
		}
	}
	return Config{NodeID: id, ServerTLS: serverTLS, ClientTLS: clientTLS}
}

// dialRaw opens an authenticated plaintext connection that selected proto,
// for tests that write raw bytes.
func dialRaw(t testing.TB, addr, id string, proto byte) net.Conn {
	t.Helper()
	cfg := Config{NodeID: id, Keys: testKeys}
	c, err := dial(ctxTimeout(t, 5*time.Second), addr, &cfg, proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echo answers method followed by body.
func echo(_ context.Context, method uint8, body []byte) ([]byte, error) {
	return append([]byte{method}, body...), nil
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func (c *RPCClient) idleCount(addr string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.idle[addr])
}

// logBuffer is a concurrency-safe sink for a debug logger whose output a test
// inspects.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) contains(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Contains(b.buf.String(), s)
}

func bufferLogger(b *logBuffer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: b})
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

var serial int64

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns a node certificate for node name (the node marking),
// valid for 127.0.0.1, usable both as server and client, as cluster nodes'
// certificates are.
func (ca *testCA) issue(t testing.TB, name string) tls.Certificate {
	t.Helper()
	u, err := url.Parse(NodeURIPrefix + name)
	if err != nil {
		t.Fatal(err)
	}
	return ca.issueWith(t, name, []*url.URL{u}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth})
}

// issueClient returns a certificate like `coffer operator tls`'s client.pem:
// client auth only, no node marking.
func (ca *testCA) issueClient(t testing.TB, name string) tls.Certificate {
	t.Helper()
	return ca.issueWith(t, name, nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
}

func (ca *testCA) issueWith(t testing.TB, name string, uris []*url.URL, usage []x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		URIs:         uris,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsPair returns the server and client configs of a node whose certificate
// was issued by ca, trusting only ca.
func tlsPair(t testing.TB, ca *testCA, name string) (server, client *tls.Config) {
	cert := ca.issue(t, name)
	server = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    ca.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
	client = &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      ca.pool,
		MinVersion:   tls.VersionTLS12,
	}
	return server, client
}

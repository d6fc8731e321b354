package client

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
)

// recorded is one request seen by a test server.
type recorded struct {
	Method, Path, RawQuery, Auth, CType, UA string
	Body                                    []byte
}

type fakeServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

// newServer answers every request with h after recording it.
func newServer(t *testing.T, h http.HandlerFunc) *fakeServer {
	t.Helper()
	fs := &fakeServer{}
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fs.mu.Lock()
		fs.reqs = append(fs.reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"),
			r.Header.Get("Content-Type"), r.Header.Get("User-Agent"), b})
		fs.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		h(w, r)
	}))
	t.Cleanup(fs.Close)
	return fs
}

func (fs *fakeServer) requests() []recorded {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]recorded(nil), fs.reqs...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code errs.Code, msg string) {
	writeJSON(w, errs.HTTPStatus(code), apitypes.ErrorBody{Error: apitypes.ErrorDetail{Code: string(code), Message: msg}})
}

func mustNew(t *testing.T, addr, token string, opts ...Option) *Client {
	t.Helper()
	c, err := New(addr, token, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func TestRequestShape(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, apitypes.PutSecretValueResponse{Version: 3, Index: 17})
	})
	c := mustNew(t, srv.URL, "s3cr3t-token", WithUserAgent("coffer-test/1"))
	exp := uint64(2)
	resp, err := c.PutSecretValue(context.Background(), &apitypes.PutSecretValueRequest{
		Path: "/app/prod/db/password", Value: []byte("hunter2"), ExpectedVersion: &exp})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Version != 3 || resp.Index != 17 {
		t.Fatalf("answer %+v", resp)
	}
	reqs := srv.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPost || r.Path != "/v1/putSecretValue" {
		t.Errorf("request line %s %s", r.Method, r.Path)
	}
	if r.Auth != "Bearer s3cr3t-token" {
		t.Errorf("Authorization %q", r.Auth)
	}
	if r.CType != "application/json" || r.UA != "coffer-test/1" {
		t.Errorf("Content-Type %q, User-Agent %q", r.CType, r.UA)
	}
	// Neither the value, the path nor the token travels in the URL.
	if r.RawQuery != "" || strings.Contains(r.Path, "app") || strings.Contains(r.Path, "aHVudGVyMg") {
		t.Errorf("URL carries data: %s?%s", r.Path, r.RawQuery)
	}
	var body map[string]any
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	if body["path"] != "/app/prod/db/password" || body["value"] != "aHVudGVyMg==" || body["expected_version"] != 2.0 {
		t.Errorf("body %s", r.Body)
	}
}

func TestNoTokenNoHeader(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, apitypes.InitResponse{RootToken: "root", Accessor: "acc", Index: 1})
	})
	c := mustNew(t, srv.URL, "stale-token")
	resp, err := c.Init(context.Background())
	if err != nil || resp.RootToken != "root" {
		t.Fatalf("Init: %+v %v", resp, err)
	}
	r := srv.requests()[0]
	if r.Auth != "" || r.Path != "/v1/sys/init" || string(r.Body) != "{}" {
		t.Errorf("init request %+v", r)
	}
}

func TestErrorDecoding(t *testing.T) {
	for _, code := range []errs.Code{errs.InvalidArgument, errs.Unauthenticated, errs.PermissionDenied, errs.NotFound,
		errs.AlreadyExists, errs.FailedPrecondition, errs.VersionMismatch, errs.Gone, errs.TooLarge,
		errs.RateLimited, errs.Unavailable, errs.Internal} {
		t.Run(string(code), func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { writeErr(w, code, "the message") })
			c := mustNew(t, srv.URL, "t")
			_, err := c.GetSecretValue(context.Background(), &apitypes.GetSecretValueRequest{Path: "/a"})
			var e *errs.Error
			if !errors.As(err, &e) || e.Code != code || e.Message != "the message" {
				t.Fatalf("got %#v", err)
			}
		})
	}
}

func TestMalformedErrors(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"html", 502, "<html>bad gateway</html>", "502 Bad Gateway"},
		{"empty", 500, "", "500 Internal Server Error"},
		{"no code", 404, `{"error":{"message":"x"}}`, "404 Not Found"},
		{"unknown code", 418, `{"error":{"code":"Teapot","message":"short and stout"}}`, "Teapot"},
		{"redirect", 307, "", "307 Temporary Redirect"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.status == 307 {
					w.Header().Set("Location", "http://example.invalid/steal")
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			c := mustNew(t, srv.URL, "t", WithRetry(3, time.Millisecond))
			err := c.Do(context.Background(), "describeSecret", map[string]string{"path": "/a"}, nil)
			e := errs.As(err)
			if e == nil || e.Code != errs.Internal || !strings.Contains(e.Message, tc.want) {
				t.Fatalf("got %v, want Internal containing %q", err, tc.want)
			}
			if n := len(srv.requests()); n != 1 {
				t.Errorf("%d attempts, want 1", n)
			}
		})
	}
}

func TestMalformedSuccess(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "not json") })
	c := mustNew(t, srv.URL, "t")
	_, err := c.ListSecrets(context.Background(), &apitypes.ListSecretsRequest{Prefix: "/"})
	if errs.CodeOf(err) != errs.Internal {
		t.Fatalf("got %v", err)
	}
}

func TestNetworkError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	c := mustNew(t, addr, "t")
	_, err = c.DescribeSecret(context.Background(), &apitypes.DescribeSecretRequest{Path: "/a"})
	var e *errs.Error
	if !errors.As(err, &e) || e.Code != errs.Unavailable || !strings.Contains(e.Message, "refused") {
		t.Fatalf("got %#v", err)
	}
}

// flakyTransport fails the first n round trips with err, then delegates.
type flakyTransport struct {
	n     int32
	err   error
	calls atomic.Int32
}

func (f *flakyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if f.calls.Add(1) <= f.n {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, f.err
	}
	return http.DefaultTransport.RoundTrip(r)
}

var (
	errRefused = &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	errReset   = &net.OpError{Op: "read", Net: "tcp", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}
)

func TestRetry(t *testing.T) {
	ok := func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, apitypes.IndexResponse{Index: 5}) }
	cases := []struct {
		name     string
		action   string
		netErr   error
		netFails int32
		unavail  int32 // 503 Unavailable answers before success
		attempts int   // WithRetry max attempts
		wantErr  errs.Code
		wantSent int32 // round trips
	}{
		{"write refused then ok", "putSecretValue", errRefused, 2, 0, 3, "", 3},
		{"write reset not retried", "putSecretValue", errReset, 1, 0, 3, errs.Unavailable, 1},
		{"read reset retried", "getSecretValue", errReset, 2, 0, 3, "", 3},
		{"write unavailable answer retried", "createSecret", nil, 0, 2, 3, "", 3},
		{"gives up after max attempts", "putSecretValue", nil, 0, 5, 3, errs.Unavailable, 3},
		{"refused gives up", "deleteSecret", errRefused, 9, 0, 2, errs.Unavailable, 2},
		{"off by default", "getSecretValue", errRefused, 1, 0, 0, errs.Unavailable, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var answered atomic.Int32
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if answered.Add(1) <= tc.unavail {
					writeErr(w, errs.Unavailable, "no leader")
					return
				}
				ok(w, r)
			})
			ft := &flakyTransport{n: tc.netFails, err: tc.netErr}
			opts := []Option{WithHTTPClient(&http.Client{Transport: ft})}
			if tc.attempts > 0 {
				opts = append(opts, WithRetry(tc.attempts, 2*time.Millisecond))
			}
			c := mustNew(t, srv.URL, "t", opts...)
			err := c.Do(context.Background(), tc.action, map[string]string{"path": "/a"}, nil)
			if errs.CodeOf(err) != tc.wantErr {
				t.Fatalf("err %v, want code %q", err, tc.wantErr)
			}
			if got := ft.calls.Load(); got != tc.wantSent {
				t.Errorf("%d round trips, want %d", got, tc.wantSent)
			}
			// every attempt that reached the server carried the full body
			for _, r := range srv.requests() {
				if string(r.Body) != `{"path":"/a"}` {
					t.Errorf("body %q", r.Body)
				}
			}
		})
	}
}

func TestRetryNotOnOtherCodes(t *testing.T) {
	for _, code := range []errs.Code{errs.RateLimited, errs.Internal, errs.NotFound} {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { writeErr(w, code, "no") })
		c := mustNew(t, srv.URL, "t", WithRetry(5, time.Millisecond))
		if err := c.Do(context.Background(), "getSecretValue", nil, nil); errs.CodeOf(err) != code {
			t.Fatalf("%s: got %v", code, err)
		}
		if n := len(srv.requests()); n != 1 {
			t.Errorf("%s: %d attempts", code, n)
		}
	}
}

func TestRetryStopsOnContext(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { writeErr(w, errs.Unavailable, "sealed") })
	c := mustNew(t, srv.URL, "t", WithRetry(1000, time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Do(ctx, "whoami", nil, nil)
	if errs.CodeOf(err) != errs.Unavailable || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
}

func TestLastIndex(t *testing.T) {
	var next atomic.Int64
	indexes := []uint64{10, 30, 20}
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		i := next.Add(1) - 1
		if int(i) >= len(indexes) {
			writeErr(w, errs.NotFound, "gone")
			return
		}
		// a generic answer: index is found whatever the action's type
		writeJSON(w, 200, map[string]any{"whatever": true, "index": indexes[i]})
	})
	c := mustNew(t, srv.URL, "t")
	if c.LastIndex() != 0 {
		t.Fatal("fresh client has an index")
	}
	ctx := context.Background()
	var raw json.RawMessage
	if err := c.Do(ctx, "listKeys", nil, &raw); err != nil {
		t.Fatal(err)
	}
	if c.LastIndex() != 10 || !strings.Contains(string(raw), `"whatever":true`) {
		t.Fatalf("index %d raw %s", c.LastIndex(), raw)
	}
	if _, err := c.Whoami(ctx, &apitypes.WhoamiRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListTokens(ctx, &apitypes.ListTokensRequest{}); err != nil {
		t.Fatal(err)
	}
	if c.LastIndex() != 30 {
		t.Fatalf("index %d, want the highest (30)", c.LastIndex())
	}
	if _, err := c.ListTokens(ctx, nil); err == nil {
		t.Fatal("want error")
	}
	if c.LastIndex() != 30 {
		t.Fatalf("index %d after error", c.LastIndex())
	}
}

func TestHealth(t *testing.T) {
	status := 200
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/v1/sys/health" {
			t.Errorf("%s %s", r.Method, r.URL.Path)
		}
		if status == 500 {
			writeErr(w, errs.Internal, "boom")
			return
		}
		writeJSON(w, status, apitypes.Health{NodeID: "n1", Role: "follower", AppliedIndex: 9})
	})
	c := mustNew(t, srv.URL, "")
	h, st, err := c.Health(context.Background())
	if err != nil || st != 200 || h.NodeID != "n1" || h.AppliedIndex != 9 {
		t.Fatalf("%+v %d %v", h, st, err)
	}
	status = 503
	h, st, err = c.Health(context.Background())
	if err != nil || st != 503 || h.Role != "follower" {
		t.Fatalf("%+v %d %v", h, st, err)
	}
	status = 500
	h, st, err = c.Health(context.Background())
	if h != nil || st != 500 || errs.CodeOf(err) != errs.Internal {
		t.Fatalf("%+v %d %v", h, st, err)
	}
}

func TestSnapshotRestore(t *testing.T) {
	snap := bytes.Repeat([]byte{0, 1, 2, 0xff}, 100000)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/sys/snapshot":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(snap)
		case "/v1/sys/restore":
			b, _ := io.ReadAll(r.Body)
			if !bytes.Equal(b, snap) || r.Header.Get("Content-Type") != "application/octet-stream" {
				writeErr(w, errs.InvalidArgument, "corrupt snapshot")
				return
			}
			writeJSON(w, 200, apitypes.IndexResponse{Index: 77})
		}
	})
	c := mustNew(t, srv.URL, "root")
	var buf bytes.Buffer
	if err := c.Snapshot(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), snap) {
		t.Fatal("snapshot differs")
	}
	if err := c.Restore(context.Background(), bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if c.LastIndex() != 77 {
		t.Errorf("index %d", c.LastIndex())
	}
	if err := c.Restore(context.Background(), strings.NewReader("junk")); errs.CodeOf(err) != errs.InvalidArgument {
		t.Errorf("restore junk: %v", err)
	}
}

func TestRestoreRetrySeeksBack(t *testing.T) {
	var bodies [][]byte
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, b)
		if len(bodies) == 1 {
			writeErr(w, errs.Unavailable, "no leader")
			return
		}
		writeJSON(w, 200, apitypes.IndexResponse{Index: 1})
	})
	c := mustNew(t, srv.URL, "root", WithRetry(3, time.Millisecond))
	if err := c.Restore(context.Background(), bytes.NewReader([]byte("SNAP"))); err != nil {
		t.Fatal(err)
	}
	if len(bodies) != 2 || string(bodies[1]) != "SNAP" {
		t.Fatalf("bodies %q", bodies)
	}
	// A plain stream can't be sent twice.
	bodies = nil
	err := c.Restore(context.Background(), io.MultiReader(strings.NewReader("SNAP")))
	if errs.CodeOf(err) != errs.Unavailable || len(bodies) != 1 {
		t.Fatalf("err %v after %d attempts", err, len(bodies))
	}
}

func TestTLSWithCACert(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, apitypes.WhoamiResponse{Token: apitypes.Token{Name: "me"}, Index: 3})
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	c := mustNew(t, srv.URL, "t", WithCACertFile(ca))
	resp, err := c.Whoami(context.Background(), &apitypes.WhoamiRequest{})
	if err != nil || resp.Name != "me" {
		t.Fatalf("%+v %v", resp, err)
	}
	// Without the CA the certificate is refused, and that is not retried.
	c = mustNew(t, srv.URL, "t", WithRetry(5, time.Hour))
	start := time.Now()
	if _, err := c.Whoami(context.Background(), &apitypes.WhoamiRequest{}); errs.CodeOf(err) != errs.Unavailable {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Error("certificate error was retried")
	}
	if _, err := New(srv.URL, "t", WithCACertFile(filepath.Join(t.TempDir(), "missing.pem"))); errs.CodeOf(err) != errs.InvalidArgument {
		t.Errorf("missing CA file: %v", err)
	}
}

func TestNewAddr(t *testing.T) {
	good := map[string]string{
		"http://127.0.0.1:7700":   "http://127.0.0.1:7700",
		"https://coffer.example/": "https://coffer.example",
		"10.0.0.1:7700":           "http://10.0.0.1:7700",
		"https://lb/coffer/":      "https://lb/coffer",
	}
	for in, want := range good {
		c, err := New(in, "")
		if err != nil || c.Addr() != want {
			t.Errorf("New(%q) = %v, %v; want %s", in, c, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://x", "http://", "http://u:p@host", "http://h/?q=1"} {
		if _, err := New(bad, ""); errs.CodeOf(err) != errs.InvalidArgument {
			t.Errorf("New(%q): %v", bad, err)
		}
	}
	if _, err := New("h:1", "a\nb"); err == nil {
		t.Error("token with newline accepted")
	}
	c := mustNew(t, "h:1", "")
	for _, bad := range []string{"", "/x", "x/", "a//b", "../x", "x?y=1"} {
		if err := c.Do(context.Background(), bad, nil, nil); errs.CodeOf(err) != errs.InvalidArgument {
			t.Errorf("action %q: %v", bad, err)
		}
	}
}

func TestFromEnv(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, apitypes.IndexResponse{Index: 1}) })
	t.Setenv(EnvAddr, srv.URL)
	t.Setenv(EnvToken, " env-token\n")
	t.Setenv(EnvCACert, "")
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteSecret(context.Background(), &apitypes.DeleteSecretRequest{Path: "/a"}); err != nil {
		t.Fatal(err)
	}
	if got := srv.requests()[0].Auth; got != "Bearer env-token" {
		t.Errorf("Authorization %q", got)
	}
	t.Setenv(EnvAddr, "")
	c, err = FromEnv()
	if err != nil || c.Addr() != DefaultAddr {
		t.Errorf("default addr: %v %v", c, err)
	}
}

func TestTypedMethodsHitTheirActions(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]any{"index": 1}) })
	c := mustNew(t, srv.URL, "t")
	ctx := context.Background()
	calls := []func() error{
		func() error { _, err := c.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: "/a"}); return err },
		func() error { _, err := c.DescribeSecret(ctx, &apitypes.DescribeSecretRequest{Path: "/a"}); return err },
		func() error { _, err := c.ListSecrets(ctx, &apitypes.ListSecretsRequest{Prefix: "/"}); return err },
		func() error { _, err := c.GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: "/a"}); return err },
		func() error {
			_, err := c.BatchGetSecretValue(ctx, &apitypes.BatchGetSecretValueRequest{Paths: []string{"/a"}})
			return err
		},
		func() error { _, err := c.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: "/a"}); return err },
		func() error { _, err := c.GenerateSecret(ctx, &apitypes.GenerateSecretRequest{Path: "/a"}); return err },
		func() error { _, err := c.UpdateSecret(ctx, &apitypes.UpdateSecretRequest{Path: "/a"}); return err },
		func() error {
			_, err := c.RebindSecretKey(ctx, &apitypes.RebindSecretKeyRequest{Path: "/a"})
			return err
		},
		func() error {
			_, err := c.DestroySecretVersion(ctx, &apitypes.DestroySecretVersionRequest{Path: "/a"})
			return err
		},
		func() error { _, err := c.DeleteSecret(ctx, &apitypes.DeleteSecretRequest{Path: "/a"}); return err },
		func() error { _, err := c.CreateToken(ctx, &apitypes.CreateTokenRequest{Name: "x"}); return err },
		func() error { _, err := c.RevokeToken(ctx, &apitypes.RevokeTokenRequest{Accessor: "x"}); return err },
		func() error { _, err := c.ListTokens(ctx, &apitypes.ListTokensRequest{}); return err },
		func() error { _, err := c.Whoami(ctx, &apitypes.WhoamiRequest{}); return err },
		func() error { _, err := c.QueryAudit(ctx, &apitypes.QueryAuditRequest{}); return err },
		func() error { _, err := c.VerifyAudit(ctx, &apitypes.VerifyAuditRequest{}); return err },
		func() error { _, err := c.Cluster(ctx, &apitypes.ClusterRequest{}); return err },
		func() error { _, err := c.Join(ctx, &apitypes.JoinRequest{Addr: "x"}); return err },
		func() error { _, err := c.RemovePeer(ctx, &apitypes.RemovePeerRequest{NodeID: "x"}); return err },
		func() error { _, err := c.TransferLeadership(ctx, &apitypes.TransferLeadershipRequest{}); return err },
	}
	for i, f := range calls {
		if err := f(); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	want := []string{"createSecret", "describeSecret", "listSecrets", "getSecretValue", "batchGetSecretValue",
		"putSecretValue", "generateSecret", "updateSecret", "rebindSecretKey", "destroySecretVersion", "deleteSecret",
		"createToken", "revokeToken", "listTokens", "whoami", "queryAudit", "verifyAudit",
		"sys/cluster", "sys/join", "sys/removePeer", "sys/transferLeadership"}
	reqs := srv.requests()
	for i, w := range want {
		if reqs[i].Path != "/v1/"+w || reqs[i].Method != http.MethodPost || reqs[i].Auth != "Bearer t" {
			t.Errorf("call %d: %s %s (%q), want /v1/%s", i, reqs[i].Method, reqs[i].Path, reqs[i].Auth, w)
		}
	}
}

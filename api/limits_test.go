package api

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/kms"
	"github.com/cofferhq/coffer/node"
)

// startDevWith is startDev with an API configuration; it also returns the
// API server (to call its handler directly).
func startDevWith(t testing.TB, cfg Config) (*devServer, *Server) {
	t.Helper()
	line, err := kms.GenerateRootKey()
	if err != nil {
		t.Fatal(err)
	}
	rk, err := kms.ParseRootKeys([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(node.Config{Dev: true, NodeID: "dev", RootKeys: rk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	s := New(n, cfg)
	srv := httptest.NewUnstartedServer(s)
	hs := s.NewHTTPServer()
	srv.Config.ReadHeaderTimeout, srv.Config.ReadTimeout, srv.Config.WriteTimeout = hs.ReadHeaderTimeout, hs.ReadTimeout, hs.WriteTimeout
	srv.Start()
	t.Cleanup(srv.Close)
	ds := &devServer{URL: srv.URL, Node: n, client: &http.Client{Timeout: 60 * time.Second}}
	t.Cleanup(ds.client.CloseIdleConnections)
	deadline := time.Now().Add(20 * time.Second)
	for {
		a := ds.do(t, http.MethodPost, "/v1/sys/init", "", []byte(`{}`))
		if a.Status == http.StatusOK {
			var ir apitypes.InitResponse
			a.strictJSON(t, &ir)
			ds.Root = ir.RootToken
			return ds, s
		}
		if a.Status != http.StatusServiceUnavailable && a.Status != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("init: %d %s", a.Status, a.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// countingBody is an endless request body that counts the bytes read.
type countingBody struct{ n atomic.Int64 }

func (c *countingBody) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'A'
	}
	c.n.Add(int64(len(p)))
	return len(p), nil
}

// TestAuthBeforeBody: a request without a valid token, or (for
// sys/restore) without admin, is refused before a byte of its body is read,
// whatever the body's announced size (issue 14 finding 4).
func TestAuthBeforeBody(t *testing.T) {
	ds, s := startDevWith(t, Config{})
	var tok apitypes.CreateTokenResponse
	ds.call(t, "createToken", map[string]any{"name": "reader", "policies": []string{"secrets-reader"}}, &tok)
	cases := []struct {
		path, authz string
		length      int64
		status      int
		code        errs.Code
	}{
		{"/v1/sys/restore", "", 1 << 30, http.StatusUnauthorized, errs.Unauthenticated},
		{"/v1/sys/restore", "Bearer cfr_" + strings.Repeat("x", 43), 1 << 30, http.StatusUnauthorized, errs.Unauthenticated},
		{"/v1/sys/restore", "Bearer " + tok.Token, 1 << 30, http.StatusForbidden, errs.PermissionDenied},
		{"/v1/sys/snapshot", "", 1 << 20, http.StatusUnauthorized, errs.Unauthenticated},
		{"/v1/putSecretValue", "", 1 << 20, http.StatusUnauthorized, errs.Unauthenticated},
		{"/v1/getSecretValue", "Basic eDp5", 900 << 10, http.StatusUnauthorized, errs.Unauthenticated},
	}
	for _, c := range cases {
		t.Run(c.path+" "+strconv.Itoa(c.status), func(t *testing.T) {
			body := &countingBody{}
			r := httptest.NewRequest(http.MethodPost, c.path, io.LimitReader(body, c.length))
			r.ContentLength = c.length
			r.RemoteAddr = "127.0.0.1:5555"
			if c.authz != "" {
				r.Header.Set("Authorization", c.authz)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, r)
			a := apiAnswer{Status: w.Code, Header: w.Header(), Body: w.Body.Bytes()}
			a.wantError(t, c.status, c.code)
			if n := body.n.Load(); n != 0 {
				t.Fatalf("%d body bytes read before the refusal", n)
			}
		})
	}
}

// TestRestoreOneAtATime: while one restore upload is being read, another
// is refused at once with FailedPrecondition.
func TestRestoreOneAtATime(t *testing.T) {
	ds, s := startDevWith(t, Config{})
	pr, pw := io.Pipe()
	defer pw.Close()
	first := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, ds.URL+"/v1/sys/restore", pr)
		req.Header.Set("Authorization", ds.bearer())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	if _, err := pw.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(s.restoring) == 1 }) // the first upload is being read
	a := ds.do(t, http.MethodPost, "/v1/sys/restore", ds.bearer(), []byte("not a snapshot"))
	a.wantError(t, http.StatusConflict, errs.FailedPrecondition)
	pw.Close() // the first upload ends: refused as a bad snapshot, the lock is released
	if st := <-first; st != http.StatusBadRequest {
		t.Fatalf("first restore answered %d, want 400", st)
	}
	a = ds.do(t, http.MethodPost, "/v1/sys/restore", ds.bearer(), []byte("not a snapshot"))
	a.wantError(t, http.StatusBadRequest, errs.InvalidArgument)
}

// TestStalledBodyClosed: a client that stops sending its body is cut off
// after the body timeout (issue 14 finding 6), authenticated or not.
func TestStalledBodyClosed(t *testing.T) {
	ds, _ := startDevWith(t, Config{Limits: Limits{HeaderTimeout: time.Second, BodyTimeout: time.Second}})
	addr := strings.TrimPrefix(ds.URL, "http://")
	for _, authz := range []string{ds.bearer(), ""} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		hdr := "POST /v1/putSecretValue HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
		if authz != "" {
			hdr += "Authorization: " + authz + "\r\n"
		}
		start := time.Now()
		if _, err := io.WriteString(c, hdr+"\r\n{\"path\":"); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, err = io.Copy(io.Discard, c) // until the server closes the connection
		if el := time.Since(start); err != nil || el > 8*time.Second {
			t.Fatalf("auth %q: stalled body held %v (err %v); want closed within the 2 s body timeout", authz, el, err)
		}
	}
	// A header that never ends is cut off after the header timeout too.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, _ = io.WriteString(c, "POST /v1/whoami HTTP/1.1\r\nHost: x\r\n")
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil || time.Since(start) > 8*time.Second {
		t.Fatalf("stalled header held %v (err %v)", time.Since(start), err)
	}
}

// TestRateLimits: over the per-source or per-token rate a request is
// RateLimited 429 with Retry-After; health checks are exempt; another
// source or token has its own budget.
func TestRateLimits(t *testing.T) {
	_, s := startDevWith(t, Config{Limits: Limits{PerSource: Rate{PerSecond: 0.5, Burst: 3}}})
	send := func(path, src, authz string) *httptest.ResponseRecorder {
		method := http.MethodPost
		if path == "/v1/sys/health" {
			method = http.MethodGet
		}
		r := httptest.NewRequest(method, path, strings.NewReader(`{}`))
		r.RemoteAddr = src
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w
	}
	for i := 0; i < 3; i++ { // the burst
		if w := send("/v1/whoami", "10.0.0.1:1000", ""); w.Code != http.StatusUnauthorized {
			t.Fatalf("request %d: %d", i, w.Code)
		}
	}
	w := send("/v1/whoami", "10.0.0.1:1001", "")
	a := apiAnswer{Status: w.Code, Header: w.Header(), Body: w.Body.Bytes()}
	a.wantError(t, http.StatusTooManyRequests, errs.RateLimited)
	if ra, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
		t.Fatalf("Retry-After %q, want 1-2 s at 0.5 requests/s", w.Header().Get("Retry-After"))
	}
	for i := 0; i < 10; i++ {
		if w := send("/v1/sys/health", "10.0.0.1:1002", ""); w.Code == http.StatusTooManyRequests {
			t.Fatal("sys/health was rate limited")
		}
	}
	if w := send("/v1/whoami", "10.0.0.2:1000", ""); w.Code != http.StatusUnauthorized {
		t.Fatalf("another source: %d", w.Code)
	}
	// One IPv6 /64 is one source.
	send("/v1/whoami", "[2001:db8::1]:1", "")
	send("/v1/whoami", "[2001:db8::2]:1", "")
	send("/v1/whoami", "[2001:db8::3]:1", "")
	if w := send("/v1/whoami", "[2001:db8::4]:1", ""); w.Code != http.StatusTooManyRequests {
		t.Fatalf("fourth address of one /64: %d, want 429", w.Code)
	}

	ds2, s2 := startDevWith(t, Config{Limits: Limits{PerToken: Rate{PerSecond: 0.5, Burst: 2}}})
	var tok apitypes.CreateTokenResponse
	ds2.call(t, "createToken", map[string]any{"name": "other", "policies": []string{"secrets-reader"}}, &tok)
	s = s2
	codes := []int{}
	for i := 0; i < 3; i++ {
		codes = append(codes, send("/v1/whoami", "10.0.0.1:1000", "Bearer "+tok.Token).Code)
	}
	if fmt.Sprint(codes) != "[200 200 429]" {
		t.Fatalf("per-token: %v, want [200 200 429]", codes)
	}
	if w := send("/v1/whoami", "10.0.0.1:1000", "Bearer "+ds2.Root); w.Code != http.StatusOK {
		t.Fatalf("another token: %d", w.Code)
	}
}

// TestKeyedLimiterBounded: a client rotating keys can't grow the limiter's
// state past its cap; idle keys are forgotten.
func TestKeyedLimiterBounded(t *testing.T) {
	k := newKeyedLimiter[netip.Addr](Rate{PerSecond: 1000, Burst: 1})
	now := time.Now()
	for i := 0; i < 3*maxLimiterKeys; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		k.allow(a, now)
	}
	if n := k.size(); n > maxLimiterKeys {
		t.Fatalf("%d keys held, cap %d", n, maxLimiterKeys)
	}
	// Later, new keys get their own buckets again: the idle ones went.
	later := now.Add(2 * time.Second)
	for i := 0; i < 2*maxLimiterKeys; i++ {
		a := netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)})
		if ok, _ := k.allow(a, later); !ok && i < maxLimiterKeys/2 {
			t.Fatalf("new key %d refused after the old ones expired", i)
		}
	}
	if n := k.size(); n > maxLimiterKeys {
		t.Fatalf("%d keys held, cap %d", n, maxLimiterKeys)
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]Rate{"0": {}, "10": {10, 20}, "10:5": {10, 5}, "0.5": {0.5, 1}, "50000:100000": {50000, 100000}} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("%q: %+v %v, want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1", "10:0", "10:x", "NaN", "Inf"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// TestConnectionCaps: a connection over the per-source or the total cap is
// closed at once; closing one frees its place; trusted proxies are exempt
// from the per-source cap.
func TestConnectionCaps(t *testing.T) {
	open := func(t *testing.T, ln net.Listener) net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return nil // refused so fast that even the connect saw the reset
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// served reports whether the server answers on c (an echo of one line).
	served := func(c net.Conn) bool {
		if c == nil {
			return false
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "ping\n"); err != nil {
			return false
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		return err == nil && line == "ping\n"
	}
	serve := func(t *testing.T, max, perSource int, trusted []netip.Prefix) net.Listener {
		raw, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln := LimitListener(raw, max, perSource, trusted, nil)
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					r := bufio.NewReader(c)
					for {
						line, err := r.ReadString('\n')
						if err != nil {
							return
						}
						_, _ = io.WriteString(c, line)
					}
				}()
			}
		}()
		return ln
	}
	t.Run("per source", func(t *testing.T) {
		ln := serve(t, 10, 2, nil)
		a, b := open(t, ln), open(t, ln)
		if !served(a) || !served(b) {
			t.Fatal("connections under the cap not served")
		}
		if c := open(t, ln); served(c) {
			t.Fatal("third connection from one source served, cap 2")
		}
		a.Close()
		waitFor(t, func() bool { return served(open(t, ln)) })
	})
	t.Run("total, trusted proxy exempt from per source", func(t *testing.T) {
		ln := serve(t, 3, 1, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
		cs := []net.Conn{open(t, ln), open(t, ln), open(t, ln)}
		for i, c := range cs {
			if !served(c) {
				t.Fatalf("connection %d not served", i)
			}
		}
		if c := open(t, ln); served(c) {
			t.Fatal("fourth connection served, total cap 3")
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkServeUnauthenticated: the whole handler for a request refused
// at authentication (no Raft work): rate limiter, routing, auth.
func BenchmarkServeUnauthenticated(b *testing.B) {
	line, _ := kms.GenerateRootKey()
	rk, _ := kms.ParseRootKeys([]byte(line))
	n, err := node.New(node.Config{Dev: true, NodeID: "dev", RootKeys: rk})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	rs, _ := ParseRate(DefaultRatePerSource)
	rt, _ := ParseRate(DefaultRatePerToken)
	h := New(n, Config{Limits: Limits{PerSource: rs, PerToken: rt}}).Handler()
	body := []byte(`{"path":"/app/prod/api/db-password"}`)
	// Many sources: one would be rate limited at this speed.
	var sources [256]string
	for i := range sources {
		sources[i] = fmt.Sprintf("10.1.2.%d:4567", i)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r := httptest.NewRequest(http.MethodPost, "/v1/getSecretValue", bytes.NewReader(body))
		r.RemoteAddr = sources[i%len(sources)]
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusUnauthorized {
			b.Fatal(w.Code)
		}
	}
}

// BenchmarkLimiterAllow is what the rate limits add to a request: one
// per-source and one per-token bucket, from parallel clients.
func BenchmarkLimiterAllow(b *testing.B) {
	rs, _ := ParseRate(DefaultRatePerSource)
	src := newKeyedLimiter[netip.Addr](rs)
	tok := newKeyedLimiter[string](rs)
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(1)
		a := netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
		accessor := fmt.Sprintf("%032x", i)
		for pb.Next() {
			now := time.Now()
			src.allow(sourceKey(a), now)
			tok.allow(accessor, now)
		}
	})
}

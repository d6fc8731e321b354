package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/internal/testcluster"
)

func short(cfg Config) Config {
	cfg.Concurrency, cfg.Duration, cfg.Warmup = 4, 300*time.Millisecond, 50*time.Millisecond
	return cfg
}

// Every workload runs against real nodes without an error, and the writes
// it reports are in the cluster.
func TestWorkloadsAgainstACluster(t *testing.T) {
	c := testcluster.New(t, 3)
	var targets []string
	for _, n := range c.Nodes {
		targets = append(targets, n.URL)
	}
	base := Config{Targets: targets, Token: c.RootToken, Workload: Put, Keys: 20, ValueSize: 100, Prefix: "/bench/t"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := Prepare(ctx, short(base)); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct{ workload, consistency string }{
		{Put, ""}, {Get, ""}, {Get, "leader"}, {Mixed, ""}, {Generate, ""}, {BatchGet, "stale"},
	} {
		cfg := short(base)
		cfg.Workload, cfg.Consistency = w.workload, w.consistency
		res, err := Run(ctx, cfg)
		if err != nil {
			t.Fatalf("%s: %v", w.workload, err)
		}
		if res.Ops == 0 || len(res.Errors) > 0 || res.P50Ms <= 0 || res.MaxMs < res.P99Ms {
			t.Fatalf("%s %s: %+v", w.workload, w.consistency, res)
		}
	}
	cl := c.Client(0)
	written := 0
	for i := range base.Keys {
		d, err := cl.DescribeSecret(ctx, &apitypes.DescribeSecretRequest{Path: base.path(i)})
		if err != nil {
			t.Fatal(err)
		}
		if d.Secret.CurrentVersion > 1 {
			written++
		}
	}
	if written == 0 {
		t.Fatal("the put and generate workloads reported writes, but no secret has a second version")
	}
}

// Errors are counted by their API code, and a node that can't be reached
// is a NetworkError, not a crash or a spin.
func TestErrorsByCode(t *testing.T) {
	c := testcluster.New(t, 1)
	ctx := context.Background()
	res, err := Run(ctx, short(Config{Targets: []string{c.Nodes[0].URL}, Token: "cfr_not-a-token", Workload: Get}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops == 0 || res.Errors["Unauthenticated"] != res.Ops {
		t.Fatalf("with a bad token: %+v", res)
	}
	res, err = Run(ctx, short(Config{Targets: []string{"http://" + testcluster.FreeAddr(t)}, Token: "x", Workload: Put}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors["NetworkError"] != res.Ops || res.Ops > 4*int64(res.Seconds/redialPause.Seconds()+2) {
		t.Fatalf("against a closed port: %+v", res)
	}
	if _, err := Run(ctx, Config{Targets: []string{"ftp://x"}, Workload: Get}); err == nil {
		t.Fatal("an ftp:// target was accepted")
	}
	if _, err := Run(ctx, Config{Targets: []string{"http://x"}, Workload: Get, Consistency: "eventual"}); err == nil {
		t.Fatal("consistency \"eventual\" was accepted")
	}
}

// The load tool speaks HTTP/1.1 itself: over TLS, with answers of any
// length and chunked ones, on connections it keeps alive.
func TestHTTPOverTLSKeepsConnections(t *testing.T) {
	var conns atomic.Int64
	var bad atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		err := json.NewDecoder(r.Body).Decode(&body)
		switch {
		case err != nil:
			bad.Store(fmt.Sprintf("body: %v", err))
		case r.URL.Path != "/v1/getSecretValue" || r.Method != http.MethodPost:
			bad.Store(r.Method + " " + r.URL.Path)
		case r.Header.Get("Authorization") != "Bearer tok":
			bad.Store("authorization " + r.Header.Get("Authorization"))
		case !strings.HasPrefix(fmt.Sprint(body["path"]), `/q"uote/k00000`) || body["consistency"] != "leader":
			bad.Store(fmt.Sprintf("body %v", body))
		}
		if strings.HasSuffix(fmt.Sprint(body["path"]), "1") { // a long chunked answer
			w.WriteHeader(http.StatusOK)
			for range 20 {
				_, _ = io.WriteString(w, strings.Repeat("x", 1000))
				w.(http.Flusher).Flush()
			}
			return
		}
		if strings.HasSuffix(fmt.Sprint(body["path"]), "2") {
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, `{"error":{"code":"PermissionDenied","message":"no"}}`)
			return
		}
		_, _ = io.WriteString(w, `{"value":"dmFsdWU="}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	res, err := Run(context.Background(), short(Config{
		Targets: []string{srv.URL}, Token: "tok", Workload: Get, Consistency: "leader", Keys: 3, Prefix: `/q"uote`,
		TLS: &tls.Config{RootCAs: pool},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if v := bad.Load(); v != nil {
		t.Fatalf("the server got a bad request: %v", v)
	}
	if res.Ops < 20 || res.Errors["PermissionDenied"] == 0 || len(res.Errors) != 1 {
		t.Fatalf("result %+v", res)
	}
	if n := conns.Load(); n > 4 {
		t.Fatalf("%d connections for 4 clients: they were not kept alive", n)
	}
}

// Request bodies are valid JSON naming the expected secrets, batch-get
// included when the key count is a multiple of its walk's step.
func TestRequestBodies(t *testing.T) {
	for _, keys := range []int{1, 5, 7919, 15838} {
		c := Config{Targets: []string{"http://x"}, Workload: BatchGet, Keys: keys, BatchSize: 10, Prefix: `/p"q`, Consistency: "stale"}
		if err := c.defaults(); err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{Put, Get, Mixed, Generate, BatchGet} {
			c.Workload = w
			action, body := c.request(nil, 12345, "dmFs")
			var v struct {
				Path, Value, Consistency string
				Paths                    []string
			}
			if err := json.Unmarshal(body, &v); err != nil {
				t.Fatalf("%s, %d keys: %s: %v", w, keys, body, err)
			}
			paths := append(v.Paths, v.Path)
			for _, p := range paths {
				if p != "" && !strings.HasPrefix(p, `/p"q/k`) {
					t.Fatalf("%s: path %q", action, p)
				}
			}
			if w == BatchGet && len(v.Paths) != min(10, keys) {
				t.Fatalf("batch-get over %d keys: %d paths", keys, len(v.Paths))
			}
		}
	}
}

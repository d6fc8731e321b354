package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/kms"
	"github.com/cofferhq/coffer/node"
)

// devServer is a single in-memory dev node served through httptest.
type devServer struct {
	URL    string
	Root   string // root token
	Node   *node.Node
	client *http.Client
}

// startDev starts a dev node, serves its API, initializes it and returns the
// base URL and root token. Everything is closed in t.Cleanup.
func startDev(t testing.TB) *devServer {
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
	srv := httptest.NewServer(New(n, Config{}).Handler())
	t.Cleanup(srv.Close) // runs before the node closes (LIFO)
	ds := &devServer{URL: srv.URL, Node: n, client: &http.Client{Timeout: 60 * time.Second}}
	t.Cleanup(ds.client.CloseIdleConnections)

	// The cluster init entry (default key, cluster id) is committed by the
	// leader loop shortly after the election: retry init until it lands.
	deadline := time.Now().Add(20 * time.Second)
	for {
		a := ds.do(t, http.MethodPost, "/v1/sys/init", "", []byte(`{}`))
		if a.Status == http.StatusOK {
			var ir apitypes.InitResponse
			a.strictJSON(t, &ir)
			if ir.RootToken == "" || ir.Accessor == "" || ir.Index == 0 {
				t.Fatalf("init answer incomplete: %s", a.Body)
			}
			ds.Root = ir.RootToken
			return ds
		}
		if a.Status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("init: %d %s", a.Status, a.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// apiAnswer is one HTTP answer.
type apiAnswer struct {
	Status int
	Header http.Header
	Body   []byte
}

// do sends one request. authz is the literal Authorization header ("" for none).
func (ds *devServer) do(t testing.TB, method, urlPath, authz string, body []byte) apiAnswer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, ds.URL+urlPath, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := ds.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, urlPath, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", method, urlPath, err)
	}
	return apiAnswer{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

func (ds *devServer) bearer() string { return "Bearer " + ds.Root }

// post sends POST /v1/<action> with the root token and a raw body.
func (ds *devServer) post(t testing.TB, action string, body []byte) apiAnswer {
	t.Helper()
	return ds.do(t, http.MethodPost, "/v1/"+action, ds.bearer(), body)
}

func jsonBody(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// call posts body (marshalled) as root and requires 200; the answer is
// decoded strictly into out when out is non-nil.
func (ds *devServer) call(t testing.TB, action string, body any, out any) apiAnswer {
	t.Helper()
	a := ds.post(t, action, jsonBody(t, body))
	if a.Status != http.StatusOK {
		t.Fatalf("%s %s: want 200, got %d %s", action, jsonBody(t, body), a.Status, a.Body)
	}
	a.checkCommon(t)
	if out != nil {
		a.strictJSON(t, out)
	}
	return a
}

// fail posts body as root and requires an error answer with status/code.
func (ds *devServer) fail(t testing.TB, action string, body any, status int, code errs.Code) apitypes.ErrorDetail {
	t.Helper()
	a := ds.post(t, action, jsonBody(t, body))
	return a.wantError(t, status, code)
}

// strictJSON decodes the answer, refusing unknown fields and trailing data.
func (a apiAnswer) strictJSON(t testing.TB, out any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(a.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		t.Fatalf("decode answer %s: %v", a.Body, err)
	}
	if dec.More() {
		t.Fatalf("trailing data in answer %s", a.Body)
	}
}

// keys returns the sorted top-level keys of a JSON object answer.
func (a apiAnswer) keys(t testing.TB) []string {
	t.Helper()
	return jsonObjectKeys(t, a.Body)
}

func jsonObjectKeys(t testing.TB, raw []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("not a JSON object: %s: %v", raw, err)
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func wantJSONKeys(t testing.TB, what string, raw []byte, want ...string) {
	t.Helper()
	got := jsonObjectKeys(t, raw)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%s: fields %v, want %v (in %s)", what, got, want, raw)
	}
}

// checkCommon asserts what every JSON answer carries.
func (a apiAnswer) checkCommon(t testing.TB) {
	t.Helper()
	if cc := a.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store (status %d)", cc, a.Status)
	}
	if ct := a.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json (status %d)", ct, a.Status)
	}
	if !json.Valid(a.Body) {
		t.Errorf("answer is not valid JSON: %q", a.Body)
	}
}

// wantError checks an error answer: status, code, shape, non-empty message.
func (a apiAnswer) wantError(t testing.TB, status int, code errs.Code) apitypes.ErrorDetail {
	t.Helper()
	a.checkCommon(t)
	var eb apitypes.ErrorBody
	dec := json.NewDecoder(bytes.NewReader(a.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&eb); err != nil {
		t.Fatalf("error answer %q is not {\"error\":{code,message}}: %v", a.Body, err)
	}
	if a.Status != status || eb.Error.Code != string(code) {
		t.Fatalf("got %d %s (%s), want %d %s", a.Status, eb.Error.Code, eb.Error.Message, status, code)
	}
	if strings.TrimSpace(eb.Error.Message) == "" {
		t.Fatalf("empty error message in %s", a.Body)
	}
	return eb.Error
}

// stateFingerprint lists every secret recursively, describes each one and
// lists the tokens: two equal fingerprints mean no secret, version or token
// changed (audit entries and indexes are excluded).
func (ds *devServer) stateFingerprint(t testing.TB) string {
	t.Helper()
	var sb strings.Builder
	token := ""
	for {
		var page apitypes.ListSecretsResponse
		ds.call(t, "listSecrets", map[string]any{"prefix": "/", "recursive": true, "page_size": 1000, "page_token": token}, &page)
		for _, s := range page.Secrets {
			var d apitypes.DescribeSecretResponse
			ds.call(t, "describeSecret", map[string]any{"path": s.Path}, &d)
			fmt.Fprintf(&sb, "%s\n", jsonBody(t, d.Secret))
		}
		if page.NextPageToken == "" {
			break
		}
		token = page.NextPageToken
	}
	var toks apitypes.ListTokensResponse
	ds.call(t, "listTokens", map[string]any{}, &toks)
	fmt.Fprintf(&sb, "tokens %s\n", jsonBody(t, toks.Tokens))
	return sb.String()
}

// stdb64 is the standard, padded base64 of s.
func stdb64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func jsonQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
)

// testBadInput sends malformed and invalid requests to every node: each gets
// a clear 4xx error, nothing changes, and every node keeps serving.
func testBadInput(t *testing.T, c *cluster) {
	big := strings.Repeat("A", 2<<20)
	tooLargeValue := make([]byte, 64<<10+1)
	tooLargeB64, _ := json.Marshal(tooLargeValue)
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	manyPaths, _ := json.Marshal(map[string]any{"paths": func() []string {
		p := make([]string, 101)
		for i := range p {
			p[i] = fmt.Sprintf("/e2e/bad/p%d", i)
		}
		return p
	}()})

	const anyClientError = 0
	cases := []struct {
		name, action, body string
		status             int
		code               string
	}{
		{"truncated JSON", "createSecret", `{"path": "/e2e/bad/a", `, 400, "InvalidArgument"},
		{"not JSON", "createSecret", `path=/e2e/bad/a`, 400, "InvalidArgument"},
		{"malformed JSON get", "getSecretValue", `{"path": "/e2e/app/db-password"`, 400, "InvalidArgument"},
		{"malformed JSON put", "putSecretValue", `{"path": "/e2e/app/db-password", "value": "eA=="}}`, 400, "InvalidArgument"},
		{"array body", "createSecret", `[]`, 400, "InvalidArgument"},
		{"string body", "createSecret", `"x"`, 400, "InvalidArgument"},
		{"null body", "createSecret", `null`, 400, "InvalidArgument"},
		{"trailing data", "createSecret", `{"path": "/e2e/bad/a"} {"path": "/e2e/bad/b"}`, 400, "InvalidArgument"},
		{"unknown field", "createSecret", `{"path": "/e2e/bad/a", "nope": 1}`, 400, "InvalidArgument"},
		{"wrong type path", "createSecret", `{"path": 5}`, 400, "InvalidArgument"},
		{"wrong type labels", "createSecret", `{"path": "/e2e/bad/a", "labels": ["x"]}`, 400, "InvalidArgument"},
		{"bad base64", "createSecret", `{"path": "/e2e/bad/a", "value": "!!not base64!!"}`, 400, "InvalidArgument"},
		{"empty value", "createSecret", `{"path": "/e2e/bad/a", "value": ""}`, 400, "InvalidArgument"},
		{"value too large", "createSecret", `{"path": "/e2e/bad/a", "value": ` + string(tooLargeB64) + `}`, 413, "TooLarge"},
		{"body over 1 MiB", "createSecret", `{"path": "/e2e/bad/a", "description": "` + big + `"}`, 413, "TooLarge"},
		{"relative path", "createSecret", `{"path": "e2e/bad/a"}`, 400, "InvalidArgument"},
		{"dot-dot path", "createSecret", `{"path": "/e2e/../a"}`, 400, "InvalidArgument"},
		{"trailing slash", "createSecret", `{"path": "/e2e/bad/"}`, 400, "InvalidArgument"},
		{"NUL in path", "createSecret", `{"path": "/e2e/bad/a\u0000b"}`, 400, "InvalidArgument"},
		{"invalid UTF-8", "createSecret", "{\"path\": \"/e2e/bad/\xff\xfe\"}", 400, "InvalidArgument"},
		{"path too long", "createSecret", `{"path": "/` + strings.Repeat("a/", 300) + `a"}`, 400, "InvalidArgument"},
		{"deep nesting", "createSecret", `{"path": ` + deep + `}`, anyClientError, ""},
		{"negative version", "getSecretValue", `{"path": "/e2e/app/db-password", "version": -1}`, 400, "InvalidArgument"},
		{"huge version", "getSecretValue", `{"path": "/e2e/app/db-password", "version": 1e400}`, 400, "InvalidArgument"},
		{"string version", "getSecretValue", `{"path": "/e2e/app/db-password", "version": "1"}`, 400, "InvalidArgument"},
		{"bad consistency", "getSecretValue", `{"path": "/e2e/app/db-password", "consistency": "eventual"}`, 400, "InvalidArgument"},
		{"bad min_index", "getSecretValue", `{"path": "/e2e/app/db-password", "min_index": "abc"}`, 400, "InvalidArgument"},
		{"negative expected_version", "putSecretValue", `{"path": "/e2e/app/db-password", "value": "eA==", "expected_version": -5}`, 400, "InvalidArgument"},
		{"generate length", "generateSecret", `{"path": "/e2e/app/db-password", "length": 5000}`, 400, "InvalidArgument"},
		{"generate charset", "generateSecret", `{"path": "/e2e/app/db-password", "charset": "emoji"}`, 400, "InvalidArgument"},
		{"list page size", "listSecrets", `{"prefix": "/", "page_size": 100000}`, 400, "InvalidArgument"},
		{"list prefix", "listSecrets", `{"prefix": "e2e"}`, 400, "InvalidArgument"},
		{"list page token", "listSecrets", `{"prefix": "/", "page_token": "garbage%%%"}`, 400, "InvalidArgument"},
		{"batch too many", "batchGetSecretValue", string(manyPaths), 400, "InvalidArgument"},
		{"destroy version 0", "destroySecretVersion", `{"path": "/e2e/app/db-password", "version": 0}`, 400, "InvalidArgument"},
		{"unknown action", "frobnicate", `{}`, 404, "NotFound"},
		{"restore garbage", "sys/restore", `this is not a snapshot`, anyClientError, ""},
		{"join without addr", "sys/join", `{"addr": ""}`, 400, "InvalidArgument"},
		{"remove without node_id", "sys/removePeer", `{"node_id": ""}`, 400, "InvalidArgument"},
		{"query audit bad time", "queryAudit", `{"since": "yesterday"}`, 400, "InvalidArgument"},
	}
	for i, tc := range cases {
		s := c.nodes[i%len(c.nodes)]
		r, err := postRaw(s.url, c.token, tc.action, []byte(tc.body))
		if err != nil {
			t.Fatalf("%s on %s: no answer: %v", tc.name, s.name, err)
		}
		switch {
		case tc.status == anyClientError && (r.status < 400 || r.status > 499 || r.errorCode() == ""):
			t.Errorf("%s on %s: want a 4xx error answer, got %s", tc.name, s.name, r)
		case tc.status != anyClientError && (r.status != tc.status || r.errorCode() != tc.code):
			t.Errorf("%s on %s: want %d %s, got %s", tc.name, s.name, tc.status, tc.code, r)
		}
		if r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s on %s: error answer without Cache-Control: no-store", tc.name, s.name)
		}
	}

	// An address that can't be resolved is the caller's mistake, yet it is
	// answered Unavailable (503), which invites retries; accept any error
	// answer but a crash or a 500.
	for _, s := range c.nodes {
		r, err := postRaw(s.url, c.token, "sys/join", []byte(`{"addr": "not an address"}`))
		if err != nil || r.status < 400 || r.status == 500 || r.errorCode() == "" {
			t.Errorf("join garbage on %s: want an error answer, got %s (%v)", s.name, r, err)
		}
	}

	// protocol-level oddities
	for _, s := range c.nodes {
		resp, err := httpClient.Get(s.url + "/v1/createSecret")
		if err != nil {
			t.Fatalf("GET on %s: %v", s.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET /v1/createSecret on %s: HTTP %d, want 405", s.name, resp.StatusCode)
		}
		for _, auth := range []string{"", "Bearer", "Bearer \x7f\x01", "Basic Zm9vOmJhcg==", "Bearer " + strings.Repeat("x", 8000)} {
			req, _ := http.NewRequest(http.MethodPost, s.url+"/v1/listSecrets", strings.NewReader(`{"prefix": "/"}`))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := httpClient.Do(req)
			if err != nil {
				if strings.ContainsAny(auth, "\x7f\x01") {
					continue // the Go client refuses to send it
				}
				t.Fatalf("listSecrets with Authorization %.20q on %s: %v", auth, s.name, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("listSecrets with Authorization %.20q on %s: HTTP %d, want 401", auth, s.name, resp.StatusCode)
			}
		}
	}

	// random mutations of valid requests: never a 5xx, never a dead node
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 42))
	valid := []struct{ action, body string }{
		{"createSecret", `{"path": "/e2e/fuzz/a", "value": "aGVsbG8=", "labels": {"k": "v"}, "description": "d"}`},
		{"putSecretValue", `{"path": "/e2e/fuzz/a", "value": "aGVsbG8=", "expected_version": 1}`},
		{"getSecretValue", `{"path": "/e2e/fuzz/a", "version": 1, "consistency": "leader", "min_index": 1}`},
		{"listSecrets", `{"prefix": "/e2e/", "recursive": true, "page_size": 10}`},
		{"generateSecret", `{"path": "/e2e/fuzz/b", "length": 16, "charset": "hex", "create": true}`},
		{"describeSecret", `{"path": "/e2e/fuzz/a"}`},
		{"updateSecret", `{"path": "/e2e/fuzz/a", "labels": {"a": "b"}}`},
		{"batchGetSecretValue", `{"paths": ["/e2e/fuzz/a", "/e2e/fuzz/b"]}`},
		{"queryAudit", `{"limit": 5, "path_prefix": "/e2e/fuzz/"}`},
	}
	const fuzzN = 300
	for i := range fuzzN {
		v := valid[rng.IntN(len(valid))]
		body := mutate(rng, []byte(v.body))
		s := c.nodes[i%len(c.nodes)]
		r, err := postRaw(s.url, c.token, v.action, body)
		if err != nil {
			t.Fatalf("fuzz (seed %d) %s %q on %s: no answer: %v", seed, v.action, body, s.name, err)
		}
		if r.status >= 500 && r.status != http.StatusServiceUnavailable {
			t.Errorf("fuzz (seed %d) %s %q on %s: %s", seed, v.action, body, s.name, r)
		}
	}

	// nothing under /e2e/bad/ was created, and every node still serves
	for _, s := range c.nodes {
		if !s.running() {
			t.Fatalf("%s exited during the bad-input test:\n%s", s.name, tail(s.logPath, 30))
		}
		if h, status := s.health(); status != http.StatusOK {
			t.Errorf("%s: health HTTP %d after bad input: %+v", s.name, status, h)
		}
		var ls apitypes.ListSecretsResponse
		mustPost(t, s.url, c.token, "listSecrets", apitypes.ListSecretsRequest{Prefix: "/e2e/bad/", Recursive: true, ReadOptions: apitypes.ReadOptions{Consistency: "leader"}}, &ls)
		if len(ls.Secrets) != 0 {
			t.Errorf("%s: failed requests created secrets: %+v", s.name, ls.Secrets)
		}
		var gv apitypes.GetSecretValueResponse
		mustPost(t, s.url, c.token, "getSecretValue", apitypes.GetSecretValueRequest{Path: "/e2e/app/db-password", Version: 2, ReadOptions: apitypes.ReadOptions{Consistency: "leader"}}, &gv)
		if len(gv.Value) != 256+4096 {
			t.Errorf("%s: version 2 changed after bad input: %d bytes", s.name, len(gv.Value))
		}
	}
}

// mutate applies a few random byte-level changes to a JSON body.
func mutate(rng *rand.Rand, b []byte) []byte {
	b = bytes.Clone(b)
	tokens := [][]byte{[]byte(`"`), []byte(`{`), []byte(`}`), []byte(`[`), []byte(`]`), []byte(`,`), []byte(`:`),
		[]byte(`null`), []byte(`-1`), []byte(`1e999`), []byte(`"\u0000"`), []byte(`/..`), []byte("\xff"), []byte(`18446744073709551616`),
		[]byte(`true`), []byte(`""`), []byte(`"/"`), []byte(`{"a":{"b":[]}}`)}
	for range 1 + rng.IntN(3) {
		if len(b) == 0 {
			b = append(b, tokens[rng.IntN(len(tokens))]...)
			continue
		}
		i := rng.IntN(len(b))
		switch rng.IntN(4) {
		case 0: // delete a byte range
			j := min(len(b), i+1+rng.IntN(8))
			b = append(b[:i], b[j:]...)
		case 1: // insert a token
			tok := tokens[rng.IntN(len(tokens))]
			b = append(b[:i], append(bytes.Clone(tok), b[i:]...)...)
		case 2: // flip a byte
			b[i] = byte(rng.IntN(256))
		case 3: // duplicate a range
			j := min(len(b), i+1+rng.IntN(16))
			b = append(b[:j], append(bytes.Clone(b[i:j]), b[j:]...)...)
		}
	}
	return b
}

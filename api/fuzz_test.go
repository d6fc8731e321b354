package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"sort"
	"testing"
	"unicode/utf8"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
)

// fuzzActions are the actions FuzzActionBody posts to (index = byte % len).
var fuzzActions = []string{
	"createSecret", "putSecretValue", "getSecretValue", "describeSecret", "listSecrets",
	"batchGetSecretValue", "generateSecret", "updateSecret", "destroySecretVersion", "deleteSecret",
	"whoami", "sys/init",
}

func fuzzActionIndex(name string) (uint8, bool) {
	for i, a := range fuzzActions {
		if a == name {
			return uint8(i), true
		}
	}
	return 0, false
}

// FuzzActionBody posts arbitrary bodies to several actions: the server must
// never panic (a recovered panic answers Internal) and must always answer
// valid JSON, either 200 with an index or a known error code with its status.
func FuzzActionBody(f *testing.F) {
	for _, c := range badCases() {
		if len(c.body) > 8<<10 {
			continue // keep the corpus small; size limits are in TestBadInputs
		}
		if i, ok := fuzzActionIndex(c.action); ok {
			f.Add(i, []byte(c.body))
		}
	}
	for _, seed := range []struct{ action, body string }{
		{"createSecret", `{"path":"/f/a","value":"` + stdb64("v") + `","labels":{"a":"b"},"description":"d"}`},
		{"createSecret", `{"path":"/f/b"}`},
		{"putSecretValue", `{"path":"/f/a","value":"` + stdb64("w") + `","expected_version":1}`},
		{"getSecretValue", `{"path":"/f/a","version":1,"consistency":"leader"}`},
		{"describeSecret", `{"path":"/f/a"}`},
		{"listSecrets", `{"prefix":"/f/","recursive":true,"page_size":1}`},
		{"batchGetSecretValue", `{"paths":["/f/a","/f/b","/f/c"]}`},
		{"generateSecret", `{"path":"/f/g","create":true,"charset":"password","length":12}`},
		{"updateSecret", `{"path":"/f/a","access_policy":{"source_cidrs":["127.0.0.0/8"],"time_windows":[{"days":["mon"],"start":"09:00","end":"18:00","timezone":"Europe/Berlin"}]}}`},
		{"destroySecretVersion", `{"path":"/f/a","version":1}`},
		{"deleteSecret", `{"path":"/f/b"}`},
		{"whoami", ``},
		{"sys/init", `{}`},
		{"listSecrets", `null`},
		{"getSecretValue", `{"path":"/f/a","path":"/f/b"}`},
		{"createSecret", `{"PATH":"/f/upper"}`},
		{"createSecret", `{"path":"/f/\u00e9"}`},
		{"createSecret", "{\"path\":\"/f/a\",\"value\":\"dg\\n==\"}"},
		{"describeSecret", string(bytes.Repeat([]byte("["), 20000))},
	} {
		i, _ := fuzzActionIndex(seed.action)
		f.Add(i, []byte(seed.body))
	}

	ds := startDev(f)
	ds.call(f, "createSecret", map[string]any{"path": "/t/a", "value": stdb64("one")}, nil)
	f.Fuzz(func(t *testing.T, idx uint8, body []byte) {
		action := fuzzActions[int(idx)%len(fuzzActions)]
		a := ds.post(t, action, body)
		if cc := a.Header.Get("Cache-Control"); cc != "no-store" {
			t.Fatalf("%s: Cache-Control %q", action, cc)
		}
		if !json.Valid(a.Body) {
			t.Fatalf("%s %q: answer %d is not JSON: %q", action, body, a.Status, a.Body)
		}
		if a.Status == http.StatusOK {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(a.Body, &m); err != nil {
				t.Fatalf("%s %q: 200 answer is not an object: %q", action, body, a.Body)
			}
			if _, ok := m["index"]; !ok {
				t.Fatalf("%s %q: 200 answer without index: %q", action, body, a.Body)
			}
			return
		}
		var eb apitypes.ErrorBody
		dec := json.NewDecoder(bytes.NewReader(a.Body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&eb); err != nil {
			t.Fatalf("%s %q: error answer %d has the wrong shape: %q", action, body, a.Status, a.Body)
		}
		code := errs.Code(eb.Error.Code)
		if !errs.KnownCode(code) || eb.Error.Message == "" {
			t.Fatalf("%s %q: unknown code or empty message: %q", action, body, a.Body)
		}
		if code == errs.Internal {
			t.Fatalf("%s %q: Internal error (a panic or an unhandled case): %q", action, body, a.Body)
		}
		if errs.HTTPStatus(code) != a.Status {
			t.Fatalf("%s %q: status %d does not match code %s", action, body, a.Status, code)
		}
	})
}

// keyNameRequest is the body of disableKey, enableKey and cancelKeyDeletion.
type keyNameRequest struct {
	Name string `json:"name"`
}

// requestTypes is the request type each action decodes its body into
// (TestRequestTypesCovered keeps it complete).
var requestTypes = map[string]func() any{
	"createSecret":           func() any { return &apitypes.CreateSecretRequest{} },
	"describeSecret":         func() any { return &apitypes.DescribeSecretRequest{} },
	"listSecrets":            func() any { return &apitypes.ListSecretsRequest{} },
	"getSecretValue":         func() any { return &apitypes.GetSecretValueRequest{} },
	"batchGetSecretValue":    func() any { return &apitypes.BatchGetSecretValueRequest{} },
	"putSecretValue":         func() any { return &apitypes.PutSecretValueRequest{} },
	"generateSecret":         func() any { return &apitypes.GenerateSecretRequest{} },
	"updateSecret":           func() any { return &apitypes.UpdateSecretRequest{} },
	"destroySecretVersion":   func() any { return &apitypes.DestroySecretVersionRequest{} },
	"deleteSecret":           func() any { return &apitypes.DeleteSecretRequest{} },
	"createToken":            func() any { return &apitypes.CreateTokenRequest{} },
	"revokeToken":            func() any { return &apitypes.RevokeTokenRequest{} },
	"listTokens":             func() any { return &apitypes.ListTokensRequest{} },
	"whoami":                 func() any { return &apitypes.WhoamiRequest{} },
	"putPolicy":              func() any { return &apitypes.PutPolicyRequest{} },
	"getPolicy":              func() any { return &apitypes.GetPolicyRequest{} },
	"listPolicies":           func() any { return &apitypes.ListPoliciesRequest{} },
	"deletePolicy":           func() any { return &apitypes.DeletePolicyRequest{} },
	"createKey":              func() any { return &apitypes.CreateKeyRequest{} },
	"describeKey":            func() any { return &apitypes.DescribeKeyRequest{} },
	"listKeys":               func() any { return &apitypes.ListKeysRequest{} },
	"rotateKey":              func() any { return &apitypes.RotateKeyRequest{} },
	"disableKey":             func() any { return &keyNameRequest{} },
	"enableKey":              func() any { return &keyNameRequest{} },
	"scheduleKeyDeletion":    func() any { return &apitypes.ScheduleKeyDeletionRequest{} },
	"cancelKeyDeletion":      func() any { return &keyNameRequest{} },
	"listKeyBindings":        func() any { return &apitypes.ListKeyBindingsRequest{} },
	"rebindSecretKey":        func() any { return &apitypes.RebindSecretKeyRequest{} },
	"sys/rewrap":             func() any { return &apitypes.RewrapRequest{} },
	"queryAudit":             func() any { return &apitypes.QueryAuditRequest{} },
	"verifyAudit":            func() any { return &apitypes.VerifyAuditRequest{} },
	"sys/init":               func() any { return &struct{}{} },
	"sys/cluster":            func() any { return &apitypes.ClusterRequest{} },
	"sys/join":               func() any { return &apitypes.JoinRequest{} },
	"sys/removePeer":         func() any { return &apitypes.RemovePeerRequest{} },
	"sys/transferLeadership": func() any { return &apitypes.TransferLeadershipRequest{} },
}

// requestTypeNames is requestTypes' keys in a fixed order (index = byte % len).
var requestTypeNames = func() []string {
	var names []string
	for n := range requestTypes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}()

// FuzzRequestDecoder decodes arbitrary bytes into the request type of every
// action with the strict decoder (no server: fast). It must never panic;
// anything it refuses is InvalidArgument; anything it accepts is valid
// UTF-8 JSON without a repeated key at any depth, and encodes and decodes
// back to the same request.
func FuzzRequestDecoder(f *testing.F) {
	for _, c := range badCases() {
		if len(c.body) <= 8<<10 {
			f.Add(uint8(indexOf(requestTypeNames, c.action)), []byte(c.body))
		}
	}
	for i, seed := range []string{
		`{"path":"/a/b","value":"dmFsdWU=","labels":{"a":"b"},"description":"d\u00e9","access_policy":{"source_cidrs":["10.0.0.0/8"],"time_windows":[{"days":["mon"],"start":"09:00","end":"18:00","timezone":"UTC"}]}}`,
		`{"name":"p","rules":[{"effect":"allow","actions":["getSecretValue"],"paths":["/app/*"],"conditions":{"source_cidrs":["10.0.0.0/8"]}}]}`,
		`{"since":"2026-01-02T03:04:05Z","until":"2026-01-02T03:04:06.5+02:00","limit":10,"actions":["secrets.get_value"],"page_token":"x"}`,
		`{"path":"/a/b","value":"a\/8=","expected_version":1}`,
		`{"path":"/a/b","path":"/a/c"}`,
		`{"labels":{"k":"v","k":"w"}}`,
		`{"value":[1,2]}`,
		"{\"value\":\"dmFs\r\ndWU=\"}",
		"{\"path\":\"\xff\"}",
		`{"description":"\ud800"}`,
		`{"limit":0}`,
		`{"name":"k","pending_days":7,"force":true}`,
		`null`, ``, `[]`, `{"paths":["/a","/b"],"consistency":"leader","min_index":5}`,
	} {
		for j := range requestTypeNames {
			if (i+j)%5 == 0 {
				f.Add(uint8(j), []byte(seed))
			}
		}
	}
	f.Fuzz(func(t *testing.T, idx uint8, body []byte) {
		name := requestTypeNames[int(idx)%len(requestTypeNames)]
		v := requestTypes[name]()
		err := decode(body, v)
		if err != nil {
			if errs.CodeOf(err) != errs.InvalidArgument {
				t.Fatalf("%s %q: %v, want InvalidArgument", name, body, err)
			}
			return
		}
		if !utf8.Valid(body) {
			t.Fatalf("%s: accepted invalid UTF-8 %q", name, body)
		}
		if dup := repeatedKey(body); dup != "" {
			t.Fatalf("%s: accepted a repeated key %q in %q", name, dup, body)
		}
		enc, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: accepted %q but can't encode it: %v", name, body, err)
		}
		v2 := requestTypes[name]()
		if err := decode(enc, v2); err != nil {
			t.Fatalf("%s: %q decoded from %q is refused: %v", name, enc, body, err)
		}
		if enc2, _ := json.Marshal(v2); !bytes.Equal(enc, enc2) {
			t.Fatalf("%s: no round trip: %q -> %q -> %q", name, body, enc, enc2)
		}
		if reflect.TypeOf(v) != reflect.TypeOf(v2) {
			t.Fatal("type changed")
		}
	})
}

func indexOf(names []string, name string) int {
	for i, n := range names {
		if n == name {
			return i
		}
	}
	return 0
}

// repeatedKey finds a key repeated within one object, at any depth, with
// encoding/json's tokenizer (independent of the decoder under test).
func repeatedKey(body []byte) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	type frame struct {
		obj  bool
		key  bool // the next string token is a key
		seen map[string]bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF || err != nil {
			return ""
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.key {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			k := tok.(string)
			if top.seen[k] {
				return k
			}
			top.seen[k] = true
			top.key = false
			continue
		}
		if top != nil && top.obj {
			top.key = true // this token is the value
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, key: true, seen: map[string]bool{}})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}

package api

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
)

// TestStrictJSONRefuses: every looseness encoding/json allows is
// InvalidArgument (SPEC §6 "JSON"), and no message quotes a value.
func TestStrictJSONRefuses(t *testing.T) {
	cases := []struct {
		name string
		into any
		body string
	}{
		// Duplicate keys, at every depth and however spelled.
		{"duplicate top-level key", &apitypes.GetSecretValueRequest{}, `{"path":"/a/b","path":"/a/c"}`},
		{"duplicate key spelled with an escape", &apitypes.GetSecretValueRequest{}, `{"path":"/a/b","p\u0061th":"/a/c"}`},
		{"duplicate embedded field", &apitypes.GetSecretValueRequest{}, `{"path":"/a/b","consistency":"stale","consistency":"leader"}`},
		{"duplicate key in labels", &apitypes.CreateSecretRequest{}, `{"path":"/a/b","labels":{"team":"x","team":"y"}}`},
		{"duplicate key in access_policy", &apitypes.UpdateSecretRequest{}, `{"path":"/a/b","access_policy":{"source_cidrs":["10.0.0.0/8"],"source_cidrs":["0.0.0.0/0"]}}`},
		{"duplicate key in a time window", &apitypes.UpdateSecretRequest{}, `{"path":"/a/b","access_policy":{"time_windows":[{"start":"09:00","end":"18:00","end":"23:59"}]}}`},
		{"duplicate key in a policy rule", &apitypes.PutPolicyRequest{}, `{"name":"p","rules":[{"effect":"deny","effect":"allow","actions":["*"],"paths":["*"]}]}`},
		{"duplicate key in rule conditions", &apitypes.PutPolicyRequest{}, `{"name":"p","rules":[{"effect":"allow","actions":["*"],"paths":["*"],"conditions":{"source_cidrs":[],"source_cidrs":["0.0.0.0/0"]}}]}`},
		{"duplicate key among 20 labels", &apitypes.CreateSecretRequest{}, `{"path":"/a/b","labels":` + strings.TrimSuffix(labelsJSON(20), "}") + `,"k3":"again"}}`},
		// Wrong JSON types.
		{"value as array of numbers", &apitypes.PutSecretValueRequest{}, `{"path":"/a/b","value":[1,2]}`},
		{"value as empty array", &apitypes.CreateSecretRequest{}, `{"path":"/a/b","value":[]}`},
		{"path null", &apitypes.GetSecretValueRequest{}, `{"path":null}`},
		{"version null", &apitypes.GetSecretValueRequest{}, `{"path":"/a/b","version":null}`},
		{"recursive as number", &apitypes.ListSecretsRequest{}, `{"prefix":"/","recursive":1}`},
		{"version as float", &apitypes.GetSecretValueRequest{}, `{"path":"/a/b","version":1e0}`},
		{"version negative", &apitypes.GetSecretValueRequest{}, `{"path":"/a/b","version":-1}`},
		{"version too big", &apitypes.GetSecretValueRequest{}, `{"path":"/a/b","version":18446744073709551616}`},
		{"label value as number", &apitypes.CreateSecretRequest{}, `{"path":"/a/b","labels":{"a":1}}`},
		{"since as number", &apitypes.QueryAuditRequest{}, `{"since":5}`},
		{"body as array", &apitypes.GetSecretValueRequest{}, `[{"path":"/a/b"}]`},
		{"body as string", &apitypes.GetSecretValueRequest{}, `"x"`},
		// Base64 that is not canonical standard base64 with padding.
		{"base64 with CRLF", &apitypes.PutSecretValueRequest{}, "{\"path\":\"/a/b\",\"value\":\"c2Vj\\r\\ncmV0\"}"},
		{"base64 with LF", &apitypes.PutSecretValueRequest{}, "{\"path\":\"/a/b\",\"value\":\"c2Vj\\ncmV0\"}"},
		{"base64 with a space", &apitypes.PutSecretValueRequest{}, `{"path":"/a/b","value":"c2Vj cmV0"}`},
		{"base64 unpadded", &apitypes.PutSecretValueRequest{}, `{"path":"/a/b","value":"dg"}`},
		{"base64 URL alphabet", &apitypes.PutSecretValueRequest{}, `{"path":"/a/b","value":"-_-_"}`},
		{"base64 non-canonical bits", &apitypes.PutSecretValueRequest{}, `{"path":"/a/b","value":"dh=="}`},
		{"base64 padding inside", &apitypes.PutSecretValueRequest{}, `{"path":"/a/b","value":"dg==dg=="}`},
		// Invalid UTF-8 and lone surrogates, in values and in keys.
		{"invalid UTF-8 in path", &apitypes.GetSecretValueRequest{}, "{\"path\":\"/a/\xff\"}"},
		{"truncated UTF-8 in description", &apitypes.CreateSecretRequest{}, "{\"path\":\"/a/b\",\"description\":\"caf\xc3\"}"},
		{"UTF-8 encoded surrogate", &apitypes.CreateSecretRequest{}, "{\"path\":\"/a/b\",\"description\":\"\xed\xa0\x80\"}"},
		{"invalid UTF-8 in a label key", &apitypes.CreateSecretRequest{}, "{\"path\":\"/a/b\",\"labels\":{\"\xfe\":\"v\"}}"},
		{"lone high surrogate escape", &apitypes.CreateSecretRequest{}, `{"path":"/a/b","description":"\ud800"}`},
		{"lone low surrogate escape", &apitypes.CreateSecretRequest{}, `{"path":"/a/b","description":"\udc00x"}`},
		{"high surrogate then non-surrogate", &apitypes.CreateSecretRequest{}, `{"path":"/a/b","description":"\ud800\u0041"}`},
		// Field names.
		{"key in another case", &apitypes.GetSecretValueRequest{}, `{"PATH":"/a/b"}`},
		{"key folding to a field (long s)", &apitypes.GetSecretValueRequest{}, `{"path":"/a/b","con\u017fistency":"leader"}`},
		{"unknown nested key", &apitypes.PutPolicyRequest{}, `{"name":"p","rules":[{"effect":"allow","actions":["*"],"paths":["*"],"when":{}}]}`},
		// Explicit zero where absence means a default.
		{"queryAudit limit 0", &apitypes.QueryAuditRequest{}, `{"limit":0}`},
		// Syntax.
		{"trailing comma", &apitypes.GetSecretValueRequest{}, `{"path":"/a/b",}`},
		{"deep nesting", &apitypes.PutPolicyRequest{}, `{"name":"p","rules":[{"conditions":{"time_windows":[` + strings.Repeat("[", 40) + `]}}]}`},
		{"control character in a string", &apitypes.GetSecretValueRequest{}, "{\"path\":\"/a/\x01\"}"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := decode([]byte(c.body), c.into)
			if errs.CodeOf(err) != errs.InvalidArgument {
				t.Fatalf("decode(%q) = %v, want InvalidArgument", c.body, err)
			}
			msg := errs.As(err).Message
			for _, v := range []string{"/a/c", "0.0.0.0/0", "c2Vj", "caf", "again", "23:59"} {
				if strings.Contains(c.body, v) && strings.Contains(msg, v) {
					t.Fatalf("message %q quotes the value %q", msg, v)
				}
			}
		})
	}
}

// TestStrictJSONAccepts: what is well-formed and of the right types still
// decodes exactly as encoding/json decodes it.
func TestStrictJSONAccepts(t *testing.T) {
	var put apitypes.PutSecretValueRequest
	// "\/" is a valid JSON spelling of "/", also inside base64.
	if err := decode([]byte(`{"path":"/a/b","value":"a\/8=","expected_version":2}`), &put); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(put.Value, []byte{0x6b, 0xff}) || put.Path != "/a/b" || put.ExpectedVersion == nil || *put.ExpectedVersion != 2 {
		t.Fatalf("decoded %+v", put)
	}
	var cr apitypes.CreateSecretRequest
	body := `{"path":"/a/b","description":"caf\u00e9 \ud83d\ude00 ✓","labels":{"a":"1","b":"2"},"access_policy":null,"value":null}`
	if err := decode([]byte(body), &cr); err != nil {
		t.Fatal(err)
	}
	if cr.Description != "café 😀 ✓" || cr.Labels["b"] != "2" || cr.AccessPolicy != nil || cr.Value != nil {
		t.Fatalf("decoded %+v", cr)
	}
	for _, b := range []string{``, `  `, `{}`, `null`, ` { } `} {
		var g apitypes.WhoamiRequest
		if err := decode([]byte(b), &g); err != nil {
			t.Fatalf("%q: %v", b, err)
		}
	}
	var q apitypes.QueryAuditRequest
	if err := decode([]byte(`{"limit":5,"since":"2026-01-02T03:04:05Z","actions":["secrets.get_value"]}`), &q); err != nil || q.Limit != 5 || q.Since == nil {
		t.Fatalf("%+v %v", q, err)
	}
	var u apitypes.UpdateSecretRequest
	if err := decode([]byte(`{"path":"/a/b","labels":{},"description":""}`), &u); err != nil || u.Labels == nil || u.Description == nil {
		t.Fatalf("%+v %v", u, err)
	}
}

// TestValidStdBase64 against the decoder's own strict mode.
func TestValidStdBase64(t *testing.T) {
	for _, s := range []string{"", "dg==", "dmE=", "dmFs", "a/8=", "++//", "AA==", "AAA=", "QUJD"} {
		if !validStdBase64([]byte(s)) {
			t.Errorf("%q refused", s)
		}
	}
	for _, s := range []string{"d", "dg", "dg=", "dh==", "dmF=", "=AAA", "A=AA", "AA=A", "dg==\n", " dg=", "dg-_", "AB==", "AAB="} {
		if validStdBase64([]byte(s)) {
			t.Errorf("%q accepted", s)
		}
	}
}

// TestRequestTypesCovered: the fuzz table names the request type of every
// route, so FuzzRequestDecoder covers every action's decoder.
func TestRequestTypesCovered(t *testing.T) {
	for name := range (&Server{}).routes() {
		if _, ok := requestTypes[name]; !ok {
			t.Errorf("action %s has no entry in requestTypes (fuzz_test.go)", name)
		}
	}
	for name, mk := range requestTypes {
		if k := reflect.TypeOf(mk()).Kind(); k != reflect.Pointer {
			t.Errorf("%s: request type must be a pointer, is %v", name, k)
		}
	}
}

package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

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

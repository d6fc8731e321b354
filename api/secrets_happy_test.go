package api

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
)

var secretMetaFields = []string{"path", "uid", "kms_key", "description", "labels", "created_at", "created_by", "updated_at", "current_version"}

func isHexUID(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 16 && strings.ToLower(s) == s
}

func (ds *devServer) accessor(t testing.TB) string {
	t.Helper()
	var w apitypes.WhoamiResponse
	ds.call(t, "whoami", map[string]any{}, &w)
	if w.Accessor == "" || w.Name != "root" {
		t.Fatalf("whoami: %+v", w)
	}
	return w.Accessor
}

// jsonField returns one field of a JSON object answer.
func jsonField(t testing.TB, raw []byte, name string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	f, ok := m[name]
	if !ok {
		t.Fatalf("no field %q in %s", name, raw)
	}
	return f
}

func TestSecretLifecycle(t *testing.T) {
	ds := startDev(t)
	acc := ds.accessor(t)

	t.Run("createSecret with value", func(t *testing.T) {
		var r apitypes.CreateSecretResponse
		a := ds.call(t, "createSecret", map[string]any{"path": "/app/prod/db", "value": stdb64("hunter2"), "description": "db password", "labels": map[string]string{"team": "core", "env": "prod"}}, &r)
		wantJSONKeys(t, "createSecret answer", a.Body, "secret", "version", "index")
		wantJSONKeys(t, "createSecret secret", jsonField(t, a.Body, "secret"), secretMetaFields...)
		s := r.Secret
		if r.Version != 1 || r.Index == 0 || s.Path != "/app/prod/db" || !isHexUID(s.UID) || s.KMSKey != "default" ||
			s.Description != "db password" || !reflect.DeepEqual(s.Labels, map[string]string{"team": "core", "env": "prod"}) ||
			s.CreatedBy != acc || s.CurrentVersion != 1 || s.CreatedAt.IsZero() || !s.UpdatedAt.Equal(s.CreatedAt) || s.Versions != nil || s.AccessPolicy != nil {
			t.Fatalf("createSecret answer: %s", a.Body)
		}
		if time.Since(s.CreatedAt) > time.Minute || time.Until(s.CreatedAt) > time.Minute {
			t.Fatalf("created_at %v is not now", s.CreatedAt)
		}
		var g apitypes.GetSecretValueResponse
		ds.call(t, "getSecretValue", map[string]any{"path": "/app/prod/db"}, &g)
		if string(g.Value) != "hunter2" || g.Version != 1 || g.UID != s.UID {
			t.Fatalf("get after create: %+v", g)
		}
	})

	t.Run("createSecret without value", func(t *testing.T) {
		var r apitypes.CreateSecretResponse
		a := ds.call(t, "createSecret", map[string]any{"path": "/app/prod/empty"}, &r)
		wantJSONKeys(t, "createSecret answer", a.Body, "secret", "version", "index")
		wantJSONKeys(t, "createSecret secret", jsonField(t, a.Body, "secret"), secretMetaFields...)
		if r.Version != 0 || r.Secret.CurrentVersion != 0 || r.Secret.Description != "" || len(r.Secret.Labels) != 0 || !isHexUID(r.Secret.UID) {
			t.Fatalf("createSecret without value: %s", a.Body)
		}
		if string(jsonField(t, jsonField(t, a.Body, "secret"), "labels")) != "{}" {
			t.Fatalf("labels of a secret without labels should be {}: %s", a.Body)
		}
		ds.fail(t, "getSecretValue", map[string]any{"path": "/app/prod/empty"}, http.StatusNotFound, errs.NotFound)
		// A first version through putSecretValue with expected_version 0.
		var p apitypes.PutSecretValueResponse
		ds.call(t, "putSecretValue", map[string]any{"path": "/app/prod/empty", "value": stdb64("v1"), "expected_version": 0}, &p)
		if p.Version != 1 {
			t.Fatalf("first put: version %d", p.Version)
		}
	})

	t.Run("createSecret with access_policy", func(t *testing.T) {
		ap := map[string]any{"source_cidrs": []string{"127.0.0.0/8", "::1/128"}}
		var r apitypes.CreateSecretResponse
		a := ds.call(t, "createSecret", map[string]any{"path": "/app/ap", "access_policy": ap, "value": stdb64("x")}, &r)
		wantJSONKeys(t, "createSecret secret", jsonField(t, a.Body, "secret"), append(secretMetaFields, "access_policy")...)
		if r.Secret.AccessPolicy == nil || len(r.Secret.AccessPolicy.SourceCIDRs) != 2 {
			t.Fatalf("access policy not kept: %s", a.Body)
		}
		// The test client connects from loopback: allowed.
		ds.call(t, "getSecretValue", map[string]any{"path": "/app/ap"}, nil)
	})

	t.Run("describeSecret with versions", func(t *testing.T) {
		ds.call(t, "createSecret", map[string]any{"path": "/d/s", "value": stdb64("abc")}, nil)
		ds.call(t, "putSecretValue", map[string]any{"path": "/d/s", "value": stdb64("defgh")}, nil)
		ds.call(t, "generateSecret", map[string]any{"path": "/d/s", "length": 10, "charset": "hex"}, nil)
		ds.call(t, "destroySecretVersion", map[string]any{"path": "/d/s", "version": 2}, nil)
		var d apitypes.DescribeSecretResponse
		a := ds.call(t, "describeSecret", map[string]any{"path": "/d/s"}, &d)
		wantJSONKeys(t, "describeSecret answer", a.Body, "secret", "index")
		sec := jsonField(t, a.Body, "secret")
		wantJSONKeys(t, "describeSecret secret", sec, append(secretMetaFields, "versions")...)
		var vs []json.RawMessage
		if err := json.Unmarshal(jsonField(t, sec, "versions"), &vs); err != nil || len(vs) != 3 {
			t.Fatalf("versions: %s", sec)
		}
		for _, v := range vs {
			wantJSONKeys(t, "version", v, "version", "state", "created_at", "created_by", "origin", "size", "kms_key", "kms_key_version")
		}
		want := []struct {
			n      uint64
			state  string
			origin string
			size   int
		}{{1, "enabled", "put", 3}, {2, "destroyed", "put", 5}, {3, "enabled", "generate", 10}}
		for i, w := range want {
			v := d.Secret.Versions[i]
			if v.Version != w.n || v.State != w.state || v.Origin != w.origin || v.Size != w.size || v.KMSKey != "default" || v.KMSKeyVersion != 1 || v.CreatedBy != acc || v.CreatedAt.IsZero() {
				t.Fatalf("version %d: %+v, want %+v", i+1, v, w)
			}
		}
		if d.Secret.CurrentVersion != 3 || d.Index == 0 {
			t.Fatalf("describe: %s", a.Body)
		}
		if !d.Secret.Versions[0].CreatedAt.Equal(d.Secret.CreatedAt) {
			t.Fatalf("version 1 created_at %v != secret created_at %v", d.Secret.Versions[0].CreatedAt, d.Secret.CreatedAt)
		}
	})

	t.Run("describeSecret without versions", func(t *testing.T) {
		// SPEC §2: describeSecret answers `secret` with `versions`; a secret
		// without versions should say so with an empty list.
		ds.call(t, "createSecret", map[string]any{"path": "/d/none"}, nil)
		a := ds.call(t, "describeSecret", map[string]any{"path": "/d/none"}, nil)
		if got := string(jsonField(t, jsonField(t, a.Body, "secret"), "versions")); got != "[]" {
			t.Fatalf("versions of a secret without versions = %s, want []", got)
		}
	})

	t.Run("getSecretValue by version", func(t *testing.T) {
		var c apitypes.CreateSecretResponse
		ds.call(t, "createSecret", map[string]any{"path": "/g/s", "value": stdb64("one")}, &c)
		ds.call(t, "putSecretValue", map[string]any{"path": "/g/s", "value": stdb64("two")}, nil)
		for _, tc := range []struct {
			body map[string]any
			v    uint64
			want string
		}{
			{map[string]any{"path": "/g/s"}, 2, "two"},
			{map[string]any{"path": "/g/s", "version": 1}, 1, "one"},
			{map[string]any{"path": "/g/s", "version": 2, "consistency": "leader"}, 2, "two"},
			{map[string]any{"path": "/g/s", "consistency": "stale", "min_index": 1}, 2, "two"},
		} {
			var g apitypes.GetSecretValueResponse
			a := ds.call(t, "getSecretValue", tc.body, &g)
			wantJSONKeys(t, "getSecretValue answer", a.Body, "path", "uid", "version", "value", "created_at", "index")
			if g.Path != "/g/s" || g.UID != c.Secret.UID || g.Version != tc.v || string(g.Value) != tc.want || g.CreatedAt.IsZero() || g.Index == 0 {
				t.Fatalf("get %v: %s", tc.body, a.Body)
			}
			if got := string(jsonField(t, a.Body, "value")); got != jsonQuote(stdb64(tc.want)) {
				t.Fatalf("value travels as %s, want standard padded base64 %s", got, jsonQuote(stdb64(tc.want)))
			}
		}
	})

	t.Run("batchGetSecretValue", func(t *testing.T) {
		ds.call(t, "createSecret", map[string]any{"path": "/b/x", "value": stdb64("xv")}, nil)
		ds.call(t, "createSecret", map[string]any{"path": "/b/y", "value": stdb64("yv")}, nil)
		ds.call(t, "createSecret", map[string]any{"path": "/b/novalue"}, nil)
		ds.call(t, "createSecret", map[string]any{"path": "/b/gone", "value": stdb64("g")}, nil)
		ds.call(t, "destroySecretVersion", map[string]any{"path": "/b/gone", "version": 1}, nil)
		var r apitypes.BatchGetSecretValueResponse
		a := ds.call(t, "batchGetSecretValue", map[string]any{"paths": []string{"/b/y", "/b/missing", "/b/x", "/b/novalue", "/b/gone"}}, &r)
		wantJSONKeys(t, "batch answer", a.Body, "values", "errors", "index")
		if len(r.Values) != 2 || r.Values[0].Path != "/b/y" || string(r.Values[0].Value) != "yv" || r.Values[1].Path != "/b/x" || string(r.Values[1].Value) != "xv" || r.Values[0].Version != 1 {
			t.Fatalf("batch values: %s", a.Body)
		}
		var vals []json.RawMessage
		json.Unmarshal(jsonField(t, a.Body, "values"), &vals)
		wantJSONKeys(t, "batch value", vals[0], "path", "uid", "version", "value", "created_at")
		if len(r.Errors) != 3 || r.Errors["/b/missing"].Code != "NotFound" || r.Errors["/b/novalue"].Code != "NotFound" || r.Errors["/b/gone"].Code != "NotFound" {
			t.Fatalf("batch errors: %s", a.Body)
		}
		for p, e := range r.Errors {
			if e.Message == "" {
				t.Fatalf("empty message for %s", p)
			}
		}
		// All found: errors is an empty object.
		a = ds.call(t, "batchGetSecretValue", map[string]any{"paths": []string{"/b/x"}}, nil)
		if got := string(jsonField(t, a.Body, "errors")); got != "{}" {
			t.Fatalf("errors = %s, want {}", got)
		}
		// 100 paths is the maximum and is accepted.
		ps := make([]string, 100)
		for i := range ps {
			ps[i] = "/b/many/" + strings.Repeat("m", i+1)
		}
		var r100 apitypes.BatchGetSecretValueResponse
		ds.call(t, "batchGetSecretValue", map[string]any{"paths": ps}, &r100)
		if len(r100.Values) != 0 || len(r100.Errors) != 100 {
			t.Fatalf("100 missing paths: %d values, %d errors", len(r100.Values), len(r100.Errors))
		}
	})

	t.Run("putSecretValue check-and-set", func(t *testing.T) {
		ds.call(t, "createSecret", map[string]any{"path": "/c/s", "value": stdb64("1")}, nil)
		var p apitypes.PutSecretValueResponse
		a := ds.call(t, "putSecretValue", map[string]any{"path": "/c/s", "value": stdb64("2"), "expected_version": 1}, &p)
		wantJSONKeys(t, "put answer", a.Body, "version", "index")
		if p.Version != 2 || p.Index == 0 {
			t.Fatalf("put: %s", a.Body)
		}
		ds.fail(t, "putSecretValue", map[string]any{"path": "/c/s", "value": stdb64("3"), "expected_version": 1}, http.StatusPreconditionFailed, errs.VersionMismatch)
		ds.fail(t, "putSecretValue", map[string]any{"path": "/c/s", "value": stdb64("3"), "expected_version": 0}, http.StatusPreconditionFailed, errs.VersionMismatch)
		var g apitypes.GetSecretValueResponse
		ds.call(t, "getSecretValue", map[string]any{"path": "/c/s"}, &g)
		if g.Version != 2 || string(g.Value) != "2" {
			t.Fatalf("a refused put changed the value: %+v", g)
		}
		ds.call(t, "putSecretValue", map[string]any{"path": "/c/s", "value": stdb64("3")}, &p)
		if p.Version != 3 {
			t.Fatalf("unconditional put: version %d", p.Version)
		}
		// CAS is on current_version: after destroying 3, current is 2.
		ds.call(t, "destroySecretVersion", map[string]any{"path": "/c/s", "version": 3}, nil)
		ds.fail(t, "putSecretValue", map[string]any{"path": "/c/s", "value": stdb64("4"), "expected_version": 3}, http.StatusPreconditionFailed, errs.VersionMismatch)
		ds.call(t, "putSecretValue", map[string]any{"path": "/c/s", "value": stdb64("4"), "expected_version": 2}, &p)
		if p.Version != 4 {
			t.Fatalf("version numbers must not be reused: got %d, want 4", p.Version)
		}
	})

	t.Run("generateSecret charsets", func(t *testing.T) {
		ds.call(t, "createSecret", map[string]any{"path": "/gen/s"}, nil)
		const upper, lower, digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz", "0123456789"
		const syms = "!#$%&()*+,-./:;<=>?@[]^_{|}~"
		cases := []struct {
			body     map[string]any
			length   int
			alphabet string // "" = any byte
			classes  []string
		}{
			{map[string]any{}, 32, "", nil},
			{map[string]any{"charset": "bytes", "length": 1}, 1, "", nil},
			{map[string]any{"charset": "bytes", "length": 4096}, 4096, "", nil},
			{map[string]any{"charset": "alphanumeric", "length": 200}, 200, upper + lower + digits, nil},
			{map[string]any{"charset": "alphanumeric"}, 32, upper + lower + digits, nil},
			{map[string]any{"charset": "password", "length": 64}, 64, upper + lower + digits + syms, []string{upper, lower, digits, syms}},
			{map[string]any{"charset": "password", "length": 4}, 4, upper + lower + digits + syms, []string{upper, lower, digits, syms}},
			{map[string]any{"charset": "password", "length": 3}, 3, upper + lower + digits + syms, nil},
			{map[string]any{"charset": "hex", "length": 33}, 33, "0123456789abcdef", nil},
			{map[string]any{"charset": "hex", "length": 1}, 1, "0123456789abcdef", nil},
			{map[string]any{"charset": "hex", "length": 4096}, 4096, "0123456789abcdef", nil},
		}
		var prev []byte
		for i, c := range cases {
			body := map[string]any{"path": "/gen/s"}
			for k, v := range c.body {
				body[k] = v
			}
			var r apitypes.GenerateSecretResponse
			a := ds.call(t, "generateSecret", body, &r)
			wantJSONKeys(t, "generate answer", a.Body, "version", "index")
			if r.Version != uint64(i+1) || r.Index == 0 {
				t.Fatalf("generate %v: %s", c.body, a.Body)
			}
			var g apitypes.GetSecretValueResponse
			ds.call(t, "getSecretValue", map[string]any{"path": "/gen/s", "version": r.Version}, &g)
			if len(g.Value) != c.length {
				t.Fatalf("generate %v: length %d, want %d", c.body, len(g.Value), c.length)
			}
			if c.alphabet != "" {
				for _, ch := range g.Value {
					if !strings.ContainsRune(c.alphabet, rune(ch)) {
						t.Fatalf("generate %v: %q is outside the charset", c.body, ch)
					}
				}
			}
			for _, cl := range c.classes {
				if !bytes.ContainsAny(g.Value, cl) {
					t.Fatalf("generate %v: no character of class %q in the value", c.body, cl)
				}
			}
			if c.length >= 32 && bytes.Equal(g.Value, prev) {
				t.Fatalf("generate returned the same value twice")
			}
			prev = g.Value
		}
		var d apitypes.DescribeSecretResponse
		ds.call(t, "describeSecret", map[string]any{"path": "/gen/s"}, &d)
		for _, v := range d.Secret.Versions {
			if v.Origin != "generate" {
				t.Fatalf("version %d origin %q, want generate", v.Version, v.Origin)
			}
		}
		if d.Secret.Versions[2].Size != 4096 {
			t.Fatalf("size of a 4096-byte generated value: %d", d.Secret.Versions[2].Size)
		}
	})

	t.Run("generateSecret create", func(t *testing.T) {
		ds.fail(t, "generateSecret", map[string]any{"path": "/gen/new"}, http.StatusNotFound, errs.NotFound)
		ds.fail(t, "describeSecret", map[string]any{"path": "/gen/new"}, http.StatusNotFound, errs.NotFound)
		var r apitypes.GenerateSecretResponse
		ds.call(t, "generateSecret", map[string]any{"path": "/gen/new", "create": true, "charset": "alphanumeric", "length": 20}, &r)
		if r.Version != 1 {
			t.Fatalf("generate create: version %d", r.Version)
		}
		var d apitypes.DescribeSecretResponse
		ds.call(t, "describeSecret", map[string]any{"path": "/gen/new"}, &d)
		if d.Secret.CurrentVersion != 1 || d.Secret.KMSKey != "default" || d.Secret.Versions[0].Origin != "generate" || d.Secret.Versions[0].Size != 20 || d.Secret.CreatedBy != acc || !isHexUID(d.Secret.UID) {
			t.Fatalf("generated secret: %+v", d.Secret)
		}
		// create: true on an existing secret adds a version.
		ds.call(t, "generateSecret", map[string]any{"path": "/gen/new", "create": true}, &r)
		if r.Version != 2 {
			t.Fatalf("generate create on existing: version %d", r.Version)
		}
	})

	t.Run("updateSecret", func(t *testing.T) {
		var c apitypes.CreateSecretResponse
		ds.call(t, "createSecret", map[string]any{"path": "/u/s", "value": stdb64("v"), "description": "old", "labels": map[string]string{"a": "1"}}, &c)
		time.Sleep(2 * time.Millisecond)
		var u apitypes.UpdateSecretResponse
		a := ds.call(t, "updateSecret", map[string]any{"path": "/u/s", "description": "new"}, &u)
		wantJSONKeys(t, "update answer", a.Body, "secret", "index")
		wantJSONKeys(t, "update secret", jsonField(t, a.Body, "secret"), secretMetaFields...)
		if u.Secret.Description != "new" || !reflect.DeepEqual(u.Secret.Labels, map[string]string{"a": "1"}) || u.Secret.UID != c.Secret.UID ||
			!u.Secret.CreatedAt.Equal(c.Secret.CreatedAt) || !u.Secret.UpdatedAt.After(c.Secret.UpdatedAt) || u.Secret.CurrentVersion != 1 || u.Index == 0 {
			t.Fatalf("update description: %s", a.Body)
		}
		u = apitypes.UpdateSecretResponse{}
		ds.call(t, "updateSecret", map[string]any{"path": "/u/s", "labels": map[string]string{"b": "2", "c": "3"}}, &u)
		if u.Secret.Description != "new" || !reflect.DeepEqual(u.Secret.Labels, map[string]string{"b": "2", "c": "3"}) {
			t.Fatalf("update labels: %+v", u.Secret)
		}
		u = apitypes.UpdateSecretResponse{}
		ds.call(t, "updateSecret", map[string]any{"path": "/u/s", "access_policy": map[string]any{"source_cidrs": []string{"127.0.0.0/8"}}}, &u)
		if u.Secret.AccessPolicy == nil || u.Secret.AccessPolicy.SourceCIDRs[0] != "127.0.0.0/8" {
			t.Fatalf("update access policy: %+v", u.Secret)
		}
		u = apitypes.UpdateSecretResponse{}
		a = ds.call(t, "updateSecret", map[string]any{"path": "/u/s", "access_policy": map[string]any{}, "labels": map[string]string{}, "description": ""}, &u)
		if u.Secret.AccessPolicy != nil || len(u.Secret.Labels) != 0 || u.Secret.Description != "" {
			t.Fatalf("clearing metadata: %s", a.Body)
		}
		// The value is untouched by metadata updates.
		var g apitypes.GetSecretValueResponse
		ds.call(t, "getSecretValue", map[string]any{"path": "/u/s"}, &g)
		if string(g.Value) != "v" || g.Version != 1 {
			t.Fatalf("value after updates: %+v", g)
		}
	})

	t.Run("destroySecretVersion", func(t *testing.T) {
		ds.call(t, "createSecret", map[string]any{"path": "/x/s", "value": stdb64("one")}, nil)
		ds.call(t, "putSecretValue", map[string]any{"path": "/x/s", "value": stdb64("two")}, nil)
		var r apitypes.IndexResponse
		a := ds.call(t, "destroySecretVersion", map[string]any{"path": "/x/s", "version": 2}, &r)
		wantJSONKeys(t, "destroy answer", a.Body, "index")
		ds.fail(t, "getSecretValue", map[string]any{"path": "/x/s", "version": 2}, http.StatusGone, errs.Gone)
		var g apitypes.GetSecretValueResponse
		ds.call(t, "getSecretValue", map[string]any{"path": "/x/s"}, &g)
		if g.Version != 1 || string(g.Value) != "one" {
			t.Fatalf("current after destroying 2: %+v", g)
		}
		// Idempotent.
		ds.call(t, "destroySecretVersion", map[string]any{"path": "/x/s", "version": 2}, nil)
		ds.call(t, "destroySecretVersion", map[string]any{"path": "/x/s", "version": 1}, nil)
		ds.fail(t, "getSecretValue", map[string]any{"path": "/x/s", "version": 1}, http.StatusGone, errs.Gone)
		ds.fail(t, "getSecretValue", map[string]any{"path": "/x/s"}, http.StatusNotFound, errs.NotFound)
		var d apitypes.DescribeSecretResponse
		ds.call(t, "describeSecret", map[string]any{"path": "/x/s"}, &d)
		if d.Secret.CurrentVersion != 0 || len(d.Secret.Versions) != 2 || d.Secret.Versions[0].State != "destroyed" || d.Secret.Versions[1].State != "destroyed" || d.Secret.Versions[1].Size != 3 {
			t.Fatalf("describe after destroying all: %+v", d.Secret)
		}
		// New versions continue the numbering.
		var p apitypes.PutSecretValueResponse
		ds.call(t, "putSecretValue", map[string]any{"path": "/x/s", "value": stdb64("three")}, &p)
		if p.Version != 3 {
			t.Fatalf("put after destroy: version %d", p.Version)
		}
		// The node state holds no ciphertext for destroyed versions.
		sec, ok := ds.Node.State().Secret("/x/s")
		if !ok || sec.Versions[0].Ciphertext != nil || sec.Versions[0].WrappedDEK != nil || sec.Versions[1].Ciphertext != nil || sec.Versions[2].Ciphertext == nil {
			t.Fatalf("destroyed material still in state")
		}
	})

	t.Run("deleteSecret and create again", func(t *testing.T) {
		var c1 apitypes.CreateSecretResponse
		ds.call(t, "createSecret", map[string]any{"path": "/del/s", "value": stdb64("old"), "labels": map[string]string{"x": "y"}}, &c1)
		ds.call(t, "putSecretValue", map[string]any{"path": "/del/s", "value": stdb64("old2")}, nil)
		var r apitypes.IndexResponse
		a := ds.call(t, "deleteSecret", map[string]any{"path": "/del/s"}, &r)
		wantJSONKeys(t, "delete answer", a.Body, "index")
		ds.fail(t, "describeSecret", map[string]any{"path": "/del/s"}, http.StatusNotFound, errs.NotFound)
		ds.fail(t, "getSecretValue", map[string]any{"path": "/del/s", "version": 1}, http.StatusNotFound, errs.NotFound)
		ds.fail(t, "deleteSecret", map[string]any{"path": "/del/s"}, http.StatusNotFound, errs.NotFound)
		var c2 apitypes.CreateSecretResponse
		ds.call(t, "createSecret", map[string]any{"path": "/del/s", "value": stdb64("new")}, &c2)
		if c2.Secret.UID == c1.Secret.UID || !isHexUID(c2.Secret.UID) || c2.Version != 1 || len(c2.Secret.Labels) != 0 {
			t.Fatalf("re-created secret: uid %s (old %s), version %d, labels %v", c2.Secret.UID, c1.Secret.UID, c2.Version, c2.Secret.Labels)
		}
		var g apitypes.GetSecretValueResponse
		ds.call(t, "getSecretValue", map[string]any{"path": "/del/s"}, &g)
		if string(g.Value) != "new" || g.UID != c2.Secret.UID || g.Version != 1 {
			t.Fatalf("get after re-create: %+v", g)
		}
		ds.fail(t, "getSecretValue", map[string]any{"path": "/del/s", "version": 2}, http.StatusNotFound, errs.NotFound)
	})
}

func TestListSecrets(t *testing.T) {
	ds := startDev(t)
	paths := []string{"/l/a", "/l/b", "/l/c-d", "/l/c.d", "/l/c/e", "/l/dir1/x", "/l/dir1/y", "/l/dir1/sub/z", "/l/dir2", "/l/dir2/z", "/l/dir2-x/q", "/l/z", "/other/o"}
	for _, p := range paths {
		ds.call(t, "createSecret", map[string]any{"path": p}, nil)
	}
	list := func(body map[string]any) (apitypes.ListSecretsResponse, apiAnswer) {
		var r apitypes.ListSecretsResponse
		a := ds.call(t, "listSecrets", body, &r)
		wantJSONKeys(t, "list answer", a.Body, "secrets", "folders", "next_page_token", "index")
		return r, a
	}
	names := func(ss []apitypes.Secret) []string {
		out := []string{}
		for _, s := range ss {
			out = append(out, s.Path)
		}
		return out
	}

	r, a := list(map[string]any{"prefix": "/l/"})
	wantSecrets := []string{"/l/a", "/l/b", "/l/c-d", "/l/c.d", "/l/dir2", "/l/z"}
	wantFolders := []string{"/l/c/", "/l/dir1/", "/l/dir2-x/", "/l/dir2/"}
	if !reflect.DeepEqual(names(r.Secrets), wantSecrets) || !reflect.DeepEqual(r.Folders, wantFolders) || r.NextPageToken != "" || r.Index == 0 {
		t.Fatalf("list /l/: secrets %v folders %v next %q", names(r.Secrets), r.Folders, r.NextPageToken)
	}
	var secs []json.RawMessage
	json.Unmarshal(jsonField(t, a.Body, "secrets"), &secs)
	wantJSONKeys(t, "listed secret", secs[0], secretMetaFields...)

	r, _ = list(map[string]any{"prefix": "/"})
	if len(r.Secrets) != 0 || !reflect.DeepEqual(r.Folders, []string{"/l/", "/other/"}) {
		t.Fatalf("list /: %v %v", names(r.Secrets), r.Folders)
	}
	r, _ = list(map[string]any{})
	if !reflect.DeepEqual(r.Folders, []string{"/l/", "/other/"}) {
		t.Fatalf("list without prefix should list /: %v", r.Folders)
	}
	r, _ = list(map[string]any{"prefix": "/l/", "recursive": true})
	wantAll := []string{"/l/a", "/l/b", "/l/c-d", "/l/c.d", "/l/c/e", "/l/dir1/sub/z", "/l/dir1/x", "/l/dir1/y", "/l/dir2", "/l/dir2-x/q", "/l/dir2/z", "/l/z"}
	if !reflect.DeepEqual(names(r.Secrets), sortedByBytes(wantAll)) || len(r.Folders) != 0 {
		t.Fatalf("recursive: %v folders %v", names(r.Secrets), r.Folders)
	}
	r, _ = list(map[string]any{"prefix": "/l/dir2/"})
	if !reflect.DeepEqual(names(r.Secrets), []string{"/l/dir2/z"}) || len(r.Folders) != 0 {
		t.Fatalf("list /l/dir2/: %v %v", names(r.Secrets), r.Folders)
	}
	r, _ = list(map[string]any{"prefix": "/nothing/"})
	if len(r.Secrets) != 0 || len(r.Folders) != 0 || r.NextPageToken != "" {
		t.Fatalf("empty folder: %+v", r)
	}
	r, _ = list(map[string]any{"prefix": "/l/", "page_size": 1000})
	if len(r.Secrets)+len(r.Folders) != len(wantSecrets)+len(wantFolders) {
		t.Fatalf("page_size 1000: %+v", r)
	}

	// Pagination: every page size walks the same items exactly once.
	for _, rec := range []bool{false, true} {
		full, _ := list(map[string]any{"prefix": "/l/", "recursive": rec})
		wantItems := append(names(full.Secrets), full.Folders...)
		for size := 1; size <= len(wantItems)+1; size++ {
			var gotS []string
			var gotF []string
			token := ""
			for pages := 0; ; pages++ {
				if pages > len(wantItems)+2 {
					t.Fatalf("recursive=%v size %d: pagination does not end", rec, size)
				}
				pg, _ := list(map[string]any{"prefix": "/l/", "recursive": rec, "page_size": size, "page_token": token})
				if n := len(pg.Secrets) + len(pg.Folders); n > size || (n == 0 && pg.NextPageToken != "") {
					t.Fatalf("recursive=%v size %d: page of %d items, next %q", rec, size, n, pg.NextPageToken)
				}
				gotS = append(gotS, names(pg.Secrets)...)
				gotF = append(gotF, pg.Folders...)
				if pg.NextPageToken == "" {
					break
				}
				token = pg.NextPageToken
			}
			if !reflect.DeepEqual(gotS, names(full.Secrets)) || !reflect.DeepEqual(nilIfNoItems(gotF), nilIfNoItems(full.Folders)) {
				t.Fatalf("recursive=%v size %d: paged %v %v, want %v %v", rec, size, gotS, gotF, names(full.Secrets), full.Folders)
			}
		}
	}
}

func nilIfNoItems(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func sortedByBytes(s []string) []string {
	out := append([]string(nil), s...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func TestSysInitAndHealth(t *testing.T) {
	ds := startDev(t)
	// Init a second time (with or without a token) is AlreadyExists.
	a := ds.do(t, http.MethodPost, "/v1/sys/init", "", []byte(`{}`))
	e := a.wantError(t, http.StatusConflict, errs.AlreadyExists)
	if strings.Contains(string(a.Body), "cfr_") {
		t.Fatalf("second init leaks a token: %s", a.Body)
	}
	_ = e
	ds.do(t, http.MethodPost, "/v1/sys/init", ds.bearer(), []byte(``)).wantError(t, http.StatusConflict, errs.AlreadyExists)
	ds.do(t, http.MethodPost, "/v1/sys/init", "", []byte(`{"x":1}`)).wantError(t, http.StatusBadRequest, errs.InvalidArgument)
	// The root token still works and is the only token.
	var toks apitypes.ListTokensResponse
	ds.call(t, "listTokens", map[string]any{}, &toks)
	if len(toks.Tokens) != 1 || toks.Tokens[0].Name != "root" || !reflect.DeepEqual(toks.Tokens[0].Policies, []string{"admin"}) {
		t.Fatalf("tokens after second init: %+v", toks.Tokens)
	}

	for _, method := range []string{http.MethodGet, http.MethodHead} {
		a = ds.do(t, method, "/v1/sys/health", "", nil)
		if a.Status != http.StatusOK {
			t.Fatalf("%s health: %d %s", method, a.Status, a.Body)
		}
		if cc := a.Header.Get("Cache-Control"); cc != "no-store" {
			t.Fatalf("health Cache-Control %q", cc)
		}
	}
	a = ds.do(t, http.MethodGet, "/v1/sys/health", "", nil)
	a.checkCommon(t)
	var h map[string]any
	if err := json.Unmarshal(a.Body, &h); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"node_id", "role", "leader_id", "applied_index", "warnings"} {
		if _, ok := h[k]; !ok {
			t.Fatalf("health lacks %q: %s", k, a.Body)
		}
	}
	var hh apitypes.Health
	json.Unmarshal(a.Body, &hh)
	if hh.NodeID != "dev" || hh.Role != "leader" || hh.LeaderID != "dev" || hh.AppliedIndex == 0 || hh.Warnings == nil || len(hh.Warnings) != 0 {
		t.Fatalf("health: %s", a.Body)
	}
	if w, ok := h["warnings"].([]any); !ok || len(w) != 0 {
		t.Fatalf("warnings must be an empty list: %s", a.Body)
	}
}

// TestCacheControlEverywhere: every answer — success, error, health, unknown
// route — carries Cache-Control: no-store.
func TestCacheControlEverywhere(t *testing.T) {
	ds := startDev(t)
	ds.call(t, "createSecret", map[string]any{"path": "/cc/s", "value": stdb64("v")}, nil)
	reqs := []struct {
		method, path, authz, body string
	}{
		{"POST", "/v1/getSecretValue", ds.bearer(), `{"path":"/cc/s"}`},
		{"POST", "/v1/describeSecret", ds.bearer(), `{"path":"/cc/s"}`},
		{"POST", "/v1/listSecrets", ds.bearer(), `{}`},
		{"POST", "/v1/batchGetSecretValue", ds.bearer(), `{"paths":["/cc/s","/cc/none"]}`},
		{"POST", "/v1/putSecretValue", ds.bearer(), `{"path":"/cc/s","value":"` + stdb64("w") + `"}`},
		{"POST", "/v1/whoami", ds.bearer(), `{}`},
		{"POST", "/v1/getSecretValue", ds.bearer(), `{"path":"/cc/none"}`},
		{"POST", "/v1/getSecretValue", "", `{"path":"/cc/s"}`},
		{"POST", "/v1/getSecretValue", ds.bearer(), `{`},
		{"POST", "/v1/nope", ds.bearer(), `{}`},
		{"GET", "/v1/getSecretValue", ds.bearer(), ``},
		{"POST", "/v1/sys/init", "", `{}`},
		{"GET", "/v1/sys/health", "", ``},
		{"HEAD", "/v1/sys/health", "", ``},
		{"POST", "/v1/sys/health", "", ``},
		{"GET", "/", "", ``},
		{"GET", "/nope", "", ``},
		{"POST", "/v1/putSecretValue", ds.bearer(), `{"path":"/cc/s","value":"` + strings.Repeat("A", apitypes.MaxBodyBytes) + `"}`},
	}
	for _, r := range reqs {
		var body []byte
		if r.method == "POST" {
			body = []byte(r.body)
		}
		a := ds.do(t, r.method, r.path, r.authz, body)
		if cc := a.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%s %s -> %d: Cache-Control %q, want no-store", r.method, r.path, a.Status, cc)
		}
	}
}

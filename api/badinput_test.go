package api

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
)

// The sentinel is the secret value every bad request tries to smuggle in:
// no error message may echo it, raw or base64.
const sentinel = "secret-sentinel!"

var (
	sentinelB64 = stdb64(sentinel)           // c2VjcmV0LXNlbnRpbmVsIQ==
	sentinelRaw = "c2VjcmV0LXNlbnRpbmVs"     // a prefix of the base64, also the unpadded form's body
	urlAlphaB64 = "-_-_c2VjcmV0LXNlbnRpbmVs" // base64url of 0xfb 0xff 0xbf "secret-sentinel"
)

// Authorization modes of a bad-input case.
const (
	authRoot = ""  // Bearer <root token>
	authNone = "-" // no Authorization header
)

type badCase struct {
	name   string
	method string // default POST
	action string // POST /v1/<action>; a leading "/" is a literal URL path
	body   string
	authz  string // authRoot, authNone, or a literal header value
	status int
	code   errs.Code
	noEcho []string // extra strings the message must not contain
}

// bodyWithSentinel returns a createSecret-style body for path carrying the
// sentinel value, so every path case also checks the value is not echoed.
func bodyWithSentinel(path string) string {
	return fmt.Sprintf(`{"path":%s,"value":%q}`, jsonQuote(path), sentinelB64)
}

func repeatSegment(seg string, n int) string {
	return strings.Repeat("/"+seg, n)
}

func labelsJSON(n int) string {
	var sb strings.Builder
	sb.WriteString("{")
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `"k%d":"v"`, i)
	}
	sb.WriteString("}")
	return sb.String()
}

func pathsJSON(n int, dup bool) string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = fmt.Sprintf("/t/p%d", i)
	}
	if dup && n > 1 {
		ps[n-1] = ps[0]
	}
	b, _ := json.Marshal(map[string]any{"paths": ps})
	return string(b)
}

func patternValueB64(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// badCases is the table of bad inputs; it also seeds FuzzActionBody.
func badCases() []badCase {
	const bad = http.StatusBadRequest
	ia := errs.InvalidArgument
	// A valid-looking token (right shape) that was never issued.
	unknownToken := "cfr_" + strings.Repeat("AbCd", 10) + "xyz"
	// Paths at and past the limits.
	seg129 := "/" + strings.Repeat("x", 129)
	path513 := repeatSegment(strings.Repeat("p", 56), 9) // 9 * 57 = 513 bytes
	path17 := repeatSegment("s", 17)

	cs := []badCase{
		// Body syntax.
		{name: "malformed JSON", action: "createSecret", body: `{"path": "/t/new", "value": ` + sentinelB64 + `}`, status: bad, code: ia},
		{name: "malformed JSON single quotes", action: "putSecretValue", body: `{'path': '/t/a', 'value': '` + sentinelB64 + `'}`, status: bad, code: ia},
		{name: "truncated JSON", action: "createSecret", body: `{"path":"/t/new","value":"` + sentinelB64, status: bad, code: ia},
		{name: "truncated JSON after key", action: "putSecretValue", body: `{"path":"/t/a","value":`, status: bad, code: ia},
		{name: "truncated JSON open brace", action: "describeSecret", body: `{`, status: bad, code: ia},
		{name: "JSON array", action: "createSecret", body: `[` + bodyWithSentinel("/t/new") + `]`, status: bad, code: ia},
		{name: "JSON string", action: "createSecret", body: jsonQuote(sentinel), status: bad, code: ia},
		{name: "JSON number", action: "putSecretValue", body: `42`, status: bad, code: ia},
		{name: "JSON true", action: "describeSecret", body: `true`, status: bad, code: ia},
		{name: "trailing object", action: "createSecret", body: bodyWithSentinel("/t/new") + ` {"path":"/t/new2"}`, status: bad, code: ia},
		{name: "trailing garbage", action: "putSecretValue", body: `{"path":"/t/a","value":"` + sentinelB64 + `"}garbage`, status: bad, code: ia},
		{name: "trailing bracket", action: "putSecretValue", body: `{"path":"/t/a","value":"` + sentinelB64 + `"}]`, status: bad, code: ia},
		{name: "unknown field", action: "createSecret", body: `{"path":"/t/new","value":"` + sentinelB64 + `","bogus":1}`, status: bad, code: ia},
		{name: "unknown field on put", action: "putSecretValue", body: `{"path":"/t/a","value":"` + sentinelB64 + `","expected":1}`, status: bad, code: ia},
		{name: "unknown field on read", action: "getSecretValue", body: `{"path":"/t/a","verison":1}`, status: bad, code: ia},
		// encoding/json matches field names case-insensitively: "DESCRIPTION"
		// is not a field of the API and must be refused like any unknown one.
		{name: "field name in wrong case", action: "updateSecret", body: `{"path":"/t/a","DESCRIPTION":"changed"}`, status: bad, code: ia},
		{name: "unknown nested field", action: "createSecret", body: `{"path":"/t/new","access_policy":{"cidrs":["10.0.0.0/8"]}}`, status: bad, code: ia},

		// Wrong types.
		{name: "path as number", action: "createSecret", body: `{"path":5,"value":"` + sentinelB64 + `"}`, status: bad, code: ia},
		{name: "path as array", action: "describeSecret", body: `{"path":["/t/a"]}`, status: bad, code: ia},
		{name: "value as number", action: "putSecretValue", body: `{"path":"/t/a","value":12345}`, status: bad, code: ia},
		{name: "value as object", action: "createSecret", body: `{"path":"/t/new","value":{"v":"` + sentinelB64 + `"}}`, status: bad, code: ia},
		{name: "version as string", action: "getSecretValue", body: `{"path":"/t/a","version":"1"}`, status: bad, code: ia},
		{name: "version negative", action: "getSecretValue", body: `{"path":"/t/a","version":-1}`, status: bad, code: ia},
		{name: "version fractional", action: "destroySecretVersion", body: `{"path":"/t/a","version":1.5}`, status: bad, code: ia},
		{name: "expected_version as string", action: "putSecretValue", body: `{"path":"/t/a","value":"` + sentinelB64 + `","expected_version":"2"}`, status: bad, code: ia},
		{name: "labels as array", action: "createSecret", body: `{"path":"/t/new","labels":["a","b"],"value":"` + sentinelB64 + `"}`, status: bad, code: ia},
		{name: "labels value as number", action: "updateSecret", body: `{"path":"/t/a","labels":{"a":1}}`, status: bad, code: ia},
		{name: "recursive as string", action: "listSecrets", body: `{"prefix":"/","recursive":"yes"}`, status: bad, code: ia},
		{name: "create as string", action: "generateSecret", body: `{"path":"/t/new","create":"true"}`, status: bad, code: ia},
		{name: "paths as string", action: "batchGetSecretValue", body: `{"paths":"/t/a"}`, status: bad, code: ia},

		// Loose JSON (SPEC §6 "JSON"; issue 14 finding 10).
		{name: "duplicate key (last would win)", action: "createSecret", body: `{"path":"/t/new","path":"/t/new2","value":"` + sentinelB64 + `"}`, status: bad, code: ia, noEcho: []string{"/t/new2"}},
		{name: "duplicate nested key", action: "updateSecret", body: `{"path":"/t/a","access_policy":{"source_cidrs":["10.0.0.0/8"],"source_cidrs":["0.0.0.0/0"]}}`, status: bad, code: ia, noEcho: []string{"0.0.0.0/0"}},
		{name: "duplicate label key", action: "updateSecret", body: `{"path":"/t/a","labels":{"team":"a","team":"b"}}`, status: bad, code: ia},
		{name: "value as array of numbers", action: "putSecretValue", body: `{"path":"/t/a","value":[1,2]}`, status: bad, code: ia},
		{name: "path null", action: "describeSecret", body: `{"path":null}`, status: bad, code: ia},
		{name: "base64 with CRLF", action: "putSecretValue", body: `{"path":"/t/a","value":"` + sentinelB64[:8] + `\r\n` + sentinelB64[8:] + `"}`, status: bad, code: ia},
		{name: "base64 non-canonical", action: "putSecretValue", body: `{"path":"/t/a","value":"dh=="}`, status: bad, code: ia},
		{name: "invalid UTF-8 in description", action: "updateSecret", body: "{\"path\":\"/t/a\",\"description\":\"caf\xe9\"}", status: bad, code: ia},
		{name: "lone surrogate in description", action: "updateSecret", body: `{"path":"/t/a","description":"\ud800"}`, status: bad, code: ia},
		{name: "queryAudit limit 0", action: "queryAudit", body: `{"limit":0}`, status: bad, code: ia},
		{name: "no token and malformed body", action: "createSecret", body: `{"path":`, authz: authNone, status: http.StatusUnauthorized, code: errs.Unauthenticated},

		// Bad base64.
		{name: "base64 unpadded", action: "createSecret", body: `{"path":"/t/new","value":"` + strings.TrimRight(sentinelB64, "=") + `"}`, status: bad, code: ia},
		{name: "base64 unpadded put", action: "putSecretValue", body: `{"path":"/t/a","value":"` + strings.TrimRight(sentinelB64, "=") + `"}`, status: bad, code: ia},
		{name: "base64 URL alphabet", action: "putSecretValue", body: `{"path":"/t/a","value":"` + urlAlphaB64 + `"}`, status: bad, code: ia, noEcho: []string{urlAlphaB64}},
		{name: "base64 garbage", action: "createSecret", body: `{"path":"/t/new","value":"!!secret-sentinel!!"}`, status: bad, code: ia},
		{name: "base64 with spaces", action: "putSecretValue", body: `{"path":"/t/a","value":"c2Vj cmV0"}`, status: bad, code: ia},

		// Bad paths.
		{name: "path empty", action: "createSecret", body: bodyWithSentinel(""), status: bad, code: ia},
		{name: "path missing", action: "putSecretValue", body: `{"value":"` + sentinelB64 + `"}`, status: bad, code: ia},
		{name: "path no leading slash", action: "createSecret", body: bodyWithSentinel("t/new"), status: bad, code: ia},
		{name: "path trailing slash", action: "createSecret", body: bodyWithSentinel("/t/new/"), status: bad, code: ia},
		{name: "path root only", action: "createSecret", body: bodyWithSentinel("/"), status: bad, code: ia},
		{name: "path double slash", action: "createSecret", body: bodyWithSentinel("/t//new"), status: bad, code: ia},
		{name: "path dot", action: "createSecret", body: bodyWithSentinel("/t/."), status: bad, code: ia},
		{name: "path dotdot", action: "createSecret", body: bodyWithSentinel("/t/../a"), status: bad, code: ia},
		{name: "path 17 segments", action: "createSecret", body: bodyWithSentinel(path17), status: bad, code: ia},
		{name: "path 129-byte segment", action: "createSecret", body: bodyWithSentinel(seg129), status: bad, code: ia},
		{name: "path 513 bytes", action: "createSecret", body: bodyWithSentinel(path513), status: bad, code: ia},
		{name: "path with space", action: "createSecret", body: bodyWithSentinel("/t/new secret"), status: bad, code: ia},
		{name: "path with unicode", action: "createSecret", body: bodyWithSentinel("/t/caf\u00e9"), status: bad, code: ia},
		{name: "path with NUL", action: "createSecret", body: bodyWithSentinel("/t/a\x00b"), status: bad, code: ia},
		{name: "path with backslash", action: "putSecretValue", body: bodyWithSentinel(`/t\a`), status: bad, code: ia},
		{name: "bad path on describe", action: "describeSecret", body: `{"path":"/t/a/"}`, status: bad, code: ia},
		{name: "bad path on get", action: "getSecretValue", body: `{"path":"t/a"}`, status: bad, code: ia},
		{name: "bad path on generate", action: "generateSecret", body: `{"path":"/t/../x","create":true}`, status: bad, code: ia},
		{name: "bad path on update", action: "updateSecret", body: `{"path":"/t//a","description":"x"}`, status: bad, code: ia},
		{name: "bad path on destroy", action: "destroySecretVersion", body: `{"path":"/t/./a","version":1}`, status: bad, code: ia},
		{name: "bad path on delete", action: "deleteSecret", body: `{"path":""}`, status: bad, code: ia},
		{name: "bad path in batch", action: "batchGetSecretValue", body: `{"paths":["/t/a","/t/a b"]}`, status: bad, code: ia},

		// Values.
		{name: "empty value on create", action: "createSecret", body: `{"path":"/t/new","value":""}`, status: bad, code: ia},
		{name: "empty value on put", action: "putSecretValue", body: `{"path":"/t/a","value":""}`, status: bad, code: ia},
		{name: "missing value on put", action: "putSecretValue", body: `{"path":"/t/a"}`, status: bad, code: ia},
		{name: "value 64 KiB + 1 on put", action: "putSecretValue", body: `{"path":"/t/a","value":"` + patternValueB64(apitypes.MaxValueBytes+1) + `"}`, status: http.StatusRequestEntityTooLarge, code: errs.TooLarge},
		{name: "value 64 KiB + 1 on create", action: "createSecret", body: `{"path":"/t/new","value":"` + patternValueB64(apitypes.MaxValueBytes+1) + `"}`, status: http.StatusRequestEntityTooLarge, code: errs.TooLarge},
		{name: "body over 1 MiB", action: "putSecretValue", body: `{"path":"/t/a","value":"` + strings.Repeat("QUFB", (1<<20)/4+1) + `"}`, status: http.StatusRequestEntityTooLarge, code: errs.TooLarge},
		{name: "body 1 MiB + 1 of whitespace", action: "describeSecret", body: `{"path":"/t/a"}` + strings.Repeat(" ", (1<<20)+1-len(`{"path":"/t/a"}`)), status: http.StatusRequestEntityTooLarge, code: errs.TooLarge},

		// Routing and method.
		{name: "unknown action", action: "nope", body: `{}`, status: http.StatusNotFound, code: errs.NotFound},
		{name: "empty action", action: "", body: `{}`, status: http.StatusNotFound, code: errs.NotFound},
		{name: "action with trailing slash", action: "createSecret/", body: bodyWithSentinel("/t/new"), status: http.StatusNotFound, code: errs.NotFound},
		{name: "action wrong case", action: "createsecret", body: bodyWithSentinel("/t/new"), status: http.StatusNotFound, code: errs.NotFound},
		{name: "GET on an action", method: http.MethodGet, action: "getSecretValue", status: http.StatusMethodNotAllowed, code: ia},
		{name: "PUT on an action", method: http.MethodPut, action: "createSecret", body: bodyWithSentinel("/t/new"), status: http.StatusMethodNotAllowed, code: ia},
		{name: "POST on health", action: "sys/health", body: `{}`, status: http.StatusMethodNotAllowed, code: ia},

		// Authentication.
		{name: "missing token", action: "createSecret", body: bodyWithSentinel("/t/new"), authz: authNone, status: http.StatusUnauthorized, code: errs.Unauthenticated},
		{name: "missing token on read", action: "getSecretValue", body: `{"path":"/t/a"}`, authz: authNone, status: http.StatusUnauthorized, code: errs.Unauthenticated},
		{name: "empty bearer", action: "describeSecret", body: `{"path":"/t/a"}`, authz: "Bearer ", status: http.StatusUnauthorized, code: errs.Unauthenticated},
		{name: "unknown token", action: "putSecretValue", body: bodyWithSentinel("/t/a"), authz: "Bearer " + unknownToken, status: http.StatusUnauthorized, code: errs.Unauthenticated, noEcho: []string{unknownToken}},
		{name: "garbage token", action: "getSecretValue", body: `{"path":"/t/a"}`, authz: "Bearer not-a-token-" + sentinel, status: http.StatusUnauthorized, code: errs.Unauthenticated, noEcho: []string{"not-a-token"}},
		{name: "basic auth scheme", action: "getSecretValue", body: `{"path":"/t/a"}`, authz: "Basic " + stdb64("root:"+sentinel), status: http.StatusUnauthorized, code: errs.Unauthenticated, noEcho: []string{stdb64("root:" + sentinel)}},
		{name: "lowercase bearer", action: "listSecrets", body: `{}`, authz: "bearer " + unknownToken, status: http.StatusUnauthorized, code: errs.Unauthenticated, noEcho: []string{unknownToken}},

		// Metadata.
		{name: "labels 65", action: "createSecret", body: `{"path":"/t/new","labels":` + labelsJSON(65) + `}`, status: bad, code: ia},
		{name: "labels 65 on update", action: "updateSecret", body: `{"path":"/t/a","labels":` + labelsJSON(65) + `}`, status: bad, code: ia},
		{name: "label empty key", action: "createSecret", body: `{"path":"/t/new","labels":{"":"v"}}`, status: bad, code: ia},
		{name: "label value 513 bytes", action: "updateSecret", body: `{"path":"/t/a","labels":{"k":"` + strings.Repeat("v", 513) + `"}}`, status: bad, code: ia},
		{name: "description 1025 bytes", action: "createSecret", body: `{"path":"/t/new","description":"` + strings.Repeat("d", 1025) + `"}`, status: bad, code: ia},
		{name: "bad kms_key name", action: "createSecret", body: `{"path":"/t/new","kms_key":"Default Key","value":"` + sentinelB64 + `"}`, status: bad, code: ia},
		{name: "unknown kms_key with value", action: "createSecret", body: `{"path":"/t/new","kms_key":"nokey","value":"` + sentinelB64 + `"}`, status: http.StatusNotFound, code: errs.NotFound},
		{name: "unknown kms_key without value", action: "createSecret", body: `{"path":"/t/new","kms_key":"nokey"}`, status: http.StatusNotFound, code: errs.NotFound},
		{name: "bad access_policy cidr", action: "createSecret", body: `{"path":"/t/new","access_policy":{"source_cidrs":["10.0.0.1"]}}`, status: bad, code: ia},
		{name: "bad access_policy window", action: "updateSecret", body: `{"path":"/t/a","access_policy":{"time_windows":[{"start":"25:00","end":"26:00"}]}}`, status: bad, code: ia},

		// generateSecret.
		{name: "generate length 0", action: "generateSecret", body: `{"path":"/t/a","length":0}`, status: bad, code: ia},
		{name: "generate length 4097", action: "generateSecret", body: `{"path":"/t/a","length":4097}`, status: bad, code: ia},
		{name: "generate length -1", action: "generateSecret", body: `{"path":"/t/a","length":-1}`, status: bad, code: ia},
		{name: "generate bad charset", action: "generateSecret", body: `{"path":"/t/a","charset":"base32"}`, status: bad, code: ia},
		{name: "generate charset wrong case", action: "generateSecret", body: `{"path":"/t/a","charset":"HEX"}`, status: bad, code: ia},
		{name: "generate missing without create", action: "generateSecret", body: `{"path":"/t/missing"}`, status: http.StatusNotFound, code: errs.NotFound},

		// listSecrets.
		{name: "page_size 0", action: "listSecrets", body: `{"prefix":"/","page_size":0}`, status: bad, code: ia},
		{name: "page_size 1001", action: "listSecrets", body: `{"prefix":"/","page_size":1001}`, status: bad, code: ia},
		{name: "page_size -1", action: "listSecrets", body: `{"prefix":"/","page_size":-1}`, status: bad, code: ia},
		{name: "bad page_token", action: "listSecrets", body: `{"prefix":"/","page_token":"!!!not-a-token"}`, status: bad, code: ia},
		{name: "page_token of another prefix", action: "listSecrets", body: `{"prefix":"/t/dir/","page_token":"` + base64.RawURLEncoding.EncodeToString([]byte("/t/a")) + `"}`, status: bad, code: ia},
		{name: "prefix without trailing slash", action: "listSecrets", body: `{"prefix":"/a"}`, status: bad, code: ia},
		{name: "prefix without leading slash", action: "listSecrets", body: `{"prefix":"a/"}`, status: bad, code: ia},
		{name: "prefix double slash", action: "listSecrets", body: `{"prefix":"//"}`, status: bad, code: ia},
		{name: "prefix with dotdot", action: "listSecrets", body: `{"prefix":"/t/../"}`, status: bad, code: ia},
		{name: "bad key_state", action: "listSecrets", body: `{"prefix":"/","key_state":"disabled"}`, status: bad, code: ia},

		// batchGetSecretValue.
		{name: "batch 0 paths", action: "batchGetSecretValue", body: `{"paths":[]}`, status: bad, code: ia},
		{name: "batch no paths field", action: "batchGetSecretValue", body: `{}`, status: bad, code: ia},
		{name: "batch 101 paths", action: "batchGetSecretValue", body: pathsJSON(101, false), status: bad, code: ia},
		{name: "batch duplicate paths", action: "batchGetSecretValue", body: `{"paths":["/t/a","/t/b","/t/a"]}`, status: bad, code: ia},

		// Consistency.
		{name: "bad consistency on get", action: "getSecretValue", body: `{"path":"/t/a","consistency":"strong"}`, status: bad, code: ia},
		{name: "bad consistency on describe", action: "describeSecret", body: `{"path":"/t/a","consistency":"linearizable"}`, status: bad, code: ia},
		{name: "bad consistency on list", action: "listSecrets", body: `{"prefix":"/","consistency":"LEADER"}`, status: bad, code: ia},
		{name: "bad consistency on batch", action: "batchGetSecretValue", body: `{"paths":["/t/a"],"consistency":"x"}`, status: bad, code: ia},

		// Domain errors on existing fixtures.
		{name: "create existing", action: "createSecret", body: bodyWithSentinel("/t/a"), status: http.StatusConflict, code: errs.AlreadyExists},
		{name: "put missing secret", action: "putSecretValue", body: bodyWithSentinel("/t/missing"), status: http.StatusNotFound, code: errs.NotFound},
		{name: "put expected_version mismatch", action: "putSecretValue", body: `{"path":"/t/a","value":"` + sentinelB64 + `","expected_version":1}`, status: http.StatusPreconditionFailed, code: errs.VersionMismatch},
		{name: "get missing version", action: "getSecretValue", body: `{"path":"/t/a","version":99}`, status: http.StatusNotFound, code: errs.NotFound},
		{name: "get destroyed version", action: "getSecretValue", body: `{"path":"/t/dir/c","version":1}`, status: http.StatusGone, code: errs.Gone},
		{name: "get secret without versions", action: "getSecretValue", body: `{"path":"/t/b"}`, status: http.StatusNotFound, code: errs.NotFound},
		{name: "describe missing", action: "describeSecret", body: `{"path":"/t/missing"}`, status: http.StatusNotFound, code: errs.NotFound},
		{name: "update missing", action: "updateSecret", body: `{"path":"/t/missing","description":"x"}`, status: http.StatusNotFound, code: errs.NotFound},
		{name: "destroy version 0", action: "destroySecretVersion", body: `{"path":"/t/a","version":0}`, status: bad, code: ia},
		{name: "destroy missing version", action: "destroySecretVersion", body: `{"path":"/t/a","version":99}`, status: http.StatusNotFound, code: errs.NotFound},
		{name: "delete missing", action: "deleteSecret", body: `{"path":"/t/missing"}`, status: http.StatusNotFound, code: errs.NotFound},
		{name: "init again", action: "sys/init", body: `{}`, authz: authNone, status: http.StatusConflict, code: errs.AlreadyExists},
	}
	return cs
}

// setupFixtures creates the secrets the bad-input table runs against:
// /t/a (versions 1, 2), /t/b (no value), /t/dir/c (version 1 destroyed, 2).
func setupFixtures(t testing.TB, ds *devServer) {
	t.Helper()
	ds.call(t, "createSecret", map[string]any{"path": "/t/a", "value": stdb64("one")}, nil)
	ds.call(t, "putSecretValue", map[string]any{"path": "/t/a", "value": stdb64("two")}, nil)
	ds.call(t, "createSecret", map[string]any{"path": "/t/b", "description": "no value"}, nil)
	ds.call(t, "createSecret", map[string]any{"path": "/t/dir/c", "value": stdb64("c1"), "labels": map[string]string{"a": "1", "b": "2"}}, nil)
	ds.call(t, "putSecretValue", map[string]any{"path": "/t/dir/c", "value": stdb64("c2")}, nil)
	ds.call(t, "destroySecretVersion", map[string]any{"path": "/t/dir/c", "version": 1}, nil)
}

func (c badCase) send(t testing.TB, ds *devServer) apiAnswer {
	t.Helper()
	method := c.method
	if method == "" {
		method = http.MethodPost
	}
	authz := c.authz
	switch authz {
	case authRoot:
		authz = ds.bearer()
	case authNone:
		authz = ""
	}
	var body []byte
	if c.body != "" || method == http.MethodPost {
		body = []byte(c.body)
	}
	return ds.do(t, method, "/v1/"+c.action, authz, body)
}

func TestBadInputs(t *testing.T) {
	ds := startDev(t)
	setupFixtures(t, ds)
	before := ds.stateFingerprint(t)
	for _, c := range badCases() {
		t.Run(c.name, func(t *testing.T) {
			// Checked even when an assertion below stops the subtest.
			defer func() {
				if after := ds.stateFingerprint(t); after != before {
					t.Errorf("a failed request changed the state:\nbefore:\n%s\nafter:\n%s", before, after)
					before = after // report each change once
				}
			}()
			a := c.send(t, ds)
			e := a.wantError(t, c.status, c.code)
			noEcho := append([]string{sentinel, sentinelB64, sentinelRaw, ds.Root}, c.noEcho...)
			for _, s := range noEcho {
				if s != "" && strings.Contains(e.Message, s) {
					t.Errorf("message %q echoes submitted %q", e.Message, s)
				}
			}
			if len(c.body) >= 16 && strings.Contains(e.Message, c.body) {
				t.Errorf("message %q echoes the request body", e.Message)
			}
			if c.status == http.StatusMethodNotAllowed {
				if allow := a.Header.Get("Allow"); c.action != "sys/health" && allow != http.MethodPost {
					t.Errorf("Allow = %q, want POST", allow)
				}
			}
		})
	}
}

// TestValueAndBodyLimits checks the accepted side of every size limit.
func TestValueAndBodyLimits(t *testing.T) {
	ds := startDev(t)
	ds.call(t, "createSecret", map[string]any{"path": "/lim/a"}, nil)

	// 64 KiB exactly is accepted and round-trips.
	max := patternValueB64(apitypes.MaxValueBytes)
	var put apitypes.PutSecretValueResponse
	ds.call(t, "putSecretValue", map[string]any{"path": "/lim/a", "value": max}, &put)
	var got apitypes.GetSecretValueResponse
	ds.call(t, "getSecretValue", map[string]any{"path": "/lim/a"}, &got)
	if base64.StdEncoding.EncodeToString(got.Value) != max || len(got.Value) != apitypes.MaxValueBytes {
		t.Fatalf("64 KiB value did not round-trip (got %d bytes)", len(got.Value))
	}
	var d apitypes.DescribeSecretResponse
	ds.call(t, "describeSecret", map[string]any{"path": "/lim/a"}, &d)
	if d.Secret.Versions[0].Size != apitypes.MaxValueBytes {
		t.Fatalf("size = %d, want %d", d.Secret.Versions[0].Size, apitypes.MaxValueBytes)
	}
	// 1 byte is accepted.
	ds.call(t, "createSecret", map[string]any{"path": "/lim/one", "value": stdb64("x")}, nil)

	// A body of exactly 1 MiB (whitespace padded) is accepted.
	body := `{"path":"/lim/padded"}`
	body += strings.Repeat(" ", apitypes.MaxBodyBytes-len(body))
	a := ds.post(t, "createSecret", []byte(body))
	if a.Status != http.StatusOK {
		t.Fatalf("1 MiB body: %d %s", a.Status, a.Body)
	}

	// Paths at their limits are accepted: 16 segments, 128-byte segment,
	// 512 bytes, every allowed character.
	for _, p := range []string{
		repeatSegment("s", 16),
		"/" + strings.Repeat("x", 128),
		repeatSegment(strings.Repeat("p", 63), 8),
		"/AZaz09._-/x",
		"/a-/.b/_c/..d/d..",
	} {
		ds.call(t, "createSecret", map[string]any{"path": p}, nil)
		var d apitypes.DescribeSecretResponse
		ds.call(t, "describeSecret", map[string]any{"path": p}, &d)
		if d.Secret.Path != p {
			t.Fatalf("path %q described as %q", p, d.Secret.Path)
		}
	}
	// 64 labels are accepted.
	ds.call(t, "updateSecret", map[string]any{"path": "/lim/a", "labels": nLabels(64)}, nil)
}

func nLabels(n int) map[string]string {
	m := map[string]string{}
	for i := 0; i < n; i++ {
		m[fmt.Sprintf("k%d", i)] = "v"
	}
	return m
}

// TestMinIndexInFuture: a read waiting for an index the node never reaches
// answers Unavailable after about 5 s.
func TestMinIndexInFuture(t *testing.T) {
	t.Parallel()
	ds := startDev(t)
	ds.call(t, "createSecret", map[string]any{"path": "/m/a", "value": stdb64("v")}, nil)
	before := ds.stateFingerprint(t)
	start := time.Now()
	a := ds.post(t, "getSecretValue", jsonBody(t, map[string]any{"path": "/m/a", "min_index": uint64(1) << 40}))
	elapsed := time.Since(start)
	a.wantError(t, http.StatusServiceUnavailable, errs.Unavailable)
	if elapsed < 4500*time.Millisecond || elapsed > 15*time.Second {
		t.Fatalf("min_index wait took %v, want about %v", elapsed, apitypes.MaxMinIndexWait)
	}
	if after := ds.stateFingerprint(t); after != before {
		t.Fatalf("state changed:\n%s\n%s", before, after)
	}
}

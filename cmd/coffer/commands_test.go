package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
)

type seen struct {
	Method, Path, Query, Auth, CType string
	Body                             []byte
}

// canned is a fake node: each path answers with a fixed status and body.
type canned struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []seen
	answers map[string]answer
}

type answer struct {
	status int
	body   any // marshalled to JSON unless []byte
}

func newCanned(t *testing.T) *canned {
	c := &canned{t: t, answers: map[string]answer{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.reqs = append(c.reqs, seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), b})
		ans, ok := c.answers[r.URL.Path]
		c.mu.Unlock()
		if !ok {
			ans = answer{404, apitypes.ErrorBody{Error: apitypes.ErrorDetail{Code: "NotFound", Message: "no canned answer for " + r.URL.Path}}}
		}
		status := ans.status
		if status == 0 {
			status = 200
		}
		raw, isRaw := ans.body.([]byte)
		if !isRaw {
			raw, _ = json.Marshal(ans.body)
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		w.Write(raw)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *canned) on(action string, status int, body any) *canned {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.answers["/v1/"+action] = answer{status, body}
	return c
}

func (c *canned) fail(action string, code errs.Code, msg string) *canned {
	return c.on(action, errs.HTTPStatus(code), apitypes.ErrorBody{Error: apitypes.ErrorDetail{Code: string(code), Message: msg}})
}

// last returns the last request and its JSON body.
func (c *canned) last() (seen, map[string]any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.reqs) == 0 {
		c.t.Fatal("no request sent")
	}
	r := c.reqs[len(c.reqs)-1]
	var m map[string]any
	if strings.HasPrefix(r.CType, "application/json") {
		if err := json.Unmarshal(r.Body, &m); err != nil {
			c.t.Fatalf("request body %q: %v", r.Body, err)
		}
	}
	return r, m
}

type result struct {
	rc             int
	stdout, stderr string
}

type runOpts struct {
	stdin     string
	stdinTTY  bool
	stdoutTTY bool
	env       map[string]string
}

// cli runs the CLI against c with COFFER_ADDR and COFFER_TOKEN set.
func (c *canned) cli(o runOpts, args ...string) result {
	env := map[string]string{"COFFER_ADDR": c.srv.URL, "COFFER_TOKEN": "tok"}
	for k, v := range o.env {
		env[k] = v
	}
	var out, errb bytes.Buffer
	a := &app{ctx: context.Background(), stdin: strings.NewReader(o.stdin), stdout: &out, stderr: &errb,
		getenv: func(k string) string { return env[k] }, stdinTTY: o.stdinTTY, stdoutTTY: o.stdoutTTY,
		retryWait: time.Millisecond}
	rc := a.run(args)
	return result{rc, out.String(), errb.String()}
}

func (c *canned) run(args ...string) result { return c.cli(runOpts{}, args...) }

func expect(t *testing.T, r result, rc int, stdoutHas ...string) {
	t.Helper()
	if r.rc != rc {
		t.Fatalf("rc %d, want %d\nstdout: %s\nstderr: %s", r.rc, rc, r.stdout, r.stderr)
	}
	for _, s := range stdoutHas {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
}

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func TestSecretGet(t *testing.T) {
	c := newCanned(t).on("getSecretValue", 200, apitypes.GetSecretValueResponse{
		SecretValue: apitypes.SecretValue{Path: "/app/db", UID: "u1", Version: 2, Value: []byte("p@ss\x00word"), CreatedAt: t0},
		Index:       42})

	r := c.run("secret", "get", "/app/db", "--version", "2", "--consistency", "leader", "--min-index", "7")
	expect(t, r, 0)
	if r.stdout != "p@ss\x00word" {
		t.Errorf("stdout %q: want the raw value, no newline", r.stdout)
	}
	req, body := c.last()
	if req.Method != "POST" || req.Path != "/v1/getSecretValue" || req.Query != "" || req.Auth != "Bearer tok" {
		t.Errorf("request %+v", req)
	}
	if body["path"] != "/app/db" || body["version"] != 2.0 || body["consistency"] != "leader" || body["min_index"] != 7.0 {
		t.Errorf("body %v", body)
	}

	r = c.cli(runOpts{stdoutTTY: true}, "secret", "get", "/app/db")
	expect(t, r, 0)
	if r.stdout != "p@ss\x00word\n" {
		t.Errorf("terminal stdout %q", r.stdout)
	}

	r = c.run("secret", "get", "/app/db", "--base64")
	if r.stdout != base64.StdEncoding.EncodeToString([]byte("p@ss\x00word")) {
		t.Errorf("base64 stdout %q", r.stdout)
	}

	// --json after the positional argument prints the API answer.
	r = c.run("secret", "get", "/app/db", "--json")
	expect(t, r, 0)
	var got map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("json output %q: %v", r.stdout, err)
	}
	if got["value"] != base64.StdEncoding.EncodeToString([]byte("p@ss\x00word")) || got["index"] != 42.0 {
		t.Errorf("json output %v", got)
	}
}

func TestErrorsAndEnv(t *testing.T) {
	c := newCanned(t).fail("getSecretValue", errs.NotFound, "secret /nope does not exist")
	r := c.run("secret", "get", "/nope")
	if r.rc != 1 || r.stderr != "error: NotFound: secret /nope does not exist\n" || r.stdout != "" {
		t.Fatalf("%+v", r)
	}
	// --token and --addr override the environment.
	other := newCanned(t).on("whoami", 200, apitypes.WhoamiResponse{Token: apitypes.Token{Accessor: "acc", Name: "ci"}})
	r = c.run("acl", "token", "whoami", "--addr", other.srv.URL, "--token", "flagtok")
	expect(t, r, 0, "acc", "ci")
	if req, _ := other.last(); req.Auth != "Bearer flagtok" {
		t.Errorf("Authorization %q", req.Auth)
	}
	// Unreachable node: Unavailable, exit 1.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	r = c.run("secret", "describe", "/a", "--addr", "http://"+addr)
	if r.rc != 1 || !strings.HasPrefix(r.stderr, "error: Unavailable: ") {
		t.Errorf("unreachable: %+v", r)
	}
	// The client retries an Unavailable answer, then reports it.
	c.fail("listSecrets", errs.Unavailable, "no leader")
	r = c.run("secret", "list")
	if r.rc != 1 || r.stderr != "error: Unavailable: no leader\n" {
		t.Errorf("unavailable: %+v", r)
	}
}

func TestSecretPut(t *testing.T) {
	c := newCanned(t).on("putSecretValue", 200, apitypes.PutSecretValueResponse{Version: 4, Index: 9})
	r := c.cli(runOpts{stdin: "s3cret\n"}, "secret", "put", "/app/db", "--expected-version", "0")
	expect(t, r, 0, "Wrote version 4 of /app/db")
	req, body := c.last()
	if strings.Contains(req.Path, "app") || req.Query != "" {
		t.Errorf("URL %s?%s", req.Path, req.Query)
	}
	// piped stdin is taken byte for byte
	if body["value"] != base64.StdEncoding.EncodeToString([]byte("s3cret\n")) || body["expected_version"] != 0.0 {
		t.Errorf("body %v", body)
	}

	// On a terminal the newline that ends the typed line is dropped; no
	// --expected-version means no check-and-set.
	r = c.cli(runOpts{stdin: "typed\n", stdinTTY: true}, "secret", "put", "/app/db")
	expect(t, r, 0)
	_, body = c.last()
	if _, has := body["expected_version"]; has || body["value"] != base64.StdEncoding.EncodeToString([]byte("typed")) {
		t.Errorf("body %v", body)
	}
	if !strings.Contains(r.stderr, "Enter the value") {
		t.Errorf("no prompt: %q", r.stderr)
	}

	f := filepath.Join(t.TempDir(), "v")
	os.WriteFile(f, []byte("from-file"), 0o600)
	expect(t, c.run("secret", "put", "--value-file", f, "/app/db"), 0)
	if _, body = c.last(); body["value"] != base64.StdEncoding.EncodeToString([]byte("from-file")) {
		t.Errorf("body %v", body)
	}

	n := len(c.reqs)
	r = c.cli(runOpts{stdin: ""}, "secret", "put", "/app/db")
	if r.rc != 1 || !strings.Contains(r.stderr, "error: InvalidArgument: the value is empty") {
		t.Errorf("empty: %+v", r)
	}
	r = c.cli(runOpts{stdin: strings.Repeat("x", 64<<10+1)}, "secret", "put", "/app/db")
	if r.rc != 1 || !strings.Contains(r.stderr, "error: TooLarge") {
		t.Errorf("too large: %+v", r)
	}
	if len(c.reqs) != n {
		t.Error("a bad value was sent")
	}
}

func TestSecretCreate(t *testing.T) {
	c := newCanned(t).on("createSecret", 200, apitypes.CreateSecretResponse{
		Secret: apitypes.Secret{Path: "/app/db", UID: "abc"}, Version: 1, Index: 3})
	dir := t.TempDir()
	vf := filepath.Join(dir, "v")
	os.WriteFile(vf, []byte("val"), 0o600)
	pf := filepath.Join(dir, "p.json")
	os.WriteFile(pf, []byte(`{"source_cidrs":["10.0.0.0/8"]}`), 0o600)
	r := c.run("secret", "create", "/app/db", "--label", "env=prod", "--description", "the db",
		"--label", "team=core", "--kms-key", "k1", "--value-file", vf, "--access-policy-file", pf)
	expect(t, r, 0, "Created /app/db (uid abc) with version 1")
	_, body := c.last()
	labels, _ := body["labels"].(map[string]any)
	if body["path"] != "/app/db" || body["description"] != "the db" || body["kms_key"] != "k1" ||
		labels["env"] != "prod" || labels["team"] != "core" || body["value"] != "dmFs" {
		t.Errorf("body %v", body)
	}
	if ap, _ := body["access_policy"].(map[string]any); ap == nil {
		t.Errorf("no access policy in %v", body)
	}

	c.on("createSecret", 200, apitypes.CreateSecretResponse{Secret: apitypes.Secret{Path: "/b", UID: "u"}})
	r = c.run("secret", "create", "/b")
	expect(t, r, 0, "no value yet")
	if _, body = c.last(); body["value"] != nil || body["labels"] != nil {
		t.Errorf("body %v", body)
	}

	os.WriteFile(pf, []byte(`{"source_cidr":["10.0.0.0/8"]}`), 0o600)
	r = c.run("secret", "create", "/b", "--access-policy-file", pf)
	if r.rc != 1 || !strings.Contains(r.stderr, "InvalidArgument") {
		t.Errorf("bad policy file: %+v", r)
	}
}

func TestSecretDescribeAndList(t *testing.T) {
	sec := apitypes.Secret{Path: "/app/db", UID: "u1", KMSKey: "default", Description: "db",
		Labels: map[string]string{"b": "2", "a": "1"}, CreatedAt: t0, CreatedBy: "root", UpdatedAt: t0, CurrentVersion: 2,
		Versions: []apitypes.Version{
			{Version: 1, State: "destroyed", CreatedAt: t0, CreatedBy: "root", Origin: "put", Size: 5, KMSKey: "default", KMSKeyVersion: 1},
			{Version: 2, State: "enabled", CreatedAt: t0, CreatedBy: "ci", Origin: "generate", Size: 32, KMSKey: "default", KMSKeyVersion: 2},
		}}
	c := newCanned(t).on("describeSecret", 200, apitypes.DescribeSecretResponse{Secret: sec, Index: 5})
	r := c.run("secret", "describe", "/app/db")
	expect(t, r, 0, "UID:", "u1", "a=1, b=2", "Current version: 2", "VERSION", "destroyed", "generate", "default v2", "2026-03-04T05:06:07Z")

	sec.Versions = nil
	c.on("listSecrets", 200, apitypes.ListSecretsResponse{Folders: []string{"/app/prod/"}, Secrets: []apitypes.Secret{sec},
		NextPageToken: "tok2", Index: 5})
	r = c.run("secret", "list", "/app", "--page-size", "10", "--recursive")
	expect(t, r, 0, "PATH", "/app/prod/", "/app/db")
	if !strings.Contains(r.stderr, "--page-token tok2") {
		t.Errorf("stderr %q", r.stderr)
	}
	_, body := c.last()
	if body["prefix"] != "/app/" || body["page_size"] != 10.0 || body["recursive"] != true {
		t.Errorf("body %v", body)
	}
	c.run("secret", "list")
	if _, body = c.last(); body["prefix"] != "/" {
		t.Errorf("default prefix: %v", body)
	}
}

func TestSecretWrites(t *testing.T) {
	c := newCanned(t).
		on("generateSecret", 200, apitypes.GenerateSecretResponse{Version: 3, Index: 1}).
		on("updateSecret", 200, apitypes.UpdateSecretResponse{Secret: apitypes.Secret{Path: "/a"}}).
		on("rebindSecretKey", 200, apitypes.RebindSecretKeyResponse{Secret: apitypes.Secret{Path: "/a", KMSKey: "k2"}}).
		on("destroySecretVersion", 200, apitypes.IndexResponse{Index: 8}).
		on("deleteSecret", 200, apitypes.IndexResponse{Index: 9})

	expect(t, c.run("secret", "generate", "/a", "--length", "20", "--charset", "hex", "--create"), 0, "Generated version 3 of /a")
	if _, b := c.last(); b["length"] != 20.0 || b["charset"] != "hex" || b["create"] != true {
		t.Errorf("generate body %v", b)
	}

	expect(t, c.run("secret", "update", "/a", "--description", "", "--label", "x=y"), 0, "Updated /a")
	_, b := c.last()
	if d, has := b["description"]; !has || d != "" {
		t.Errorf("update body lacks the empty description: %v", b)
	}
	if l, _ := b["labels"].(map[string]any); l["x"] != "y" {
		t.Errorf("update labels %v", b)
	}
	expect(t, c.run("secret", "update", "/a", "--clear-labels"), 0)
	if _, b = c.last(); b["description"] != nil || b["labels"] == nil || len(b["labels"].(map[string]any)) != 0 {
		t.Errorf("clear-labels body %v", b)
	}

	expect(t, c.run("secret", "rebind", "/a", "--kms-key", "k2"), 0, "Rebound /a to key k2")
	if _, b = c.last(); b["kms_key"] != "k2" {
		t.Errorf("rebind body %v", b)
	}
	expect(t, c.run("secret", "destroy", "/a", "--version", "2"), 0, "Destroyed version 2 of /a")
	if _, b = c.last(); b["version"] != 2.0 || b["path"] != "/a" {
		t.Errorf("destroy body %v", b)
	}
	r := c.run("secret", "delete", "/a", "--json")
	expect(t, r, 0, `"index": 9`)
	if req, _ := c.last(); req.Path != "/v1/deleteSecret" {
		t.Errorf("delete went to %s", req.Path)
	}
}

func TestOperator(t *testing.T) {
	c := newCanned(t).on("sys/init", 200, apitypes.InitResponse{RootToken: "root-xyz", Accessor: "acc1", Index: 1})
	r := c.run("operator", "init")
	expect(t, r, 0, "root-xyz", "acc1")
	if !strings.Contains(r.stderr, "shown only this once") {
		t.Errorf("no warning: %q", r.stderr)
	}
	if req, _ := c.last(); req.Auth != "" || req.Path != "/v1/sys/init" {
		t.Errorf("init request %+v", req)
	}

	line := runLocalOK(t, "operator", "keygen")
	key, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(line, "\n"))
	if err != nil || len(key) != 32 || !strings.HasSuffix(line, "=\n") {
		t.Errorf("keygen printed %q (%v)", line, err)
	}

	out := filepath.Join(t.TempDir(), "root.key")
	runLocalOK(t, "operator", "keygen", "--out", out)
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	data, _ := os.ReadFile(out)
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data))); err != nil || len(k) != 32 {
		t.Errorf("key file %q", data)
	}
	rc, _, stderr := runLocal("operator", "keygen", "--out", out)
	after, _ := os.ReadFile(out)
	if rc != 1 || !strings.Contains(stderr, "AlreadyExists") || !bytes.Equal(after, data) {
		t.Errorf("overwrite: rc %d %q", rc, stderr)
	}
}

func runLocalOK(t *testing.T, args ...string) string {
	t.Helper()
	rc, out, errb := runLocal(args...)
	if rc != 0 {
		t.Fatalf("%q: rc %d: %s", args, rc, errb)
	}
	return out
}

func TestNodeCommands(t *testing.T) {
	recent := time.Now().Add(-1500 * time.Millisecond)
	c := newCanned(t).on("sys/cluster", 200, apitypes.ClusterResponse{Members: []apitypes.Member{
		{NodeID: "n1", ClusterAddr: "10.0.0.1:7701", HTTPAddr: "10.0.0.1:7700", Suffrage: "voter", State: "alive", AppliedIndex: 100, Leader: true},
		{NodeID: "n2", ClusterAddr: "10.0.0.2:7701", HTTPAddr: "10.0.0.2:7700", Suffrage: "nonvoter", State: "alive", LastContact: &recent, AppliedIndex: 99},
	}, Index: 100}).
			on("sys/join", 200, apitypes.IndexResponse{Index: 101}).
			on("sys/removePeer", 200, apitypes.IndexResponse{Index: 102}).
			on("sys/transferLeadership", 200, apitypes.IndexResponse{Index: 103})
	r := c.run("node", "list")
	expect(t, r, 0, "ID", "CLUSTER ADDR", "LAST CONTACT", "APPLIED INDEX", "LEADER", "n1", "10.0.0.2:7700", "nonvoter", "ago", "99")
	lines := strings.Split(r.stdout, "\n")
	if !strings.HasSuffix(strings.TrimSpace(lines[1]), "*") || strings.HasSuffix(strings.TrimSpace(lines[2]), "*") {
		t.Errorf("leader column:\n%s", r.stdout)
	}
	expect(t, c.run("node", "join", "10.0.0.3:7702"), 0)
	if _, b := c.last(); b["addr"] != "10.0.0.3:7702" {
		t.Errorf("join %v", b)
	}
	expect(t, c.run("node", "remove", "n2"), 0)
	if _, b := c.last(); b["node_id"] != "n2" {
		t.Errorf("remove %v", b)
	}
	expect(t, c.run("node", "transfer-leadership"), 0)
	if req, b := c.last(); req.Path != "/v1/sys/transferLeadership" || len(b) != 0 {
		t.Errorf("transfer %v", b)
	}
	expect(t, c.run("node", "transfer-leadership", "n2"), 0)
	if _, b := c.last(); b["node_id"] != "n2" {
		t.Errorf("transfer %v", b)
	}
}

func TestSnapshot(t *testing.T) {
	snap := bytes.Repeat([]byte("SNAP\x00\xff"), 50000)
	c := newCanned(t).on("sys/snapshot", 200, snap).on("sys/restore", 200, apitypes.IndexResponse{Index: 500})
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.snap")
	r := c.run("snapshot", "save", file)
	expect(t, r, 0, "Saved snapshot to "+file)
	got, err := os.ReadFile(file)
	if err != nil || !bytes.Equal(got, snap) {
		t.Fatalf("snapshot file: %v", err)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("leftover files: %v", entries)
	}
	r = c.run("snapshot", "save", "-")
	if r.rc != 0 || r.stdout != string(snap) {
		t.Errorf("save to stdout: rc %d, %d bytes", r.rc, len(r.stdout))
	}

	r = c.run("snapshot", "restore", file, "--json")
	expect(t, r, 0, `"index": 500`)
	req, _ := c.last()
	if req.Path != "/v1/sys/restore" || req.CType != "application/octet-stream" || !bytes.Equal(req.Body, snap) {
		t.Errorf("restore request %s %s %d bytes", req.Path, req.CType, len(req.Body))
	}

	// A failed save leaves neither the file nor a temporary file.
	c.fail("sys/snapshot", errs.PermissionDenied, "admin only")
	file2 := filepath.Join(dir, "other.snap")
	r = c.run("snapshot", "save", file2)
	if r.rc != 1 || r.stderr != "error: PermissionDenied: admin only\n" {
		t.Errorf("%+v", r)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("leftover files after failure: %v", entries)
	}
}

func TestAudit(t *testing.T) {
	c := newCanned(t).on("queryAudit", 200, apitypes.QueryAuditResponse{Entries: []apitypes.AuditEntry{
		{Seq: 7, Time: t0, Node: "n1", Action: "secrets.get_value", Principal: apitypes.Principal{Accessor: "a1", Name: "ci"},
			SourceIP: "10.1.1.1", Path: "/app/db", Version: 2, Result: "denied", ErrorCode: "PermissionDenied"},
	}, Index: 9})
	r := c.run("audit", "query", "--since", "2026-03-01T00:00:00Z", "--action", "secrets.get_value",
		"--action", "secrets.put_value", "--principal", "ci", "--path-prefix", "/app/", "--limit", "50")
	expect(t, r, 0, "SEQ", "secrets.get_value", "ci (a1)", "/app/db", "denied (PermissionDenied)")
	_, b := c.last()
	acts, _ := b["actions"].([]any)
	if b["since"] != "2026-03-01T00:00:00Z" || b["until"] != nil || len(acts) != 2 || b["principal"] != "ci" ||
		b["path_prefix"] != "/app/" || b["limit"] != 50.0 {
		t.Errorf("query body %v", b)
	}

	c.on("verifyAudit", 200, apitypes.VerifyAuditResponse{OK: true, Checked: 10, FirstSeq: 1, LastSeq: 10})
	expect(t, c.run("audit", "verify"), 0, "OK: 10 entries checked")
	c.on("verifyAudit", 200, apitypes.VerifyAuditResponse{OK: false, Checked: 4, FirstBrokenSeq: 5})
	expect(t, c.run("audit", "verify"), 1, "BROKEN", "seq 5")
	expect(t, c.run("audit", "verify", "--json"), 1, `"first_broken_seq": 5`)
}

func TestACL(t *testing.T) {
	exp := t0.Add(time.Hour)
	c := newCanned(t).
		on("createToken", 200, apitypes.CreateTokenResponse{Token: "cof_secret", Accessor: "acc9", ExpiresAt: &exp}).
		on("listTokens", 200, apitypes.ListTokensResponse{Tokens: []apitypes.Token{{Accessor: "acc9", Name: "ci", Policies: []string{"secrets-reader", "kms-admin"}, CreatedAt: t0}}}).
		on("revokeToken", 200, apitypes.IndexResponse{Index: 4}).
		on("putPolicy", 200, apitypes.IndexResponse{Index: 5}).
		on("getPolicy", 200, map[string]any{"policy": map[string]any{"name": "ro"}, "index": 5})
	r := c.run("acl", "token", "create", "--name", "ci", "--policy", "secrets-reader,kms-admin", "--ttl", "1h", "--source-cidr", "10.0.0.0/8")
	expect(t, r, 0, "cof_secret", "acc9", "2026-03-04T06:06:07Z")
	_, b := c.last()
	if b["name"] != "ci" || len(b["policies"].([]any)) != 2 || b["ttl"] != "1h" || len(b["source_cidrs"].([]any)) != 1 {
		t.Errorf("create body %v", b)
	}
	expect(t, c.run("acl", "token", "list"), 0, "ACCESSOR", "acc9", "secrets-reader,kms-admin")
	expect(t, c.run("acl", "token", "revoke", "acc9"), 0, "Revoked token acc9")
	if _, b = c.last(); b["accessor"] != "acc9" {
		t.Errorf("revoke body %v", b)
	}

	rules := filepath.Join(t.TempDir(), "rules.json")
	os.WriteFile(rules, []byte(`{"rules":[{"effect":"allow","actions":["getSecretValue"],"paths":["/app/*"]}]}`), 0o600)
	expect(t, c.run("acl", "policy", "put", "ro", "--rules-file", rules), 0, "Wrote policy ro")
	if _, b = c.last(); b["name"] != "ro" || len(b["rules"].([]any)) != 1 {
		t.Errorf("putPolicy body %v", b)
	}
	expect(t, c.run("acl", "policy", "get", "ro"), 0, `"name": "ro"`)
}

func TestKMS(t *testing.T) {
	c := newCanned(t).
		on("scheduleKeyDeletion", 200, apitypes.IndexResponse{Index: 3}).
		on("createKey", 200, apitypes.IndexResponse{Index: 2}).
		on("listKeys", 200, map[string]any{"keys": []any{map[string]any{"name": "default"}}, "index": 2})
	expect(t, c.run("kms", "schedule-deletion", "k1", "--pending-days", "7", "--force"), 0, "in 7 days")
	if _, b := c.last(); b["name"] != "k1" || b["pending_days"] != 7.0 || b["force"] != true {
		t.Errorf("body %v", b)
	}
	expect(t, c.run("kms", "create", "k2", "--description", "payments"), 0, "Created key k2")
	if _, b := c.last(); b["description"] != "payments" {
		t.Errorf("body %v", b)
	}
	expect(t, c.run("kms", "list", "--consistency", "leader"), 0, `"name": "default"`)
	if _, b := c.last(); b["consistency"] != "leader" {
		t.Errorf("body %v", b)
	}
}

func TestHealthCommand(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	c := newCanned(t)
	c.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/v1/sys/health" || r.Header.Get("Authorization") != "" {
			w.WriteHeader(400)
			return
		}
		w.WriteHeader(int(status.Load()))
		json.NewEncoder(w).Encode(apitypes.Health{NodeID: "n1", Role: "leader", LeaderID: "n1", AppliedIndex: 12,
			Initialized: true, Warnings: []string{"clock skew"}})
	})
	noToken := runOpts{} // a token is set, but health sends none
	expect(t, c.cli(noToken, "health"), 0, "serving", "n1", "12", "Warning: clock skew")
	expect(t, c.cli(noToken, "health", "--json"), 0, `"applied_index": 12`)

	// A 503 answer means "not serving": exit 1.
	status.Store(503)
	expect(t, c.cli(noToken, "health"), 1, "not serving (HTTP 503)")

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	r := c.cli(noToken, "health", "--addr", addr)
	if r.rc != 1 || !strings.HasPrefix(r.stderr, "error: Unavailable") {
		t.Errorf("unreachable: %+v", r)
	}
}

package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/apitypes"
)

// TestCluster drives one 3-node cluster the way an operator and an
// application would: the CLI for every secret operation, audit, node list and
// snapshots, then the HTTP API against followers, then bad input.
func TestCluster(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	leader := c.leader()
	if leader == nil {
		t.Fatal("no leader after init")
	}
	fs := c.followers(leader)
	if len(fs) != 2 {
		t.Fatalf("expected 2 followers, got %d", len(fs))
	}
	// markers are distinctive plaintexts: none may reach a disk or a log.
	marker := "e2e-plaintext-" + hex.EncodeToString(randBytes(t, 8))

	t.Run("SecretLifecycleCLI", func(t *testing.T) { testSecretLifecycleCLI(t, c, leader, fs, marker) })
	t.Run("CLIErrors", func(t *testing.T) { testCLIErrors(t, c, fs[0]) })
	t.Run("FollowerReadYourWrites", func(t *testing.T) { testFollowerReadYourWrites(t, c, fs, marker) })
	t.Run("NodeList", func(t *testing.T) { testNodeList(t, c, fs[1]) })
	t.Run("ClusterActionsForwarded", func(t *testing.T) { testClusterActionsForwarded(t, c, fs) })
	t.Run("AuditVerifyEveryNode", func(t *testing.T) { testAuditEveryNode(t, c) })
	t.Run("SnapshotSave", func(t *testing.T) { testSnapshotSave(t, c, fs[0], marker) })
	t.Run("BadInputHTTP", func(t *testing.T) { testBadInput(t, c) })
	t.Run("BenchCLI", func(t *testing.T) { testBenchCLI(t, c, leader, fs) })
	t.Run("NoPlaintextOnDisk", func(t *testing.T) {
		var roots []string
		for _, s := range c.nodes {
			roots = append(roots, s.dataDir, s.logPath, s.auditFile)
		}
		if hits := filesContaining(t, []byte(marker), roots...); len(hits) > 0 {
			t.Errorf("a plaintext secret value reached these files: %v", hits)
		}
	})
}

func testSecretLifecycleCLI(t *testing.T, c *cluster, leader *server, fs []*server, marker string) {
	n1, n2 := fs[0], fs[1] // writes through a follower (forwarded), reads on the other
	path := "/e2e/app/db-password"

	// create without a value, with metadata
	r := c.mustCLI(t, n1, nil, "secret", "create", path, "--description", "e2e database password", "--label", "env=test", "--label", "team=release")
	if !strings.Contains(string(r.stdout), "no value yet") {
		t.Errorf("create without value: %s", r)
	}

	// put from stdin: a trailing newline is part of the value (stdin is no terminal)
	v1 := []byte(marker + "-v1\n")
	r = c.mustCLI(t, n1, v1, "secret", "put", path)
	if !strings.Contains(string(r.stdout), "Wrote version 1 of "+path) {
		t.Errorf("put from stdin: %s", r)
	}

	// put from --value-file: every byte value, plus random bytes
	bin := make([]byte, 0, 256+4096)
	for i := range 256 {
		bin = append(bin, byte(i))
	}
	bin = append(bin, randBytes(t, 4096)...)
	vf := filepath.Join(t.TempDir(), "value.bin")
	if err := os.WriteFile(vf, bin, 0o600); err != nil {
		t.Fatal(err)
	}
	r = c.mustCLI(t, n1, nil, "secret", "put", path, "--value-file", vf)
	if !strings.Contains(string(r.stdout), "Wrote version 2 of "+path) {
		t.Errorf("put --value-file: %s", r)
	}

	// check-and-set: a stale expected version is refused, the right one works
	v3 := []byte(marker + "-v3")
	if r = c.cli(t, n1, "", v3, "secret", "put", path, "--expected-version", "1"); r.code != 1 || !strings.Contains(string(r.stderr), "VersionMismatch") {
		t.Errorf("put --expected-version 1 over version 2: want exit 1 VersionMismatch, got %s", r)
	}
	c.mustCLI(t, n1, v3, "secret", "put", path, "--expected-version", "2")

	// get: byte-exact, from another node (leader consistency: the write was
	// acknowledged by a different process, so stale reads may lag)
	get := func(s *server, args ...string) []byte {
		t.Helper()
		return c.mustCLI(t, s, nil, append([]string{"secret", "get", path, "--consistency", "leader"}, args...)...).stdout
	}
	if got := get(n2, "--version", "1"); !bytes.Equal(got, v1) {
		t.Errorf("get --version 1: got %q, want %q", got, v1)
	}
	if got := get(n2, "--version", "2"); !bytes.Equal(got, bin) {
		t.Errorf("get --version 2 (binary): %d bytes differ from the %d put", len(got), len(bin))
	}
	if got := get(leader, "--version", "2", "--base64"); string(got) != base64.StdEncoding.EncodeToString(bin) {
		t.Errorf("get --version 2 --base64: got %.60q..., want the standard base64 of the value", got)
	}
	if got := get(n2); !bytes.Equal(got, v3) {
		t.Errorf("get (current): got %q, want %q", got, v3)
	}
	r = c.mustCLI(t, n2, nil, "secret", "get", path, "--json", "--consistency", "leader")
	var gv apitypes.GetSecretValueResponse
	if err := json.Unmarshal(r.stdout, &gv); err != nil || gv.Version != 3 || !bytes.Equal(gv.Value, v3) || gv.Index == 0 {
		t.Errorf("get --json: %+v (%v) from %s", gv, err, r)
	}

	// describe: metadata and versions, never values
	r = c.mustCLI(t, n2, nil, "secret", "describe", path, "--consistency", "leader")
	out := string(r.stdout)
	for _, want := range []string{path, "e2e database password", "env=test", "Current version:", "VERSION", "enabled"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe: %q missing from\n%s", want, out)
		}
	}
	if strings.Contains(out, marker) {
		t.Errorf("describe shows a value:\n%s", out)
	}
	d := describe(t, c, n2, path)
	if d.CurrentVersion != 3 || len(d.Versions) != 3 || d.Labels["team"] != "release" {
		t.Errorf("describe --json: current %d, %d versions, labels %v", d.CurrentVersion, len(d.Versions), d.Labels)
	}
	for i, v := range d.Versions {
		if v.Version != uint64(i+1) || v.State != "enabled" || v.Origin != "put" {
			t.Errorf("describe --json: version %d: %+v", i+1, v)
		}
	}
	if len(d.Versions) == 3 && d.Versions[1].Size != len(bin) {
		t.Errorf("describe --json: version 2 size %d, want %d", d.Versions[1].Size, len(bin))
	}

	// create with a first value from stdin
	other := "/e2e/app/api-key"
	r = c.mustCLI(t, n2, []byte(marker+"-api"), "secret", "create", other, "--stdin")
	if !strings.Contains(string(r.stdout), "with version 1") {
		t.Errorf("create --stdin: %s", r)
	}
	c.mustCLI(t, leader, nil, "secret", "create", "/e2e/other/x", "--value-file", vf)

	// list: folders at one level, secrets recursively
	r = c.mustCLI(t, n1, nil, "secret", "list", "/e2e", "--consistency", "leader")
	if !strings.Contains(string(r.stdout), "/e2e/app/") || !strings.Contains(string(r.stdout), "/e2e/other/") {
		t.Errorf("list /e2e: want folders /e2e/app/ and /e2e/other/:\n%s", r.stdout)
	}
	r = c.mustCLI(t, n1, nil, "secret", "list", "/e2e/app/", "--consistency", "leader")
	if !strings.Contains(string(r.stdout), path) || !strings.Contains(string(r.stdout), other) {
		t.Errorf("list /e2e/app/: want %s and %s:\n%s", path, other, r.stdout)
	}
	r = c.mustCLI(t, n1, nil, "secret", "list", "/e2e/", "--recursive", "--json", "--consistency", "leader")
	var ls apitypes.ListSecretsResponse
	if err := json.Unmarshal(r.stdout, &ls); err != nil {
		t.Fatalf("list --json: %v\n%s", err, r)
	}
	var paths []string
	for _, s := range ls.Secrets {
		paths = append(paths, s.Path)
	}
	if strings.Join(paths, ",") != "/e2e/app/api-key,/e2e/app/db-password,/e2e/other/x" {
		t.Errorf("list --recursive: got %v", paths)
	}

	// generate: default 32 random bytes; hex of a given length; --create
	r = c.mustCLI(t, n1, nil, "secret", "generate", path)
	if !strings.Contains(string(r.stdout), "Generated version 4 of "+path) {
		t.Errorf("generate: %s", r)
	}
	if g := get(n2); len(g) != 32 || bytes.Equal(g, v3) {
		t.Errorf("generated value: %d bytes, want 32 new ones", len(g))
	}
	gen := "/e2e/app/generated"
	c.mustCLI(t, n2, nil, "secret", "generate", gen, "--create", "--charset", "hex", "--length", "40")
	g := c.mustCLI(t, n1, nil, "secret", "get", gen, "--consistency", "leader").stdout
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).Match(g) {
		t.Errorf("generate --charset hex --length 40: got %q", g)
	}
	if d := describe(t, c, n1, gen); len(d.Versions) != 1 || d.Versions[0].Origin != "generate" {
		t.Errorf("generated secret's versions: %+v", d.Versions)
	}

	// destroy: the version is Gone, its metadata stays; other versions read
	r = c.mustCLI(t, n2, nil, "secret", "destroy", path, "--version", "1")
	if !strings.Contains(string(r.stdout), "Destroyed version 1") {
		t.Errorf("destroy: %s", r)
	}
	for _, s := range c.nodes {
		r = c.cli(t, s, "", nil, "secret", "get", path, "--version", "1", "--consistency", "leader")
		if r.code != 1 || !strings.Contains(string(r.stderr), "Gone") || len(r.stdout) != 0 {
			t.Errorf("get of a destroyed version on %s: want exit 1 and Gone, got %s", s.name, r)
		}
	}
	if got := get(n1, "--version", "2"); !bytes.Equal(got, bin) {
		t.Errorf("version 2 after destroying version 1: %d bytes differ", len(got))
	}
	if d := describe(t, c, n1, path); len(d.Versions) != 4 || d.Versions[0].State != "destroyed" || d.Versions[1].State != "enabled" {
		t.Errorf("describe after destroy: %+v", d.Versions)
	}

	// delete: gone for good; the path can be created again with a new uid
	uid := describe(t, c, n1, other).UID
	c.mustCLI(t, n1, nil, "secret", "delete", other)
	for _, s := range c.nodes {
		r = c.cli(t, s, "", nil, "secret", "get", other, "--consistency", "leader")
		if r.code != 1 || !strings.Contains(string(r.stderr), "NotFound") {
			t.Errorf("get of a deleted secret on %s: want exit 1 NotFound, got %s", s.name, r)
		}
	}
	c.mustCLI(t, n2, []byte(marker+"-again"), "secret", "create", other, "--stdin")
	if d := describe(t, c, n2, other); d.UID == uid || d.CurrentVersion != 1 {
		t.Errorf("re-created secret: uid %s (old %s), current version %d", d.UID, uid, d.CurrentVersion)
	}
}

func describe(t *testing.T, c *cluster, s *server, path string) apitypes.Secret {
	t.Helper()
	r := c.mustCLI(t, s, nil, "secret", "describe", path, "--json", "--consistency", "leader")
	var d apitypes.DescribeSecretResponse
	if err := json.Unmarshal(r.stdout, &d); err != nil {
		t.Fatalf("describe --json: %v\n%s", err, r)
	}
	return d.Secret
}

func testCLIErrors(t *testing.T, c *cluster, s *server) {
	cases := []struct {
		name   string
		token  string
		stdin  []byte
		args   []string
		code   int
		stderr string
	}{
		{"missing path", "", nil, []string{"secret", "get"}, 2, "missing argument"},
		{"unknown command", "", nil, []string{"secret", "frobnicate"}, 2, "unknown command"},
		{"unknown flag", "", nil, []string{"secret", "get", "/x", "--nope"}, 2, "nope"},
		{"bad consistency", "", nil, []string{"secret", "get", "/x", "--consistency", "eventual"}, 2, "--consistency"},
		{"empty value", "", nil, []string{"secret", "put", "/e2e/app/db-password"}, 1, "InvalidArgument"},
		{"bad path", "", []byte("v"), []string{"secret", "create", "/bad//path", "--stdin"}, 1, "InvalidArgument"},
		{"not found", "", nil, []string{"secret", "get", "/e2e/none", "--consistency", "leader"}, 1, "NotFound"},
		{"bad token", "cfr_not-a-token", nil, []string{"secret", "list"}, 1, "Unauthenticated"},
		{"init again", "", nil, []string{"operator", "init"}, 1, "AlreadyExists"},
	}
	for _, tc := range cases {
		r := c.cli(t, s, tc.token, tc.stdin, tc.args...)
		if r.code != tc.code || !strings.Contains(string(r.stderr), tc.stderr) {
			t.Errorf("%s: want exit %d and %q on stderr, got %s", tc.name, tc.code, tc.stderr, r)
		}
	}
	// no token at all
	r := runCLI(t, cliEnv(s.url, ""), nil, "secret", "list")
	if r.code != 1 || !strings.Contains(string(r.stderr), "Unauthenticated") {
		t.Errorf("no token: want exit 1 Unauthenticated, got %s", r)
	}
}

// testFollowerReadYourWrites writes through one follower's HTTP API and
// reads on the other follower with min_index: the read must see the write.
func testFollowerReadYourWrites(t *testing.T, c *cluster, fs []*server, marker string) {
	w, rd := fs[0], fs[1]
	for i := range 20 {
		path := fmt.Sprintf("/e2e/ryw/s%02d", i)
		val := []byte(fmt.Sprintf("%s-ryw-%d", marker, i))
		var cr apitypes.CreateSecretResponse
		r := mustPost(t, w.url, c.token, "createSecret", apitypes.CreateSecretRequest{Path: path, Value: val}, &cr)
		if cr.Index == 0 || cr.Version != 1 {
			t.Fatalf("createSecret via follower %s: %s", w.name, r)
		}
		if cc := r.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("createSecret: Cache-Control %q, want no-store", cc)
		}
		var gv apitypes.GetSecretValueResponse
		r = post(t, rd.url, c.token, "getSecretValue", apitypes.GetSecretValueRequest{Path: path, ReadOptions: apitypes.ReadOptions{MinIndex: cr.Index}}, &gv)
		if r.status != http.StatusOK {
			t.Fatalf("getSecretValue on %s with min_index %d: %s", rd.name, cr.Index, r)
		}
		if !bytes.Equal(gv.Value, val) || gv.Version != 1 || gv.Index < cr.Index {
			t.Fatalf("getSecretValue on %s with min_index %d: value %q version %d index %d", rd.name, cr.Index, gv.Value, gv.Version, gv.Index)
		}
		if cc := r.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("getSecretValue: Cache-Control %q, want no-store", cc)
		}
		// and a new version written on the reader is seen on the writer
		var pv apitypes.PutSecretValueResponse
		mustPost(t, rd.url, c.token, "putSecretValue", apitypes.PutSecretValueRequest{Path: path, Value: append(val, '2')}, &pv)
		mustPost(t, w.url, c.token, "getSecretValue", apitypes.GetSecretValueRequest{Path: path, ReadOptions: apitypes.ReadOptions{MinIndex: pv.Index}}, &gv)
		if gv.Version != 2 || !bytes.Equal(gv.Value, append(val, '2')) {
			t.Fatalf("getSecretValue on %s with min_index %d: version %d value %q", w.name, pv.Index, gv.Version, gv.Value)
		}
	}
	// a min_index far ahead of the log is Unavailable after the wait, not a hang
	r := post(t, rd.url, c.token, "getSecretValue", map[string]any{"path": "/e2e/ryw/s00", "min_index": uint64(1) << 60}, nil)
	if r.status != http.StatusServiceUnavailable || r.errorCode() != "Unavailable" {
		t.Errorf("min_index far ahead: want 503 Unavailable, got %s", r)
	}
}

func testNodeList(t *testing.T, c *cluster, s *server) {
	r := c.mustCLI(t, s, nil, "node", "list")
	if n := strings.Count(string(r.stdout), " voter "); n != 3 {
		t.Errorf("node list: %d voters in\n%s", n, r.stdout)
	}
	r = c.mustCLI(t, s, nil, "node", "list", "--json")
	var cl apitypes.ClusterResponse
	if err := json.Unmarshal(r.stdout, &cl); err != nil {
		t.Fatalf("node list --json: %v\n%s", err, r)
	}
	leaders := 0
	ids := map[string]bool{}
	for _, m := range cl.Members {
		ids[m.NodeID] = true
		if m.Suffrage != "voter" {
			t.Errorf("node list: %s is %s, want voter", m.NodeID, m.Suffrage)
		}
		if m.Leader {
			leaders++
		}
		var want *server
		for _, n := range c.nodes {
			if n.name == m.NodeID {
				want = n
			}
		}
		if want == nil || m.HTTPAddr != want.httpAddr || m.ClusterAddr != want.clusterAddr {
			t.Errorf("node list: member %+v does not match a started node", m)
		}
	}
	if len(cl.Members) != 3 || len(ids) != 3 || leaders != 1 {
		t.Errorf("node list --json: %d members (%d ids), %d leaders: %+v", len(cl.Members), len(ids), leaders, cl.Members)
	}
	// a non-admin token is refused
	tok := createToken(t, c, s, "reader", "secrets-reader")
	if r := c.cli(t, s, tok, nil, "node", "list"); r.code != 1 || !strings.Contains(string(r.stderr), "PermissionDenied") {
		t.Errorf("node list without admin: want PermissionDenied, got %s", r)
	}
}

// testClusterActionsForwarded: cluster changes sent to a follower are
// forwarded to the leader like every other write (SPEC §2 Consistency), so
// `coffer node remove|transfer-leadership` work against any node. Unknown
// node ids make them harmless here: the leader answers NotFound.
func testClusterActionsForwarded(t *testing.T, c *cluster, fs []*server) {
	for _, s := range fs {
		for _, args := range [][]string{
			{"node", "remove", "no-such-node"},
			{"node", "transfer-leadership", "no-such-node"},
		} {
			r := c.cli(t, s, "", nil, args...)
			if r.code != 1 || !strings.Contains(string(r.stderr), "NotFound") {
				t.Errorf("on follower %s: want the leader's NotFound, got %s", s.name, r)
			}
		}
	}
	// the cluster is unchanged
	if l := c.waitVoters(clusterFormTimeout); l == nil {
		t.Error("no leader")
	}
}

// createToken creates a token with the given policies through the CLI.
func createToken(t *testing.T, c *cluster, s *server, name string, policies ...string) string {
	t.Helper()
	args := []string{"acl", "token", "create", "--name", name, "--json"}
	for _, p := range policies {
		args = append(args, "--policy", p)
	}
	r := c.mustCLI(t, s, nil, args...)
	var ct apitypes.CreateTokenResponse
	if err := json.Unmarshal(r.stdout, &ct); err != nil || ct.Token == "" {
		t.Fatalf("acl token create --json: %v\n%s", err, r)
	}
	// tokens are checked in the node's applied state (no min_index for auth)
	if !waitFor(startTimeout, func() bool { h, st := s.health(); return st == http.StatusOK && h.AppliedIndex >= ct.Index }) {
		t.Fatalf("%s did not apply index %d", s.name, ct.Index)
	}
	return ct.Token
}

func testAuditEveryNode(t *testing.T, c *cluster) {
	// a final write, then every node verifies the chain once it has it
	var pv apitypes.PutSecretValueResponse
	mustPost(t, c.nodes[0].url, c.token, "putSecretValue", apitypes.PutSecretValueRequest{Path: "/e2e/ryw/s00", Value: []byte("x")}, &pv)
	for _, s := range c.nodes {
		r := c.cli(t, s, "", nil, "audit", "verify", "--min-index", fmt.Sprint(pv.Index))
		if r.code != 0 || !strings.HasPrefix(string(r.stdout), "OK: ") {
			t.Errorf("audit verify on %s: %s", s.name, r)
		}
		r = c.mustCLI(t, s, nil, "audit", "verify", "--json", "--min-index", fmt.Sprint(pv.Index))
		var v apitypes.VerifyAuditResponse
		if err := json.Unmarshal(r.stdout, &v); err != nil || !v.OK || v.Checked < 50 || v.FirstBrokenSeq != 0 {
			t.Errorf("audit verify --json on %s: %+v (%v)", s.name, v, err)
		}
	}
	// reads are audited too, through the log: the entries are on every node
	r := c.mustCLI(t, c.nodes[2], nil, "audit", "query", "--action", "secrets.get_value", "--path-prefix", "/e2e/app/", "--json", "--consistency", "leader")
	var q apitypes.QueryAuditResponse
	if err := json.Unmarshal(r.stdout, &q); err != nil || len(q.Entries) == 0 {
		t.Fatalf("audit query --json: %v, %d entries\n%s", err, len(q.Entries), r)
	}
	for _, e := range q.Entries {
		if e.Action != "secrets.get_value" || !strings.HasPrefix(e.Path, "/e2e/app/") || e.Hash == "" {
			t.Errorf("audit query returned %+v", e)
			break
		}
	}
	// Gone reads were audited as errors
	r = c.mustCLI(t, c.nodes[1], nil, "audit", "query", "--action", "secrets.get_value", "--path-prefix", "/e2e/app/db-password", "--json", "--consistency", "leader")
	if !strings.Contains(string(r.stdout), `"Gone"`) {
		t.Errorf("audit query: no entry of the Gone reads\n%.2000s", r.stdout)
	}
	// every node's --audit-file holds JSON lines
	for _, s := range c.nodes {
		b, err := os.ReadFile(s.auditFile)
		if err != nil {
			t.Errorf("%s audit file: %v", s.name, err)
			continue
		}
		lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
		var e apitypes.AuditEntry
		if len(lines) < 10 || json.Unmarshal(lines[0], &e) != nil || e.Seq == 0 {
			t.Errorf("%s audit file: %d lines, first %q", s.name, len(lines), lines[0])
		}
	}
}

func testSnapshotSave(t *testing.T, c *cluster, s *server, marker string) {
	file := filepath.Join(t.TempDir(), "coffer.snap")
	r := c.mustCLI(t, s, nil, "snapshot", "save", file)
	if !strings.Contains(string(r.stdout), "Saved snapshot to "+file) {
		t.Errorf("snapshot save: %s", r)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatalf("snapshot save: %v", err)
	}
	if fi.Size() < 100 || fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot file: %d bytes, mode %v", fi.Size(), fi.Mode().Perm())
	}
	if hits := filesContaining(t, []byte(marker), file); len(hits) > 0 {
		t.Errorf("the snapshot file holds a plaintext value")
	}
	// the directory holds no temp file left behind
	entries, _ := os.ReadDir(filepath.Dir(file))
	if len(entries) != 1 {
		t.Errorf("snapshot save left %d files in the directory", len(entries))
	}
}

func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// `coffer bench` runs its workloads against the cluster's processes and
// reports them as JSON, errors by code included.
func testBenchCLI(t *testing.T, c *cluster, leader *server, fs []*server) {
	nodes := leader.url + "," + fs[0].url + "," + fs[1].url
	for _, args := range [][]string{
		{"--workload", "put", "--nodes", nodes},
		{"--workload", "get", "--nodes", fs[0].url + "," + fs[1].url},
		{"--workload", "mixed", "--ratio", "0.5", "--consistency", "leader", "--nodes", nodes},
	} {
		r := c.cli(t, leader, "", nil, append([]string{"bench", "--json", "--duration", "300ms", "--warmup", "100ms",
			"--concurrency", "4", "--keys", "10", "--prefix", "/e2e-bench"}, args...)...)
		var res struct {
			Ops    int64            `json:"ops"`
			P99Ms  float64          `json:"p99_ms"`
			Errors map[string]int64 `json:"errors"`
		}
		if r.code != 0 || json.Unmarshal(r.stdout, &res) != nil || res.Ops == 0 || res.P99Ms <= 0 || len(res.Errors) > 0 {
			t.Fatalf("%v\nparsed %+v", r, res)
		}
	}
	// --target picks the followers, or the leader, among the listed nodes.
	for target, want := range map[string][]string{"followers": {fs[0].url, fs[1].url}, "leader": {leader.url}} {
		r := c.cli(t, leader, "", nil, "bench", "--json", "--prepare=false", "--duration", "200ms", "--warmup", "0s", "--concurrency", "2",
			"--workload", "get", "--keys", "10", "--prefix", "/e2e-bench", "--nodes", nodes, "--target", target)
		var res struct {
			Targets []string `json:"targets"`
		}
		if r.code != 0 || json.Unmarshal(r.stdout, &res) != nil {
			t.Fatalf("--target %s: %v", target, r)
		}
		slices.Sort(res.Targets)
		slices.Sort(want)
		if !slices.Equal(res.Targets, want) {
			t.Fatalf("--target %s ran against %v, want %v", target, res.Targets, want)
		}
	}
	if r := c.cli(t, leader, "", nil, "bench", "--target", "everyone"); r.code != 2 {
		t.Fatalf("a bad --target: %v", r)
	}
	r := c.cli(t, leader, "cfr_wrong", nil, "bench", "--json", "--prepare=false", "--duration", "200ms", "--warmup", "0s", "--concurrency", "2", "--workload", "get", "--prefix", "/e2e-bench")
	if r.code != 0 || !strings.Contains(string(r.stdout), `"Unauthenticated"`) {
		t.Fatalf("with a wrong token: %v", r)
	}
	if r := c.cli(t, leader, "", nil, "bench", "--workload", "delete-everything"); r.code == 0 || !strings.Contains(string(r.stderr), "unknown workload") {
		t.Fatalf("an unknown workload: %v", r)
	}
}

package testcluster_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/internal/testcluster"
)

// tcNeedle is one byte string that must not be found, with a name for the
// failure message.
type tcNeedle struct {
	name string
	b    []byte
}

// tcEncodings returns secret and every form it could take on disk that we
// search for: raw, hex, and base64 (standard and URL alphabets, with or
// without padding) at the three alignments. For base64 the secret is encoded
// after 0, 1 and 2 bytes of prefix and only the part that depends on the
// secret's bytes alone (whole 3-byte groups) is kept, so it matches whatever
// surrounds the secret in the encoded data.
func tcEncodings(name string, secret []byte) []tcNeedle {
	out := []tcNeedle{
		{name + " (raw)", secret},
		{name + " (hex)", []byte(hex.EncodeToString(secret))},
		{name + " (HEX)", []byte(strings.ToUpper(hex.EncodeToString(secret)))},
	}
	for _, enc := range []struct {
		name string
		e    *base64.Encoding
	}{{"std", base64.RawStdEncoding}, {"url", base64.RawURLEncoding}} {
		for k := 0; k < 3; k++ {
			in := append(bytes.Repeat([]byte{0xA5}, k), secret...)
			s := enc.e.EncodeToString(in)
			from := 4 * ((k + 2) / 3)         // first whole group of secret bytes
			to := 4 * ((k + len(secret)) / 3) // end of the last whole group
			if to-from < 8 {
				continue // too short to be a meaningful needle
			}
			out = append(out, tcNeedle{fmt.Sprintf("%s (base64 %s, offset %d)", name, enc.name, k), []byte(s[from:to])})
		}
	}
	return out
}

// tcFinding is a needle found in a file.
type tcFinding struct{ file, needle string }

// tcSearchTree reads every regular file under root and reports every needle
// found in any of them; it also returns the files it searched.
func tcSearchTree(t *testing.T, root string, needles []tcNeedle) (found []tcFinding, files []string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files = append(files, rel)
		for _, n := range needles {
			if bytes.Contains(data, n.b) {
				found = append(found, tcFinding{rel, n.name})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	sort.Strings(files)
	return found, files
}

// TestClusterLeakSearchFindsPlantedMarkers proves the search used below can
// fail: a marker written in each searched form into a file is found.
func TestClusterLeakSearchFindsPlantedMarkers(t *testing.T) {
	dir := t.TempDir()
	marker := []byte("MARKER-" + tcRandHex(t, 16))
	forms := map[string]string{
		"raw":        string(marker),
		"hex":        hex.EncodeToString(marker),
		"std-pad":    base64.StdEncoding.EncodeToString(marker),
		"url-nopad":  base64.RawURLEncoding.EncodeToString(marker),
		"std-off1":   base64.StdEncoding.EncodeToString(append([]byte{'x'}, marker...)),
		"std-off2":   base64.StdEncoding.EncodeToString(append([]byte("xy"), marker...)),
		"url-off1":   base64.URLEncoding.EncodeToString(append([]byte{0xff}, marker...)),
		"url-off2+s": base64.RawURLEncoding.EncodeToString(append(append([]byte{0xfe, 0xfd}, marker...), "suffix"...)),
	}
	for name, s := range forms {
		sub := filepath.Join(dir, name)
		if err := os.MkdirAll(sub, 0o700); err != nil {
			t.Fatal(err)
		}
		content := append(append([]byte("some binary \x00\x01 junk before "), s...), "\n and after"...)
		if err := os.WriteFile(filepath.Join(sub, "data.bin"), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A file with nothing in it must not match.
	if err := os.WriteFile(filepath.Join(dir, "clean.txt"), []byte("MARKER-but not the one"), 0o600); err != nil {
		t.Fatal(err)
	}
	found, files := tcSearchTree(t, dir, tcEncodings("marker", marker))
	if len(files) != len(forms)+1 {
		t.Fatalf("searched %d files, want %d: %v", len(files), len(forms)+1, files)
	}
	hit := map[string]bool{}
	for _, f := range found {
		if f.file == "clean.txt" {
			t.Fatalf("false positive in clean.txt: %s", f.needle)
		}
		hit[filepath.Dir(f.file)] = true
	}
	for name := range forms {
		if !hit[name] {
			t.Errorf("marker written as %s was not found", name)
		}
	}
}

// TestClusterNoPlaintextOnDisk: no value, token or root key reaches any file
// a node writes (Raft log, snapshots, audit store, log, audit file) nor a
// snapshot taken through the API (SPEC §5).
func TestClusterNoPlaintextOnDisk(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := tcCtx(t, 90*time.Second)
	f := c.Followers()
	l := c.Leader()
	fa, fb, lc := c.Client(f[0]), c.Client(f[1]), c.Client(l)
	mk := func() string { return "MARKER-" + tcRandHex(t, 16) }
	var secrets []tcNeedle
	plant := func(name, v string) []byte {
		secrets = append(secrets, tcEncodings(name, []byte(v))...)
		return []byte(v)
	}

	// Create (through a follower and the leader), put, CAS put, reads.
	m1, m2, m3, m4 := mk(), mk(), mk(), mk()
	if _, err := fa.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: "/leak/app/a", Value: plant("created value", m1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: "/leak/app/a", Value: plant("put value", m2)}); err != nil {
		t.Fatal(err)
	}
	if _, err := fb.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: "/leak/app/a", Value: plant("CAS put value", m3), ExpectedVersion: tcU64(2)}); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: "/leak/app/b", Value: plant("value destroyed later", m4)}); err != nil {
		t.Fatal(err)
	}
	// Failed writes carrying a value: a stale CAS put, a put to a missing
	// secret, a malformed request.
	if _, err := fa.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: "/leak/app/a", Value: plant("rejected CAS value", mk()), ExpectedVersion: tcU64(1)}); err == nil {
		t.Fatal("stale CAS put succeeded")
	}
	if _, err := fb.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: "/leak/app/missing", Value: plant("value for a missing secret", mk())}); err == nil {
		t.Fatal("put to a missing secret succeeded")
	}
	bad := mk()
	plant("value in a malformed request", bad)
	if status, body := tcRawPost(ctx, t, c.Nodes[f[0]].URL, c.RootToken, "putSecretValue",
		[]byte(fmt.Sprintf(`{"path":"/leak/app/a","value":%q,"unknown":%q}`, base64.StdEncoding.EncodeToString([]byte(bad)), bad))); status != 400 || bytes.Contains(body, []byte(bad)) {
		t.Fatalf("malformed put: status %d body %s", status, body)
	}
	// A generated value (alphanumeric, so it can be searched for).
	gen, err := fb.GenerateSecret(ctx, &apitypes.GenerateSecretRequest{Path: "/leak/app/gen", Length: 48, Charset: apitypes.CharsetAlphanumeric, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	gv, err := tcGet(ctx, t, fa, "/leak/app/gen", 0, gen.Index)
	if err != nil {
		t.Fatal(err)
	}
	plant("generated value", string(gv.Value))
	// Reads: get and batch get on every node.
	min := tcLeaderIndex(c)
	for _, cl := range tcAllClients(c) {
		tcMustValue(ctx, t, cl, "/leak/app/a", 1, min, m1)
		tcMustValue(ctx, t, cl, "/leak/app/a", 0, min, m3)
		b, err := cl.BatchGetSecretValue(ctx, &apitypes.BatchGetSecretValueRequest{Paths: []string{"/leak/app/a", "/leak/app/b", "/leak/app/gen", "/leak/app/missing"}, ReadOptions: apitypes.ReadOptions{MinIndex: min}})
		if err != nil || len(b.Values) != 3 {
			t.Fatalf("batch get: %+v %v", b, err)
		}
	}
	// Destroy one.
	if _, err := fa.DestroySecretVersion(ctx, &apitypes.DestroySecretVersionRequest{Path: "/leak/app/b", Version: 1}); err != nil {
		t.Fatal(err)
	}
	// Tokens: create two, use them on every node, revoke one.
	var tokens []tcNeedle
	tokens = append(tokens, tcEncodings("root token", []byte(c.RootToken))...)
	var toks []*apitypes.CreateTokenResponse
	for i, pol := range []string{"admin", "secrets-reader"} {
		tk, err := c.Client(f[i]).CreateToken(ctx, &apitypes.CreateTokenRequest{Name: fmt.Sprintf("leak-%d", i), Policies: []string{pol}})
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tk)
		tokens = append(tokens, tcEncodings(fmt.Sprintf("token %d", i), []byte(tk.Token))...)
	}
	for i := range c.Nodes {
		for _, tk := range toks {
			if _, err := c.ClientWithToken(i, tk.Token).Whoami(ctx, &apitypes.WhoamiRequest{}); err != nil {
				t.Fatalf("whoami on node %d: %v", i, err)
			}
		}
		if _, err := tcGet(ctx, t, c.ClientWithToken(i, toks[1].Token), "/leak/app/a", 0, 0); err != nil {
			t.Fatalf("reader token on node %d: %v", i, err)
		}
	}
	if _, err := lc.RevokeToken(ctx, &apitypes.RevokeTokenRequest{Accessor: toks[1].Accessor}); err != nil {
		t.Fatal(err)
	}
	// An unknown token sent to every node (a failed authentication).
	for i := range c.Nodes {
		_, _ = c.ClientWithToken(i, toks[1].Token).Whoami(ctx, &apitypes.WhoamiRequest{})
	}

	// A snapshot through the API, into a file inside the cluster dir, and a
	// Raft snapshot on every node so snapshots/ is searched too.
	base := filepath.Dir(c.Nodes[0].Dir)
	snapFile := filepath.Join(base, "api.snap")
	snap := tcSnapshot(ctx, t, fb)
	if err := os.WriteFile(snapFile, snap, 0o600); err != nil {
		t.Fatal(err)
	}
	last := tcLeaderIndex(c)
	c.Eventually(10*time.Second, "every node to apply everything", func() bool {
		for _, tn := range c.Nodes {
			if tn.Node().State().Index < last {
				return false
			}
		}
		return true
	})
	for i, tn := range c.Nodes {
		if err := tn.Node().TakeSnapshot(); err != nil {
			t.Fatalf("raft snapshot on node %d: %v", i, err)
		}
	}
	// Stop everything so every file is flushed and closed.
	for i := range c.Nodes {
		c.Kill(i)
	}

	rootKey, err := base64.StdEncoding.DecodeString(strings.TrimSpace(c.RootKeyLine))
	if err != nil || len(rootKey) != 32 {
		t.Fatalf("root key line: %v (%d bytes)", err, len(rootKey))
	}
	needles := append(append(secrets, tokens...), tcEncodings("root key", rootKey)...)
	needles = append(needles, tcNeedle{"root key line", []byte(strings.TrimSpace(c.RootKeyLine))})

	found, files := tcSearchTree(t, base, needles)
	// The search covered what it must cover.
	want := []string{"api.snap"}
	for _, tn := range c.Nodes {
		for _, p := range []string{"data/wal/wal-meta.db", "data/audit.db", "node.log", "audit.jsonl"} {
			want = append(want, filepath.Join(filepath.Base(tn.Dir), p))
		}
	}
	for _, w := range want {
		if i := sort.SearchStrings(files, w); i == len(files) || files[i] != w {
			t.Errorf("expected file %s was not searched (searched: %v)", w, files)
		}
	}
	snaps, segments := 0, 0
	for _, f := range files {
		if strings.Contains(f, "/snapshots/") && strings.HasSuffix(f, "state.bin") {
			snaps++
		}
		if strings.Contains(f, "/data/wal/") && strings.HasSuffix(f, ".wal") {
			segments++
		}
	}
	if segments < len(c.Nodes) {
		t.Errorf("found %d raft log segment files, want at least %d (files: %v)", segments, len(c.Nodes), files)
	}
	if snaps < len(c.Nodes) {
		t.Errorf("found %d raft snapshot files, want at least %d (files: %v)", snaps, len(c.Nodes), files)
	}
	for _, fnd := range found {
		t.Errorf("%s found in %s", fnd.needle, fnd.file)
	}

	// The same search over the same tree does find a planted leak.
	canary := filepath.Join(base, c.Nodes[1].ID, "data", "canary.bin")
	leak := append([]byte("\x00{\"v\":\""), base64.StdEncoding.EncodeToString(append([]byte("z"), m1...))...)
	leak = append(leak, c.RootToken...)
	if err := os.WriteFile(canary, leak, 0o600); err != nil {
		t.Fatal(err)
	}
	found, _ = tcSearchTree(t, base, needles)
	var inCanary []string
	for _, fnd := range found {
		if !strings.HasSuffix(fnd.file, "canary.bin") {
			t.Errorf("second search: %s found in %s", fnd.needle, fnd.file)
		}
		inCanary = append(inCanary, fnd.needle)
	}
	if !strings.Contains(strings.Join(inCanary, ","), "created value (base64 std, offset 1)") || !strings.Contains(strings.Join(inCanary, ","), "root token (raw)") {
		t.Fatalf("the search missed leaks planted in %s: found only %v", canary, inCanary)
	}
}

package e2e

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
)

// TestDevServer: `coffer server -dev` prints a root token and serves with it.
func TestDevServer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := freeAddr(t)
	s := newServer(t, "dev", []string{"-dev", "--http-addr", addr}, filepath.Join(dir, "dev.log"))
	s.url = "http://" + addr
	s.start()

	tokenRE := regexp.MustCompile(`Root token: (\S+)`)
	var token string
	ok := waitFor(startTimeout, func() bool {
		if m := tokenRE.FindStringSubmatch(s.stdout.String()); m != nil {
			token = m[1]
			return true
		}
		return !s.running()
	})
	if !ok || token == "" {
		t.Fatalf("server -dev printed no root token within %v (running %v); stdout:\n%s\nlog:\n%s",
			startTimeout, s.running(), s.stdout.String(), tail(s.logPath, 30))
	}
	out := s.stdout.String()
	for _, want := range []string{"export COFFER_ADDR=" + s.url, "export COFFER_TOKEN=" + token} {
		if !strings.Contains(out, want) {
			t.Errorf("server -dev stdout lacks %q:\n%s", want, out)
		}
	}
	h := s.waitServing(startTimeout)
	if h.Role != "leader" || !h.Initialized {
		t.Errorf("dev node health: %+v", h)
	}

	env := cliEnv(s.url, token)
	val := []byte("dev value\x00\xff")
	if r := runCLI(t, env, val, "secret", "create", "/dev/x", "--stdin"); r.code != 0 {
		t.Fatalf("%s", r)
	}
	r := runCLI(t, env, nil, "secret", "get", "/dev/x")
	if r.code != 0 || !bytes.Equal(r.stdout, val) {
		t.Errorf("get on the dev node: %s", r)
	}
	if r := runCLI(t, env, nil, "audit", "verify"); r.code != 0 {
		t.Errorf("audit verify on the dev node: %s", r)
	}
	if r := runCLI(t, env, nil, "operator", "init"); r.code != 1 || !strings.Contains(string(r.stderr), "AlreadyExists") {
		t.Errorf("operator init on a dev node: want AlreadyExists, got %s", r)
	}

	if code := s.signal(syscall.SIGTERM); code != 0 {
		t.Errorf("dev node exit code %d after SIGTERM, want 0", code)
	}
	if _, status := s.health(); status != 0 {
		t.Errorf("dev node still answers after exit (HTTP %d)", status)
	}
}

// TestRootKeyChecks: a node refuses, with a clear message, to start without a
// root key, with an unreadable one, or with a wrong one over an existing data
// dir (which stays intact).
func TestRootKeyChecks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, keyB := filepath.Join(dir, "a.key"), filepath.Join(dir, "b.key")
	for _, k := range []string{keyA, keyB} {
		if r := runCLI(t, cleanEnv(), nil, "operator", "keygen", "--out", k); r.code != 0 {
			t.Fatalf("%s", r)
		}
	}
	if fi, err := os.Stat(keyA); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("keygen --out: %v, mode %v (want 0600)", err, fi.Mode().Perm())
	}
	if r := runCLI(t, cleanEnv(), nil, "operator", "keygen", "--out", keyA); r.code != 1 || !strings.Contains(string(r.stderr), "refusing to overwrite") {
		t.Errorf("keygen over an existing file: %s", r)
	}
	badKey := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(badKey, []byte("this is not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	httpAddr, clusterAddr, gossipAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	args := func(extra ...string) []string {
		return append([]string{"--node-id", "solo", "--data-dir", dataDir, "--http-addr", httpAddr,
			"--cluster-addr", clusterAddr, "--gossip-addr", gossipAddr, "--bootstrap"}, extra...)
	}
	node := func(name string, extra ...string) *server {
		s := newServer(t, name, args(extra...), filepath.Join(dir, name+".log"))
		s.url = "http://" + httpAddr
		return s
	}
	// refused runs: exit non-zero with a message naming the root key
	refused := func(s *server, wants ...string) {
		t.Helper()
		s.start()
		code := s.exited(exitTimeout)
		log := s.log()
		if code == 0 {
			t.Errorf("%s: exit code 0, want a failure\n%s", s.name, log)
		}
		for _, w := range wants {
			if !strings.Contains(strings.ToLower(log), strings.ToLower(w)) {
				t.Errorf("%s: output does not mention %q:\n%s", s.name, w, log)
			}
		}
	}

	refused(node("no-key"), "--root-key-file")
	refused(node("missing-key", "--root-key-file", filepath.Join(dir, "nope.key")), "nope.key")
	refused(node("bad-key", "--root-key-file", badKey), "root key")

	// a node with key A: init, write a secret, stop cleanly
	a := node("key-a", "--root-key-file", keyA)
	a.start()
	a.waitServing(startTimeout)
	if !waitFor(startTimeout, func() bool { h, st := a.health(); return st == http.StatusOK && h.Role == "leader" }) {
		t.Fatalf("single bootstrapped node did not become leader within %v", startTimeout)
	}
	r := runCLI(t, cliEnv(a.url, ""), nil, "operator", "init", "--json")
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	var init apitypes.InitResponse
	if err := jsonUnmarshal(r.stdout, &init); err != nil {
		t.Fatal(err)
	}
	env := cliEnv(a.url, init.RootToken)
	if r := runCLI(t, env, []byte("kept"), "secret", "create", "/keep", "--stdin"); r.code != 0 {
		t.Fatalf("%s", r)
	}
	if code := a.signal(syscall.SIGTERM); code != 0 {
		t.Errorf("node exit code %d after SIGTERM, want 0", code)
	}
	snapshot := dirDigest(t, dataDir)

	// key B over A's data dir: refused, data dir untouched
	refused(node("key-b", "--root-key-file", keyB), "root key")
	if after := dirDigest(t, dataDir); after != snapshot {
		t.Errorf("the refused start changed the data dir:\nbefore %s\nafter  %s", snapshot, after)
	}
	// a malformed key over the data dir: refused too
	refused(node("bad-key-over-data", "--root-key-file", badKey), "root key")

	// key A again: the node starts and the data is there
	a.start()
	a.waitServing(startTimeout)
	var got []byte
	ok := waitFor(startTimeout, func() bool {
		r := runCLI(t, env, nil, "secret", "get", "/keep")
		got = r.stdout
		return r.code == 0
	})
	if !ok || string(got) != "kept" {
		t.Errorf("after the refused starts, /keep reads %q (ok %v)", got, ok)
	}
	start := time.Now()
	if code := a.signal(syscall.SIGTERM); code != 0 {
		t.Errorf("node exit code %d after SIGTERM, want 0", code)
	}
	t.Logf("graceful stop took %v", time.Since(start).Round(time.Millisecond))
}

// dirDigest summarises a directory's files (names, sizes, modification
// times) to detect changes.
func dirDigest(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, path)
			b.WriteString(rel + ":" + fi.ModTime().UTC().Format(time.RFC3339Nano) + ":" + strconv.FormatInt(fi.Size(), 10) + " ")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

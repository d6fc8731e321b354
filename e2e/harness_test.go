package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/internal/testcluster"
)

// Deadlines. Every wait in this package polls against one of these; none
// sleeps a fixed time to synchronise.
const (
	clusterFormTimeout = 60 * time.Second // 3 voters: includes the 5 s stabilization period
	startTimeout       = 30 * time.Second // one node answering health
	exitTimeout        = 20 * time.Second // a process exiting after a signal or on its own
	cliTimeout         = 30 * time.Second // one CLI invocation
	httpTimeout        = 15 * time.Second // one HTTP request
	pollInterval       = 50 * time.Millisecond
)

// ---------------------------------------------------------------------------
// Ports

// freePort returns a free loopback port in 20000–31999 (the in-process
// cluster tests, another process, use 10000–19999).
func freePort(t testing.TB) int { return testcluster.FreePort(t, 20000, 12000) }

func freeAddr(t testing.TB) string { return "127.0.0.1:" + strconv.Itoa(freePort(t)) }

// ---------------------------------------------------------------------------
// Server processes

// server is one `coffer server` process; it can be stopped and started again
// with the same arguments (and so the same data dir).
type server struct {
	t       testing.TB
	name    string
	args    []string // after "server"
	logPath string
	url     string // http://host:port of the API

	httpAddr, clusterAddr, gossipAddr, dataDir, auditFile string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process has exited
	waitErr error
	stdout  *lockedBuffer // the current process's stdout (also in the log)
	starts  int
}

// newServer prepares (does not start) a server; the process is killed and,
// when the test failed, its log tail printed at cleanup.
func newServer(t testing.TB, name string, args []string, logPath string) *server {
	s := &server{t: t, name: name, args: args, logPath: logPath}
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("---- last lines of %s (%s) ----\n%s", name, logPath, tail(logPath, 40))
		}
	})
	return s
}

// start starts the process; it does not wait for it to serve.
func (s *server) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil && !closed(s.done) {
		s.t.Fatalf("%s: start while running", s.name)
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	s.starts++
	fmt.Fprintf(logf, "==== e2e: start #%d of %s: coffer server %s\n", s.starts, s.name, strings.Join(s.args, " "))
	cmd := exec.Command(cofferBin, append([]string{"server"}, s.args...)...)
	cmd.Env = cleanEnv()
	s.stdout = &lockedBuffer{}
	cmd.Stdout = io.MultiWriter(logf, s.stdout)
	cmd.Stderr = logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.t.Fatalf("%s: start: %v", s.name, err)
	}
	done := make(chan struct{})
	s.cmd, s.done = cmd, done
	go func() {
		err := cmd.Wait()
		logf.Close()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(done)
	}()
}

func (s *server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil && !closed(s.done)
}

func (s *server) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// signal sends sig to the running process and waits (up to exitTimeout) for
// it to exit, returning its exit code (-1 when killed by a signal).
func (s *server) signal(sig syscall.Signal) int {
	s.t.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		s.t.Fatalf("%s: not started", s.name)
	}
	if !closed(done) {
		_ = cmd.Process.Signal(sig)
	}
	select {
	case <-done:
	case <-time.After(exitTimeout):
		_ = cmd.Process.Kill()
		<-done
		s.t.Fatalf("%s: still running %v after %v; killed", s.name, sig, exitTimeout)
	}
	return cmd.ProcessState.ExitCode()
}

// kill SIGKILLs the process if it runs and waits for it (cleanup; never
// fails the test).
func (s *server) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	if !closed(done) {
		_ = cmd.Process.Kill()
	}
	select {
	case <-done:
	case <-time.After(exitTimeout):
	}
}

// exited waits up to d for the process to exit on its own and returns its
// exit code, or fails.
func (s *server) exited(d time.Duration) int {
	s.t.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	case <-time.After(d):
		s.t.Fatalf("%s: still running after %v, expected it to exit", s.name, d)
		return 0
	}
}

// log returns the node's whole log file.
func (s *server) log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// health asks the node for its health; status 0 when it does not answer.
func (s *server) health() (apitypes.Health, int) {
	var h apitypes.Health
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/v1/sys/health", nil)
	resp, err := httpClient.Do(req)
	if err != nil {
		return h, 0
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&h)
	return h, resp.StatusCode
}

// waitServing waits until the node answers health with 200, failing early
// when the process exits.
func (s *server) waitServing(d time.Duration) apitypes.Health {
	s.t.Helper()
	var last apitypes.Health
	var status int
	ok := waitFor(d, func() bool {
		if !s.running() {
			return true
		}
		last, status = s.health()
		return status == http.StatusOK
	})
	if !s.running() {
		s.t.Fatalf("%s exited while starting:\n%s", s.name, tail(s.logPath, 30))
	}
	if !ok {
		s.t.Fatalf("%s not serving after %v (last health HTTP %d: %+v)", s.name, d, status, last)
	}
	return last
}

// ---------------------------------------------------------------------------
// Clusters

// cluster is a set of server processes sharing one root key file.
type cluster struct {
	t       testing.TB
	dir     string
	keyFile string
	nodes   []*server
	token   string // root token after init
}

// newCluster starts an n-node cluster on free loopback ports (node 0
// bootstraps, the others join it by gossip), waits until every node is a
// voter that knows the leader, and runs `coffer operator init` through the
// CLI.
func newCluster(t testing.TB, n int) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir()}
	c.keyFile = filepath.Join(c.dir, "root.key")
	if r := runCLI(t, cliEnv("", ""), nil, "operator", "keygen", "--out", c.keyFile); r.code != 0 {
		t.Fatalf("operator keygen: %s", r)
	}
	for i := range n {
		c.nodes = append(c.nodes, c.newNode(i))
	}
	for i := range n {
		if i == 0 {
			c.nodes[i].args = append(c.nodes[i].args, "--bootstrap")
		} else {
			c.nodes[i].args = append(c.nodes[i].args, "--join", c.nodes[0].gossipAddr)
		}
		c.nodes[i].start()
	}
	c.waitVoters(clusterFormTimeout)
	r := c.cli(t, c.nodes[0], "", nil, "operator", "init", "--json")
	if r.code != 0 {
		t.Fatalf("operator init: %s", r)
	}
	var init apitypes.InitResponse
	if err := json.Unmarshal(r.stdout, &init); err != nil || !strings.HasPrefix(init.RootToken, "cfr_") {
		t.Fatalf("operator init --json: unexpected answer %q (%v)", r.stdout, err)
	}
	if !strings.Contains(string(r.stderr), "shown only this once") {
		t.Errorf("operator init: expected the shown-once warning on stderr, got %q", r.stderr)
	}
	c.token = init.RootToken
	// Tokens are checked against each node's applied state: wait until every
	// node has applied the init entry before using the token anywhere.
	for _, s := range c.nodes {
		var h apitypes.Health
		if !waitFor(startTimeout, func() bool {
			var status int
			h, status = s.health()
			return status == http.StatusOK && h.Initialized && h.AppliedIndex >= init.Index
		}) {
			t.Fatalf("%s did not apply the init entry (index %d) within %v: %+v", s.name, init.Index, startTimeout, h)
		}
	}
	return c
}

func (c *cluster) newNode(i int) *server {
	name := fmt.Sprintf("n%d", i+1)
	httpAddr, clusterAddr, gossipAddr := freeAddr(c.t), freeAddr(c.t), freeAddr(c.t)
	dataDir := filepath.Join(c.dir, name)
	auditFile := filepath.Join(c.dir, name+".audit.jsonl")
	args := []string{
		"--node-id", name,
		"--data-dir", dataDir,
		"--http-addr", httpAddr,
		"--cluster-addr", clusterAddr,
		"--gossip-addr", gossipAddr,
		"--root-key-file", c.keyFile,
		"--audit-file", auditFile,
		"--log-level", "debug",
	}
	s := newServer(c.t, name, args, filepath.Join(c.dir, name+".log"))
	s.httpAddr, s.clusterAddr, s.gossipAddr = httpAddr, clusterAddr, gossipAddr
	s.dataDir, s.auditFile = dataDir, auditFile
	s.url = "http://" + httpAddr
	return s
}

// waitVoters waits until every running node serves, is a voter (leader or
// follower) and names the same leader; it returns the leader.
func (c *cluster) waitVoters(d time.Duration) *server {
	c.t.Helper()
	var why string
	var leader *server
	ok := waitFor(d, func() bool {
		leader, why = nil, ""
		leaderID := ""
		for _, s := range c.nodes {
			if !s.running() {
				continue
			}
			h, status := s.health()
			switch {
			case status != http.StatusOK:
				why = fmt.Sprintf("%s: health HTTP %d", s.name, status)
				return false
			case h.Role != "leader" && h.Role != "follower":
				why = fmt.Sprintf("%s: role %q", s.name, h.Role)
				return false
			case h.LeaderID == "" || leaderID != "" && h.LeaderID != leaderID:
				why = fmt.Sprintf("%s: leader %q (others: %q)", s.name, h.LeaderID, leaderID)
				return false
			}
			leaderID = h.LeaderID
			if h.Role == "leader" {
				leader = s
			}
		}
		return leader != nil && leader.name == leaderID
	})
	for _, s := range c.nodes {
		if s.starts > 0 && !s.running() && !ok {
			c.t.Logf("%s is not running:\n%s", s.name, tail(s.logPath, 20))
		}
	}
	if !ok {
		c.t.Fatalf("cluster not formed within %v: %s", d, why)
	}
	return leader
}

// leader returns the node that says it leads (nil when none does).
func (c *cluster) leader() *server {
	for _, s := range c.nodes {
		if s.running() {
			if h, status := s.health(); status == http.StatusOK && h.Role == "leader" {
				return s
			}
		}
	}
	return nil
}

// followers returns the running nodes other than leader.
func (c *cluster) followers(leader *server) []*server {
	var out []*server
	for _, s := range c.nodes {
		if s != leader && s.running() {
			out = append(out, s)
		}
	}
	return out
}

// cli runs the coffer CLI against node s with the root token (or token when
// given).
func (c *cluster) cli(t testing.TB, s *server, token string, stdin []byte, args ...string) cliResult {
	t.Helper()
	if token == "" {
		token = c.token
	}
	return runCLI(t, cliEnv(s.url, token), stdin, args...)
}

// ---------------------------------------------------------------------------
// CLI

type cliResult struct {
	args           []string
	stdout, stderr []byte
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("`coffer %s` exit %d\nstdout: %q\nstderr: %q", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// cleanEnv is the environment without any COFFER_* variable of the caller
// (the server reads its flags from COFFER_<FLAG>).
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COFFER_") {
			env = append(env, kv)
		}
	}
	return env
}

func cliEnv(addr, token string) []string {
	env := cleanEnv()
	if addr != "" {
		env = append(env, "COFFER_ADDR="+addr)
	}
	if token != "" {
		env = append(env, "COFFER_TOKEN="+token)
	}
	return env
}

// runCLI execs the binary with args and stdin (nil: empty) and returns
// stdout, stderr and the exit code.
func runCLI(t testing.TB, env []string, stdin []byte, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cofferBin, args...)
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliResult{args: args, stdout: stdout.Bytes(), stderr: stderr.Bytes()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		t.Fatalf("`coffer %s` did not finish within %v", strings.Join(args, " "), cliTimeout)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("`coffer %s`: %v", strings.Join(args, " "), err)
	}
	return r
}

// mustCLI runs the CLI and fails unless it exits 0.
func (c *cluster) mustCLI(t testing.TB, s *server, stdin []byte, args ...string) cliResult {
	t.Helper()
	r := c.cli(t, s, "", stdin, args...)
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	return r
}

// ---------------------------------------------------------------------------
// HTTP

var httpClient = &http.Client{Timeout: httpTimeout}

// apiResult is one HTTP API answer.
type apiResult struct {
	status int
	body   []byte
	header http.Header
}

// errorCode is the error code of an error answer ("" when there is none).
func (r apiResult) errorCode() string {
	var e apitypes.ErrorBody
	if json.Unmarshal(r.body, &e) != nil {
		return ""
	}
	return e.Error.Code
}

func (r apiResult) String() string {
	b := r.body
	if len(b) > 300 {
		b = append(b[:300:300], "..."...)
	}
	return fmt.Sprintf("HTTP %d %s", r.status, b)
}

// postRaw sends body as is to POST /v1/<action>; err only when there is no
// HTTP answer.
func postRaw(base, token, action string, body []byte) (apiResult, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/v1/"+action, bytes.NewReader(body))
	if err != nil {
		return apiResult{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return apiResult{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return apiResult{}, err
	}
	return apiResult{status: resp.StatusCode, body: data, header: resp.Header}, nil
}

// post marshals req, sends it, and (when out is not nil and the answer is
// 200) decodes the answer into out. It fails the test only when the node
// does not answer.
func post(t testing.TB, base, token, action string, req, out any) apiResult {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	r, err := postRaw(base, token, action, body)
	if err != nil {
		t.Fatalf("POST %s/v1/%s: %v", base, action, err)
	}
	if out != nil && r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, out); err != nil {
			t.Fatalf("POST %s/v1/%s: malformed answer %s: %v", base, action, r, err)
		}
	}
	return r
}

// mustPost is post that fails unless the answer is 200.
func mustPost(t testing.TB, base, token, action string, req, out any) apiResult {
	t.Helper()
	r := post(t, base, token, action, req, out)
	if r.status != http.StatusOK {
		t.Fatalf("POST %s/v1/%s: %s", base, action, r)
	}
	return r
}

// ---------------------------------------------------------------------------
// Helpers

// waitFor polls cond every pollInterval until it is true or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollInterval)
	}
}

func closed(ch chan struct{}) bool {
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// lockedBuffer is a bytes.Buffer safe for one writer and many readers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// filesContaining returns the files under the given roots (files or
// directories) whose bytes contain needle.
func filesContaining(t testing.TB, needle []byte, roots ...string) []string {
	t.Helper()
	var hits []string
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return nil
				}
				return err
			}
			if d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(b, needle) {
				hits = append(hits, path)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("scanning %s: %v", root, err)
		}
	}
	return hits
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

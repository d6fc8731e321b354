//go:build docker

package dockere2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/errs"
)

// Deadlines. Every wait polls against one of these.
const (
	upTimeout      = 4 * time.Minute  // compose up + three healthy nodes
	votersTimeout  = 60 * time.Second // three voters (5 s stabilization period)
	healthTimeout  = 2 * time.Minute  // one node serving after a start or restart
	leaderTimeout  = 30 * time.Second // a new leader after a kill
	cmdTimeout     = 2 * time.Minute  // one docker command
	downTimeout    = 5 * time.Minute  // compose down (stops, removes containers, network, volumes)
	requestTimeout = 10 * time.Second // one API request
	catchUpTimeout = 60 * time.Second // a healed or restarted node reaching an index
)

var services = []string{"coffer1", "coffer2", "coffer3"}

// Settings, resolved once by TestMain.
var (
	repoRoot    string
	composeFile string
	composeCmd  []string
	baseProject string
	deployDir   string
	caFile      string
	image       string
	cofferBin   string
	hostPorts   [3]int
)

func TestMain(m *testing.M) {
	if err := setup(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e/docker:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func setup() error {
	root, err := filepath.Abs("../..")
	if err != nil {
		return err
	}
	repoRoot = root
	composeFile = filepath.Join(root, "docker-compose.yml")
	if _, err := os.Stat(composeFile); err != nil {
		return err
	}
	if c := strings.Fields(os.Getenv("COFFER_COMPOSE")); len(c) > 0 {
		composeCmd = c
	} else if _, err := exec.LookPath("docker-compose"); err == nil {
		composeCmd = []string{"docker-compose"}
	} else {
		composeCmd = []string{"docker", "compose"}
	}
	baseProject = os.Getenv("COMPOSE_PROJECT_NAME")
	if baseProject == "" {
		baseProject = fmt.Sprintf("coffer-e2e-%d", os.Getpid())
	}
	deployDir = os.Getenv("COFFER_DEPLOY_DIR")
	if deployDir == "" {
		deployDir = filepath.Join(root, "deploy")
	} else if !filepath.IsAbs(deployDir) {
		deployDir = filepath.Join(root, deployDir)
	}
	// docker-compose.yml reads COFFER_DEPLOY_DIR relative to the repo root;
	// hand every compose command the absolute path.
	os.Setenv("COFFER_DEPLOY_DIR", deployDir)
	caFile = filepath.Join(deployDir, "tls", "ca.pem")
	for _, f := range []string{caFile, filepath.Join(deployDir, "root.key")} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%v (run `make docker` or e2e/docker/run.sh first)", err)
		}
	}
	image = os.Getenv("COFFER_IMAGE")
	if image == "" {
		image = "coffer:latest"
	}
	cofferBin = os.Getenv("COFFER_BIN")
	if cofferBin == "" {
		cofferBin = filepath.Join(root, "bin", "coffer")
	}
	if _, err := os.Stat(cofferBin); err != nil {
		return fmt.Errorf("%v (run `make docker` first)", err)
	}
	for i, def := range []int{7700, 7710, 7720} {
		hostPorts[i] = def
		if v := os.Getenv(fmt.Sprintf("COFFER%d_PORT", i+1)); v != "" {
			p, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("COFFER%d_PORT=%q: %v", i+1, v, err)
			}
			hostPorts[i] = p
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if out, err := run(ctx, nil, "docker", "image", "inspect", "--format", "{{.Id}}", image); err != nil {
		return fmt.Errorf("image %s: %v: %s (run `make docker` first)", image, err, out)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Commands

// run runs a command and returns its combined output.
func run(ctx context.Context, stdin []byte, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return out.String(), err
}

func docker(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := run(ctx, nil, "docker", args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

func compose(ctx context.Context, project string, args ...string) (string, error) {
	all := append(append(append([]string{}, composeCmd[1:]...), "-p", project, "-f", composeFile), args...)
	return run(ctx, nil, composeCmd[0], all...)
}

// ---------------------------------------------------------------------------
// The compose cluster

type cluster struct {
	t       *testing.T
	project string
	token   string
	nodes   [3]*cnode
	network string
	extra   []string // containers started by the test, removed before `down`
}

type cnode struct {
	svc       string
	port      int
	addr      string // https://127.0.0.1:port
	container string // container id
}

// startCluster brings the compose project up fresh (after removing any
// leftover of the same name), waits until every node answers health, and
// when initialize is set runs `operator init` and waits for three voters.
// The project is brought down (volumes included) when the test ends, even
// on failure; the logs of a failed test are printed first.
func startCluster(t *testing.T, project string, initialize bool) *cluster {
	t.Helper()
	c := &cluster{t: t, project: project}
	ctx, cancel := context.WithTimeout(context.Background(), upTimeout)
	defer cancel()
	dctx, dcancel := context.WithTimeout(context.Background(), downTimeout)
	if out, err := compose(dctx, project, "down", "-v", "-t", "5"); err != nil {
		t.Logf("compose down (leftovers): %v\n%s", err, out)
	}
	dcancel()
	t.Cleanup(func() { c.down() })
	start := time.Now()
	if out, err := compose(ctx, project, "up", "-d"); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}
	for i, svc := range services {
		out, err := compose(ctx, project, "ps", "-q", svc)
		if err != nil || strings.TrimSpace(out) == "" {
			t.Fatalf("compose ps -q %s: %v\n%s", svc, err, out)
		}
		c.nodes[i] = &cnode{svc: svc, port: hostPorts[i], addr: fmt.Sprintf("https://127.0.0.1:%d", hostPorts[i]), container: strings.TrimSpace(out)}
	}
	c.network = docker(t, "inspect", "--format", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}", c.nodes[0].container)
	for i := range c.nodes {
		c.waitHealthy(ctx, i)
	}
	t.Logf("%s: 3 nodes healthy %s after compose up", project, time.Since(start).Round(time.Millisecond))
	if initialize {
		res, err := c.client(0).Init(ctx)
		if err != nil {
			t.Fatalf("operator init: %v", err)
		}
		c.token = res.RootToken
		c.waitVoters(ctx, 3)
		t.Logf("%s: initialized, 3 voters %s after compose up", project, time.Since(start).Round(time.Millisecond))
	}
	return c
}

// down removes the test's own containers, then the compose project with its
// volumes (a second attempt if the first fails). It reports whether the
// project is gone.
func (c *cluster) down() bool {
	ctx, cancel := context.WithTimeout(context.Background(), downTimeout)
	defer cancel()
	if c.t.Failed() {
		out, _ := compose(ctx, c.project, "logs", "--no-color", "--tail", "60")
		c.t.Logf("logs of %s (last 60 lines per node):\n%s", c.project, out)
	}
	for _, x := range c.extra {
		if out, err := run(ctx, nil, "docker", "rm", "-f", "-v", x); err != nil {
			c.t.Logf("docker rm %s: %v\n%s", x, err, out)
		}
	}
	for attempt := 1; ; attempt++ {
		out, err := compose(ctx, c.project, "down", "-v", "-t", "5")
		if err == nil {
			return true
		}
		if attempt == 2 || ctx.Err() != nil {
			c.t.Errorf("compose down %s: %v\n%s", c.project, err, out)
			return false
		}
		c.t.Logf("compose down %s: %v; trying again\n%s", c.project, err, out)
	}
}

func (c *cluster) client(i int) *client.Client {
	return c.clientAs(i, c.token)
}

func (c *cluster) clientAs(i int, token string) *client.Client {
	cl, err := client.New(c.nodes[i].addr, token, client.WithCACertFile(caFile))
	if err != nil {
		c.t.Fatalf("client: %v", err)
	}
	return cl
}

// cli runs bin/coffer on the host against node i (COFFER_ADDR, COFFER_CACERT
// and COFFER_TOKEN set as a user would).
func (c *cluster) cli(i int, stdin []byte, args ...string) (string, error) {
	return c.cliAs(i, c.token, stdin, args...)
}

func (c *cluster) cliAs(i int, token string, stdin []byte, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cofferBin, args...)
	cmd.Env = append(os.Environ(), "COFFER_ADDR="+c.nodes[i].addr, "COFFER_CACERT="+caFile, "COFFER_TOKEN="+token)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// execCLI runs the coffer binary inside node i's container against that
// node's own API: the way to reach a node whose published port is gone
// (a container disconnected from its network loses its port mapping).
func (c *cluster) execCLI(ctx context.Context, i int, stdin []byte, args ...string) (string, error) {
	all := []string{"exec", "-i", "-e", "COFFER_ADDR=https://localhost:7700", "-e", "COFFER_CACERT=/config/tls/ca.pem",
		"-e", "COFFER_TOKEN=" + c.token, c.nodes[i].container, "/coffer"}
	return run(ctx, stdin, "docker", append(all, args...)...)
}

// waitHealthy polls `coffer health` (the binary, with the CA) against node
// i's published port until it exits 0.
func (c *cluster) waitHealthy(ctx context.Context, i int) time.Duration {
	c.t.Helper()
	start := time.Now()
	deadline := start.Add(healthTimeout)
	var out string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, requestTimeout)
		o, err := run(cctx, nil, cofferBin, "health", "--addr", c.nodes[i].addr, "--cacert", caFile)
		cancel()
		if err == nil {
			return time.Since(start)
		}
		out = o
		time.Sleep(250 * time.Millisecond)
	}
	c.t.Fatalf("%s not healthy after %s: %s", c.nodes[i].svc, healthTimeout, out)
	return 0
}

func (c *cluster) health(ctx context.Context, i int) (*apitypes.Health, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.clientAs(i, "").Health(ctx)
}

// leader returns the index of the node that reports itself leader among
// the nodes in among, or -1.
func (c *cluster) leader(ctx context.Context, among []int) int {
	for _, i := range among {
		h, st, err := c.health(ctx, i)
		if err == nil && st == 200 && h.Role == "leader" && h.LeaderID == h.NodeID {
			return i
		}
	}
	return -1
}

func (c *cluster) waitLeader(ctx context.Context, among []int) int {
	c.t.Helper()
	deadline := time.Now().Add(leaderTimeout)
	for time.Now().Before(deadline) {
		if l := c.leader(ctx, among); l >= 0 {
			return l
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("no leader among %v after %s", among, leaderTimeout)
	return -1
}

// waitVoters waits until the cluster lists n voters, all alive, one leader.
func (c *cluster) waitVoters(ctx context.Context, n int) []apitypes.Member {
	c.t.Helper()
	deadline := time.Now().Add(votersTimeout)
	var last string
	for time.Now().Before(deadline) {
		for i := range c.nodes {
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			resp, err := c.client(i).Cluster(rctx, &apitypes.ClusterRequest{})
			cancel()
			if err != nil {
				last = err.Error()
				continue
			}
			voters, leaders := 0, 0
			for _, m := range resp.Members {
				if m.Suffrage == "voter" && m.State == "alive" {
					voters++
				}
				if m.Leader {
					leaders++
				}
			}
			if voters == n && len(resp.Members) == n && leaders == 1 {
				return resp.Members
			}
			last = fmt.Sprintf("%+v", resp.Members)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	c.t.Fatalf("cluster did not reach %d alive voters in %s; last: %s", n, votersTimeout, last)
	return nil
}

func others(i int) []int {
	var o []int
	for j := range 3 {
		if j != i {
			o = append(o, j)
		}
	}
	return o
}

// ---------------------------------------------------------------------------
// Writes and their verification

// ackSet records acknowledged writes: path -> value, and the highest index.
type ackSet struct {
	mu       sync.Mutex
	vals     map[string][]byte
	maxIndex uint64
}

func newAckSet() *ackSet { return &ackSet{vals: map[string][]byte{}} }

func (a *ackSet) add(path string, val []byte, index uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.vals[path] = val
	a.maxIndex = max(a.maxIndex, index)
}

func (a *ackSet) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.vals)
}

// waitMore waits until n more writes than now are acknowledged (the writers
// make progress), failing the test after timeout.
func (a *ackSet) waitMore(t testing.TB, n int, timeout time.Duration, what string) {
	t.Helper()
	want := a.len() + n
	deadline := time.Now().Add(timeout)
	for a.len() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d writes acknowledged, want %d within %s", what, a.len(), want, timeout)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

func (a *ackSet) snapshot() (map[string][]byte, uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := make(map[string][]byte, len(a.vals))
	for k, v := range a.vals {
		m[k] = v
	}
	return m, a.maxIndex
}

// create writes a new secret with a value through node i; it returns the
// committed index.
func (c *cluster) create(ctx context.Context, i int, path string, val []byte) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	res, err := c.client(i).CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: path, Value: val})
	if err != nil {
		return 0, err
	}
	return res.Index, nil
}

// mustCreate writes through node i, retrying Unavailable for up to 30 s.
func (c *cluster) mustCreate(acks *ackSet, i int, path string, val []byte) uint64 {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		idx, err := c.create(context.Background(), i, path, val)
		if err == nil {
			acks.add(path, val, idx)
			return idx
		}
		if errs.CodeOf(err) != errs.Unavailable || time.Now().After(deadline) {
			c.t.Fatalf("create %s through %s: %v", path, c.nodes[i].svc, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// verify reads every acknowledged write through node i with the given read
// options (batches of 100) and reports every missing or different value.
func (c *cluster) verify(acks *ackSet, i int, ro apitypes.ReadOptions) {
	c.t.Helper()
	want, _ := acks.snapshot()
	paths := make([]string, 0, len(want))
	for p := range want {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	bad := 0
	for len(paths) > 0 {
		n := min(100, len(paths))
		chunk := paths[:n]
		paths = paths[n:]
		var resp *apitypes.BatchGetSecretValueResponse
		var err error
		deadline := time.Now().Add(catchUpTimeout)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			resp, err = c.client(i).BatchGetSecretValue(ctx, &apitypes.BatchGetSecretValueRequest{Paths: chunk, ReadOptions: ro})
			cancel()
			if err == nil || errs.CodeOf(err) != errs.Unavailable || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			c.t.Fatalf("batch get through %s (%+v): %v", c.nodes[i].svc, ro, err)
		}
		got := map[string][]byte{}
		for _, v := range resp.Values {
			got[v.Path] = v.Value
		}
		for _, p := range chunk {
			if v, ok := got[p]; !ok || !bytes.Equal(v, want[p]) {
				bad++
				if bad <= 10 {
					c.t.Errorf("acknowledged write %s: read through %s gives %q (error %v), want %q", p, c.nodes[i].svc, v, resp.Errors[p], want[p])
				}
			}
		}
	}
	if bad > 0 {
		c.t.Errorf("%d of %d acknowledged writes missing or wrong on %s", bad, len(want), c.nodes[i].svc)
	}
}

// waitIndex waits until node i serves a read of path with min_index idx.
func (c *cluster) waitIndex(i int, path string, want []byte, idx uint64) time.Duration {
	c.t.Helper()
	start := time.Now()
	deadline := start.Add(catchUpTimeout)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		res, err := c.client(i).GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: path, ReadOptions: apitypes.ReadOptions{MinIndex: idx}})
		cancel()
		if err == nil {
			if !bytes.Equal(res.Value, want) {
				c.t.Fatalf("%s: %s = %q, want %q", c.nodes[i].svc, path, res.Value, want)
			}
			return time.Since(start)
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("%s did not serve %s at min_index %d within %s: %v", c.nodes[i].svc, path, idx, catchUpTimeout, last)
	return 0
}

func isNetErr(err error) bool {
	// The client reports a failed connection as Unavailable with the URL in
	// the message; a server answer carries the server's message only.
	var e *errs.Error
	return errors.As(err, &e) && strings.Contains(e.Message, "/v1/")
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

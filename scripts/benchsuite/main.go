// Command benchsuite is `make bench`: it starts a fresh 3-node cluster on
// loopback (real processes, fresh data dirs), runs Coffer's standard
// performance suite and prints every figure beside its target.
//
//	go run ./scripts/benchsuite [-secrets 1000000] [-duration 10s] [-bin bin/coffer]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/bench"
	"github.com/cofferhq/coffer/client"
)

type proc struct {
	id, dir, http, cluster, gossip string
	cmd                            *exec.Cmd
	boot                           bool
}

type cluster struct {
	bin, keyFile, token, dir string
	nodes                    []*proc
}

func main() {
	bin := flag.String("bin", "bin/coffer", "coffer binary")
	secrets := flag.Int("secrets", 1000000, "secrets for the memory/restart/snapshot rows (0 skips them)")
	duration := flag.Duration("duration", 10*time.Second, "measured duration of each throughput row")
	base := flag.Int("base-port", 9700, "first port")
	workDir := flag.String("dir", "tmp/bench", "work directory (wiped first)")
	flag.Parse()
	if err := run(*bin, *secrets, *duration, *base, *workDir); err != nil {
		fmt.Fprintln(os.Stderr, "benchsuite:", err)
		os.Exit(1)
	}
}

func run(bin string, secrets int, dur time.Duration, base int, dir string) error {
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	c := &cluster{bin: bin, keyFile: filepath.Join(dir, "root.key"), dir: dir}
	if out, err := exec.Command(bin, "operator", "keygen", "--out", c.keyFile).CombinedOutput(); err != nil {
		return fmt.Errorf("keygen: %v: %s", err, out)
	}
	for i := 0; i < 3; i++ {
		p := base + 10*i
		c.nodes = append(c.nodes, &proc{
			id: fmt.Sprintf("b%d", i+1), dir: filepath.Join(dir, fmt.Sprintf("b%d", i+1)),
			http: fmt.Sprintf("127.0.0.1:%d", p), cluster: fmt.Sprintf("127.0.0.1:%d", p+1), gossip: fmt.Sprintf("127.0.0.1:%d", p+2),
			boot: i == 0,
		})
	}
	defer c.stopAll()
	for _, n := range c.nodes {
		if err := c.start(n); err != nil {
			return err
		}
	}
	if err := c.waitLeader(60 * time.Second); err != nil {
		return err
	}
	if err := c.init(); err != nil {
		return err
	}
	if err := c.waitVoters(60 * time.Second); err != nil {
		return err
	}
	host, _ := os.Hostname()
	fmt.Printf("Coffer benchmark suite — %s, %s, %d CPUs, 3 nodes + client on one machine\n\n", time.Now().UTC().Format(time.RFC3339), host, cpuCount())
	fmt.Printf("%-48s %12s %10s %10s %10s  %s\n", "figure", "result", "p50 ms", "p99 ms", "errors", "target")
	ctx := context.Background()
	leader, followers := c.roles()
	all := []string{}
	for _, n := range c.nodes {
		all = append(all, "http://"+n.http)
	}
	row := func(name string, cfg bench.Config, target string) {
		cfg.Token, cfg.Duration, cfg.Warmup, cfg.Prefix = c.token, dur, 2*time.Second, "/bench/hot"
		if err := bench.Prepare(ctx, cfg); err != nil {
			fmt.Printf("%-48s prepare failed: %v\n", name, err)
			return
		}
		before := readCPUTimes()
		r, err := bench.Run(ctx, cfg)
		if err != nil {
			fmt.Printf("%-48s failed: %v\n", name, err)
			return
		}
		var nerr int64
		for _, v := range r.Errors {
			nerr += v
		}
		fmt.Printf("%-48s %10.0f/s %10.2f %10.2f %10d  %s%s\n", name, r.OpsPerSec, r.P50Ms, r.P99Ms, nerr, target, before.usageSince())
	}
	row("putSecretValue, 64 clients over 3 nodes", bench.Config{Targets: all, Workload: bench.Put, Concurrency: 64}, "≥ 8,500/s, p99 ≤ 50 ms")
	row("putSecretValue, 1 client on the leader", bench.Config{Targets: []string{leader}, Workload: bench.Put, Concurrency: 1}, "p50 ≤ 2 ms")
	row("getSecretValue stale on followers, 64 clients", bench.Config{Targets: followers, Workload: bench.Get, Concurrency: 64}, "≥ 12,000/s, p99 ≤ 20 ms")
	row("getSecretValue consistency leader, 64 clients", bench.Config{Targets: all, Workload: bench.Get, Concurrency: 64, Consistency: "leader"}, "≥ 6,000/s")
	if secrets > 0 {
		if err := c.bigRows(ctx, secrets); err != nil {
			return err
		}
	}
	return c.failoverRow()
}

// pprofAddr is the node's HTTP port + 5: profiles of a run can be taken
// with `go tool pprof http://127.0.0.1:9705/debug/pprof/profile`.
func pprofAddr(httpAddr string) string {
	host, port, _ := strings.Cut(httpAddr, ":")
	p, _ := strconv.Atoi(port)
	return fmt.Sprintf("%s:%d", host, p+5)
}

// cpuTimes are the machine's CPU counters from /proc/stat (Linux only).
type cpuTimes struct{ busy, idle, iowait, steal, total uint64 }

func readCPUTimes() (t cpuTimes) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return t
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return t
	}
	// user nice system idle iowait irq softirq steal [guest...]
	for i, s := range f[1:9] {
		v, _ := strconv.ParseUint(s, 10, 64)
		t.total += v
		switch i {
		case 3:
			t.idle += v
		case 4:
			t.iowait += v
		case 7:
			t.steal += v
		default:
			t.busy += v
		}
	}
	return t
}

// usageSince describes the machine's CPU over a row: how busy the cores
// were, how long they idled waiting for the disk (a Raft round waits for
// two fsyncs in series), and how much of their time the hypervisor gave to
// others (steal); on a VM the last two move every throughput figure.
func (t cpuTimes) usageSince() string {
	now := readCPUTimes()
	d := now.total - t.total
	if t.total == 0 || d == 0 {
		return ""
	}
	pct := func(a, b uint64) float64 { return float64(a-b) * 100 / float64(d) }
	return fmt.Sprintf("  (CPU busy %.0f %%, idle %.0f %%, I/O wait %.0f %%, steal %.0f %%)",
		pct(now.busy, t.busy), pct(now.idle, t.idle), pct(now.iowait, t.iowait), pct(now.steal, t.steal))
}

func cpuCount() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

func (c *cluster) start(n *proc) error {
	args := []string{"server", "--node-id", n.id, "--data-dir", n.dir, "--http-addr", n.http, "--cluster-addr", n.cluster,
		"--gossip-addr", n.gossip, "--root-key-file", c.keyFile, "--log-level", "info", "--pprof-addr", pprofAddr(n.http)}
	if n.boot {
		args = append(args, "--bootstrap")
	} else {
		args = append(args, "--join", c.nodes[0].gossip)
	}
	_ = os.MkdirAll(n.dir, 0o700)
	logf, err := os.OpenFile(n.dir+".log", os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	n.cmd = exec.Command(c.bin, args...)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	return n.cmd.Start()
}

func (c *cluster) kill(n *proc) {
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Signal(syscall.SIGKILL)
		_, _ = n.cmd.Process.Wait()
	}
	n.cmd = nil
}

func (c *cluster) stopAll() {
	for _, n := range c.nodes {
		if n.cmd != nil && n.cmd.Process != nil {
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func(p *os.Process) { _, _ = p.Wait(); close(done) }(n.cmd.Process)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = n.cmd.Process.Kill()
			}
		}
	}
}

func health(addr string) (apitypes.Health, int) {
	var h apitypes.Health
	hc := http.Client{Timeout: time.Second}
	resp, err := hc.Get("http://" + addr + "/v1/sys/health")
	if err != nil {
		return h, 0
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&h)
	return h, resp.StatusCode
}

func (c *cluster) waitLeader(d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes {
			if n.cmd == nil {
				continue
			}
			if h, st := health(n.http); st == 200 && h.LeaderID != "" {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no leader within %v", d)
}

func (c *cluster) init() error {
	cl, _ := client.New("http://"+c.nodes[0].http, "")
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := cl.Init(context.Background())
		if err == nil {
			c.token = resp.RootToken
			// Kept beside the data dirs, to look into the cluster after a run.
			return os.WriteFile(filepath.Join(c.dir, "root-token"), []byte(c.token+"\n"), 0o600)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("init: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *cluster) client(n *proc) *client.Client {
	cl, _ := client.New("http://"+n.http, c.token, client.WithRetry(10, time.Second))
	return cl
}

func (c *cluster) waitVoters(d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		resp, err := c.client(c.nodes[0]).Cluster(context.Background(), &apitypes.ClusterRequest{})
		if err == nil {
			v := 0
			for _, m := range resp.Members {
				if m.Suffrage == "voter" {
					v++
				}
			}
			if v == 3 {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("three voters not formed within %v", d)
}

// roles returns the leader's URL and the followers' URLs.
func (c *cluster) roles() (string, []string) {
	var leader string
	var followers []string
	for _, n := range c.nodes {
		if n.cmd == nil {
			continue
		}
		if h, _ := health(n.http); h.Role == "leader" {
			leader = "http://" + n.http
		} else {
			followers = append(followers, "http://"+n.http)
		}
	}
	return leader, followers
}

func (c *cluster) node(url string) *proc {
	for _, n := range c.nodes {
		if "http://"+n.http == url {
			return n
		}
	}
	return nil
}

// cpuTicks is the CPU time (user+system, in clock ticks) of the nodes.
func (c *cluster) cpuTicks() int {
	total := 0
	for _, n := range c.nodes {
		if n.cmd == nil || n.cmd.Process == nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// Fields after the ")" that ends the command name; utime and stime
		// are the 14th and 15th fields of the line.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 12 {
			u, _ := strconv.Atoi(f[11])
			s, _ := strconv.Atoi(f[12])
			total += u + s
		}
	}
	return total
}

// settle waits (up to 2 minutes) until the nodes are nearly idle — under
// 10 % of a CPU together over a second — so a row is not measured while the
// nodes still finish earlier work (applying a backlog, writing a Raft
// snapshot of the whole state). It returns how long it waited.
func (c *cluster) settle() time.Duration {
	start := time.Now()
	for time.Since(start) < 2*time.Minute {
		t0 := c.cpuTicks()
		time.Sleep(time.Second)
		if c.cpuTicks()-t0 < 10 { // 100 ticks per second
			break
		}
	}
	return time.Since(start).Round(time.Second)
}

// memMiB reads a /proc/PID/status field in MiB (VmRSS, RssAnon, RssFile).
func memMiB(pid int, field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			f := strings.Fields(l)
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// bigRows loads n secrets of 256 B, then measures memory, snapshot save
// and the restart of a follower.
func (c *cluster) bigRows(ctx context.Context, n int) error {
	start := time.Now()
	cfg := bench.Config{Workload: bench.Put, Token: c.token, Keys: n, Prefix: "/bench/big", Concurrency: 64, ValueSize: 256}
	for _, p := range c.nodes {
		cfg.Targets = append(cfg.Targets, "http://"+p.http)
	}
	if err := bench.PrepareSpread(ctx, cfg); err != nil {
		return fmt.Errorf("load %d secrets: %w", n, err)
	}
	load := time.Since(start)
	fmt.Printf("%-48s %10.0f/s %10s %10s %10s  %s\n", fmt.Sprintf("createSecret bulk load of %d (64 clients)", n), float64(n)/load.Seconds(), "-", "-", "-", fmt.Sprintf("(took %s; nodes busy %s more)", load.Round(time.Second), c.settle()))
	leaderURL, followers := c.roles()
	var rss []string
	maxRSS := 0.0
	for _, p := range c.nodes {
		pid := p.cmd.Process.Pid
		r := memMiB(pid, "VmRSS")
		maxRSS = max(maxRSS, r)
		rss = append(rss, fmt.Sprintf("%s %.0f = heap etc. %.0f + mapped files %.0f", p.id, r, memMiB(pid, "RssAnon"), memMiB(pid, "RssFile")))
	}
	fmt.Printf("%-48s %9.0fMiB %10s %10s %10s  %s  (%s)\n", fmt.Sprintf("RSS per node with %d secrets", n), maxRSS, "-", "-", "-", "≤ 1.5 GiB", strings.Join(rss, ", "))

	// Into a file, as `coffer snapshot save` does (growing a bytes.Buffer to
	// hundreds of MB cost the client 9 s of the 10 measured at 400,000).
	snapPath := filepath.Join(c.dir, "bench.snap")
	sf, err := os.Create(snapPath)
	if err != nil {
		return err
	}
	t0 := time.Now()
	err = c.client(c.node(leaderURL)).Snapshot(ctx, sf)
	if err == nil {
		err = sf.Sync()
	}
	took := time.Since(t0)
	size, _ := sf.Seek(0, io.SeekCurrent)
	sf.Close()
	_ = os.Remove(snapPath)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	fmt.Printf("%-48s %10.2fs %10s %10s %10s  %s  (%d MiB)\n", fmt.Sprintf("snapshot save of %d secrets", n), took.Seconds(), "-", "-", "-", "≤ 15 s", size>>20)

	f := c.node(followers[0])
	h, _ := health(leaderURL[len("http://"):])
	target := h.AppliedIndex
	c.kill(f)
	t1 := time.Now()
	if err := c.start(f); err != nil {
		return err
	}
	for {
		if h, st := health(f.http); st == 200 && h.AppliedIndex >= target {
			break
		}
		if time.Since(t1) > 5*time.Minute {
			return fmt.Errorf("restarted node did not catch up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Printf("%-48s %10.2fs %10s %10s %10s  %s\n", fmt.Sprintf("restart of a follower holding %d secrets", n), time.Since(t1).Seconds(), "-", "-", "-", "≤ 10 s to serving")
	return nil
}

// failoverRow kills the leader and times the first successful write after.
func (c *cluster) failoverRow() error {
	c.settle() // the restarted node's catch-up, snapshots
	leaderURL, followers := c.roles()
	l := c.node(leaderURL)
	cl := c.client(c.node(followers[0]))
	ctx := context.Background()
	_, _ = cl.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: "/bench/failover"})
	c.kill(l)
	t0 := time.Now()
	for i := 0; ; i++ {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := cl.PutSecretValue(wctx, &apitypes.PutSecretValueRequest{Path: "/bench/failover", Value: []byte("x")})
		cancel()
		if err == nil {
			break
		}
		if time.Since(t0) > 30*time.Second {
			return fmt.Errorf("no write within 30s of the leader kill: %v", err)
		}
	}
	fmt.Printf("%-48s %10.2fs %10s %10s %10s  %s\n", "leader killed → writes succeed again", time.Since(t0).Seconds(), "-", "-", "-", "≤ 3 s")
	_ = c.start(l)
	return nil
}

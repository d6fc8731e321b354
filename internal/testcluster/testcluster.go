// Package testcluster starts N real Coffer nodes in-process on loopback,
// each with its own data dir, cluster port, gossip port and HTTP API, for
// cluster tests: testcluster.New(t, 3).
package testcluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/api"
	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/kms"
	"github.com/cofferhq/coffer/node"
	"github.com/hashicorp/go-hclog"
)

// Node is one in-process node of a test cluster.
type Node struct {
	ID          string
	Dir         string // holds data/, node.log and audit.jsonl
	DataDir     string
	LogFile     string
	AuditFile   string
	HTTPAddr    string
	ClusterAddr string
	GossipAddr  string
	URL         string

	mu      sync.Mutex
	n       *node.Node
	srv     *http.Server
	logf    *os.File
	started bool // started at least once (only node 0's first start bootstraps)
}

// Node returns the running node (nil when killed).
func (tn *Node) Node() *node.Node {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return tn.n
}

// Running reports whether the node is up.
func (tn *Node) Running() bool { return tn.Node() != nil }

// Cluster is a set of test nodes sharing one root key.
type Cluster struct {
	t        testing.TB
	Nodes    []*Node
	RootKeys *kms.RootKeys
	// RootKeyLine is the root key file's content (base64 of the 32-byte key).
	RootKeyLine string
	RootToken   string
	opts        Options
}

// Options tune a test cluster.
type Options struct {
	// IDPrefix prefixes node ids (n0, n1... by default).
	IDPrefix string
	// RootKeyLine sets the root key file's content (default: a new key).
	RootKeyLine string
	// NoInit leaves the cluster without a root token.
	NoInit bool
	// SnapshotThreshold overrides Raft's (small values force snapshots).
	SnapshotThreshold uint64
	SnapshotCommands  uint64
	TrailingLogs      uint64
	// LogSegmentSize overrides the WAL's segment size: the WAL drops
	// compacted entries a whole segment at a time, so tests that need the
	// log truly compacted use small segments.
	LogSegmentSize int
	// DeadServerCleanup removes servers failed for DeadServerThreshold.
	DeadServerCleanup   bool
	DeadServerThreshold time.Duration
	// TrustedProxies are passed to every node's API (X-Forwarded-For).
	TrustedProxies []netip.Prefix
	// Now, if set, is every node's clock (node.Config.Now): it stamps log
	// entries and drives the leader's key destruction timer.
	Now func() time.Time
}

// New starts an n-node cluster: node 0 bootstraps, the others join through
// gossip; it returns once all are voters and the root token exists.
func New(t testing.TB, n int, opt ...Options) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	if len(opt) > 0 {
		c.opts = opt[0]
	}
	line, err := c.opts.RootKeyLine, error(nil)
	if line == "" {
		line, err = kms.GenerateRootKey()
	}
	if err != nil {
		t.Fatal(err)
	}
	if c.RootKeys, err = kms.ParseRootKeys([]byte(line)); err != nil {
		t.Fatal(err)
	}
	c.RootKeyLine = line
	base := t.TempDir()
	for i := 0; i < n; i++ {
		dir := filepath.Join(base, fmt.Sprintf("n%d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		tn := &Node{
			ID: fmt.Sprintf("%sn%d", c.opts.IDPrefix, i), Dir: dir, DataDir: filepath.Join(dir, "data"),
			LogFile: filepath.Join(dir, "node.log"), AuditFile: filepath.Join(dir, "audit.jsonl"),
			HTTPAddr: FreeAddr(t), ClusterAddr: FreeAddr(t), GossipAddr: FreeAddr(t),
		}
		tn.URL = "http://" + tn.HTTPAddr
		c.Nodes = append(c.Nodes, tn)
	}
	t.Cleanup(c.Close)
	for i := range c.Nodes {
		c.Start(i)
	}
	c.WaitForVoters(n)
	if !c.opts.NoInit {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cl := c.anonClient(c.Nodes[0])
		var lastErr error
		for ctx.Err() == nil {
			resp, err := cl.Init(ctx)
			if err == nil {
				c.RootToken = resp.RootToken
				break
			}
			lastErr = err
			time.Sleep(50 * time.Millisecond) // cluster init entry still committing
		}
		if c.RootToken == "" {
			t.Fatalf("init: %v", lastErr)
		}
	}
	return c
}

var (
	portMu    sync.Mutex
	portsUsed = map[int]bool{}
)

// FreePort returns a loopback port in [from, from+n) that is free for TCP
// and UDP (gossip uses both), never the same twice in this process. Ranges
// below the ephemeral one (32768+) keep outgoing connections of this or
// another test process from taking the port between now and the bind; test
// processes that run at the same time use ranges of their own.
func FreePort(t testing.TB, from, n int) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for range 1000 {
		p := from + rand.IntN(n)
		if portsUsed[p] {
			continue
		}
		addr := "127.0.0.1:" + strconv.Itoa(p)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		portsUsed[p] = true
		return p
	}
	t.Fatal("no free loopback port found")
	return 0
}

// FreeAddr is a free loopback address in 10000–19999 (the e2e tests, another
// process, use 20000–31999).
func FreeAddr(t testing.TB) string { return "127.0.0.1:" + strconv.Itoa(FreePort(t, 10000, 10000)) }

// Start (re)starts node i with its data dir.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	tn := c.Nodes[i]
	logf, err := os.OpenFile(tn.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: tn.ID, Level: hclog.Debug, Output: logf})
	tn.mu.Lock()
	first := !tn.started
	tn.started = true
	tn.mu.Unlock()
	// Only the very first start of node 0 forms the cluster: a wiped node 0
	// must rejoin the existing cluster, not bootstrap a new one.
	bootstrap := i == 0 && first
	cfg := node.Config{
		NodeID: tn.ID, DataDir: tn.DataDir, HTTPAddr: tn.HTTPAddr, ClusterAddr: tn.ClusterAddr,
		GossipAddr: tn.GossipAddr, Bootstrap: bootstrap, RootKeys: c.RootKeys, AuditFile: tn.AuditFile,
		Logger: logger, HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond, StabilizationPeriod: 300 * time.Millisecond,
		ReconcileInterval: 100 * time.Millisecond, GossipProbe: 200 * time.Millisecond,
		SnapshotThreshold: c.opts.SnapshotThreshold, SnapshotCommands: c.opts.SnapshotCommands, TrailingLogs: c.opts.TrailingLogs, LogSegmentSize: c.opts.LogSegmentSize,
		DeadServerCleanup: c.opts.DeadServerCleanup, DeadServerThreshold: c.opts.DeadServerThreshold,
		Now: c.opts.Now,
	}
	if !bootstrap {
		// Every other node (node 0 first): a restarted or wiped node 0 must
		// find the cluster too.
		for _, o := range c.Nodes {
			if o != tn {
				cfg.Join = append(cfg.Join, o.GossipAddr)
			}
		}
	}
	var n *node.Node
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err = node.New(cfg)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // ports of a just-closed node may linger
	}
	if err != nil {
		logf.Close()
		c.t.Fatalf("start %s: %v", tn.ID, err)
	}
	var ln net.Listener
	for {
		ln, err = net.Listen("tcp", tn.HTTPAddr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		n.Close()
		logf.Close()
		c.t.Fatalf("listen %s: %v", tn.HTTPAddr, err)
	}
	srv := &http.Server{Handler: api.New(n, api.Config{TrustedProxies: c.opts.TrustedProxies}).Handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	tn.mu.Lock()
	tn.n, tn.srv, tn.logf = n, srv, logf
	tn.mu.Unlock()
}

// Kill stops node i (its data dir stays).
func (c *Cluster) Kill(i int) {
	tn := c.Nodes[i]
	tn.mu.Lock()
	n, srv, logf := tn.n, tn.srv, tn.logf
	tn.n, tn.srv, tn.logf = nil, nil, nil
	tn.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
	if n != nil {
		n.Close()
	}
	if logf != nil {
		logf.Close()
	}
}

// Restart kills and starts node i with its data.
func (c *Cluster) Restart(i int) {
	c.Kill(i)
	c.Start(i)
}

// Wipe kills node i, deletes its data dir and starts it empty: it must
// rejoin and catch up (from a snapshot if the log was compacted).
func (c *Cluster) Wipe(i int) {
	c.Kill(i)
	if err := os.RemoveAll(c.Nodes[i].DataDir); err != nil {
		c.t.Fatal(err)
	}
	c.Start(i)
}

// Close stops every node.
func (c *Cluster) Close() {
	for i := range c.Nodes {
		c.Kill(i)
	}
}

// Leader waits for a leader among running nodes and returns its index.
func (c *Cluster) Leader() int {
	c.t.Helper()
	var idx int
	c.Eventually(15*time.Second, "a leader", func() bool {
		idx = -1
		for i, tn := range c.Nodes {
			if n := tn.Node(); n != nil && n.IsLeader() {
				idx = i
			}
		}
		return idx >= 0
	})
	return idx
}

// WaitForLeader waits until some running node leads.
func (c *Cluster) WaitForLeader() { c.Leader() }

// Followers returns the indexes of running non-leader nodes.
func (c *Cluster) Followers() []int {
	l := c.Leader()
	var out []int
	for i, tn := range c.Nodes {
		if i != l && tn.Running() {
			out = append(out, i)
		}
	}
	return out
}

// WaitForVoters waits until the leader's configuration has n voters and
// every running node knows the leader.
func (c *Cluster) WaitForVoters(n int) {
	c.t.Helper()
	c.Eventually(30*time.Second, fmt.Sprintf("%d voters", n), func() bool {
		l := -1
		for i, tn := range c.Nodes {
			if nd := tn.Node(); nd != nil && nd.IsLeader() {
				l = i
			}
		}
		if l < 0 {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		ms, err := c.Nodes[l].Node().Members(ctx)
		if err != nil {
			return false
		}
		voters := 0
		for _, m := range ms {
			if m.Suffrage == "voter" {
				voters++
			}
		}
		if voters != n {
			return false
		}
		for _, tn := range c.Nodes {
			if nd := tn.Node(); nd != nil && (nd.LeaderID() == "" || nd.State().ClusterID == "") {
				return false
			}
		}
		return true
	})
}

// Eventually polls cond until it holds or the deadline passes.
func (c *Cluster) Eventually(d time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not a synchronisation
	}
}

// Client returns a root-token client for node i (retries on Unavailable).
func (c *Cluster) Client(i int) *client.Client {
	c.t.Helper()
	cl, err := client.New(c.Nodes[i].URL, c.RootToken, client.WithRetry(20, 500*time.Millisecond))
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// ClientWithToken returns a client for node i with the given token and no retries.
func (c *Cluster) ClientWithToken(i int, token string) *client.Client {
	c.t.Helper()
	cl, err := client.New(c.Nodes[i].URL, token)
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

func (c *Cluster) anonClient(tn *Node) *client.Client {
	cl, err := client.New(tn.URL, "")
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

package testcluster_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/internal/testcluster"
	"github.com/hashicorp/raft"
)

// tcWriteValues creates n secrets prefix/sNN through the given nodes (round
// robin, a few at a time) and returns path -> value of every acknowledged
// write and the highest index acknowledged.
func tcWriteValues(t *testing.T, c *testcluster.Cluster, nodes []int, prefix string, n int) (map[string]string, uint64) {
	t.Helper()
	ctx := tcCtx(t, 60*time.Second)
	var mu sync.Mutex
	acked := map[string]string{}
	var maxIdx uint64
	var firstErr error
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		cl := c.Client(nodes[i%len(nodes)])
		path, val := fmt.Sprintf("%s/s%03d", prefix, i), fmt.Sprintf("value-%s-%d", prefix, i)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r, err := cl.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: path, Value: []byte(val)})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("create %s via %s: %w", path, cl.Addr(), err)
				}
				return
			}
			acked[path] = val
			maxIdx = max(maxIdx, r.Index)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	return acked, maxIdx
}

// tcCheckAll reads every acknowledged value on cl with batchGetSecretValue.
func tcCheckAll(t *testing.T, cl *client.Client, acked map[string]string, opts apitypes.ReadOptions) {
	t.Helper()
	ctx := tcCtx(t, 60*time.Second)
	var paths []string
	for p := range acked {
		paths = append(paths, p)
	}
	for len(paths) > 0 {
		n := min(len(paths), apitypes.MaxBatchGetPaths)
		resp, err := cl.BatchGetSecretValue(ctx, &apitypes.BatchGetSecretValueRequest{Paths: paths[:n], ReadOptions: opts})
		if err != nil {
			t.Fatalf("%s: batch get: %v", cl.Addr(), err)
		}
		if len(resp.Errors) > 0 {
			t.Fatalf("%s: batch get (%+v): errors %v", cl.Addr(), opts, resp.Errors)
		}
		if len(resp.Values) != n {
			t.Fatalf("%s: batch get: %d values for %d paths", cl.Addr(), len(resp.Values), n)
		}
		for _, v := range resp.Values {
			if acked[v.Path] != string(v.Value) {
				t.Fatalf("%s: %s = %q, want %q", cl.Addr(), v.Path, v.Value, acked[v.Path])
			}
		}
		paths = paths[n:]
	}
}

// tcFirstReadAfterRestart reads path with min_index on a node that has just
// been (re)started. Per SPEC §2 the read waits for min_index (or answers
// Unavailable, which the client retries); any other error is reported as a
// failure, and the function then waits for the node to serve the read so
// the rest of the test still checks the catch-up.
func tcFirstReadAfterRestart(t *testing.T, c *testcluster.Cluster, i int, path string, minIndex uint64, want string) {
	t.Helper()
	ctx := tcCtx(t, 60*time.Second)
	start := time.Now()
	got, err := tcGet(ctx, t, c.Client(i), path, 0, minIndex)
	if err == nil && string(got.Value) == want {
		return
	}
	if err != nil {
		t.Errorf("node %d just restarted: getSecretValue %s with min_index %d failed after %v: %v (want the value, or Unavailable while catching up)",
			i, path, minIndex, time.Since(start).Round(time.Millisecond), err)
	} else {
		t.Errorf("node %d just restarted: getSecretValue %s with min_index %d = %q, want %q", i, path, minIndex, got.Value, want)
	}
	c.Eventually(30*time.Second, fmt.Sprintf("node %d to serve %s", i, path), func() bool {
		got, err := tcGet(ctx, t, c.ClientWithToken(i, c.RootToken), path, 0, minIndex)
		return err == nil && string(got.Value) == want
	})
	t.Logf("node %d served the read %v after it was started", i, time.Since(start).Round(time.Millisecond))
}

// TestClusterKillLeader: acknowledged writes survive the loss of the leader, a new
// leader is elected among the survivors, and the old leader catches up when
// it comes back.
func TestClusterKillLeader(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := tcCtx(t, 120*time.Second)
	old := c.Leader()
	acked, ackedIdx := tcWriteValues(t, c, c.Followers(), "/kill/app", 50)
	if len(acked) != 50 {
		t.Fatalf("%d acknowledged writes, want 50", len(acked))
	}

	c.Kill(old)
	nl := c.Leader()
	if nl == old {
		t.Fatalf("node %d still leads after being killed", old)
	}
	var survivors []int
	for i, tn := range c.Nodes {
		if tn.Running() {
			survivors = append(survivors, i)
		}
	}
	if len(survivors) != 2 {
		t.Fatalf("survivors %v", survivors)
	}
	leaderRead := apitypes.ReadOptions{Consistency: apitypes.ConsistencyLeader}
	var paths []string
	for p := range acked {
		paths = append(paths, p)
	}
	for _, i := range survivors {
		cl := c.Client(i)
		// Linearizable reads right after the election must see every
		// acknowledged write. If some are missing, tell a stale read (they
		// show up later) from a lost write (they never do).
		b, err := cl.BatchGetSecretValue(ctx, &apitypes.BatchGetSecretValueRequest{Paths: paths, ReadOptions: leaderRead})
		if err != nil {
			t.Fatalf("node %d: leader batch read after failover: %v", i, err)
		}
		if len(b.Errors) > 0 {
			t.Errorf("node %d (leader: %v): consistency=leader read right after failover answered index %d, but writes were acknowledged up to index %d: missing %v",
				i, i == nl, b.Index, ackedIdx, b.Errors)
			c.Eventually(10*time.Second, "the missing acknowledged writes to show up (else they are lost)", func() bool {
				b, err := cl.BatchGetSecretValue(ctx, &apitypes.BatchGetSecretValueRequest{Paths: paths, ReadOptions: leaderRead})
				return err == nil && len(b.Errors) == 0
			})
		}
		tcCheckAll(t, cl, acked, leaderRead)
		for p, v := range acked {
			got, err := cl.GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: p, ReadOptions: leaderRead})
			if err != nil || string(got.Value) != v {
				t.Fatalf("node %d: leader read of %s after failover: %v %v, want %q", i, p, got, err, v)
			}
		}
	}
	// New writes succeed through both survivors.
	var last uint64
	for _, i := range survivors {
		p, err := c.Client(i).PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: "/kill/app/s000", Value: []byte(fmt.Sprintf("after-failover-%d", i))})
		if err != nil {
			t.Fatalf("write via node %d after failover: %v", i, err)
		}
		last = max(last, p.Index)
		acked["/kill/app/s000"] = fmt.Sprintf("after-failover-%d", i)
	}
	created, err := c.Client(survivors[0]).CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: "/kill/app/new", Value: []byte("born-after-failover")})
	if err != nil {
		t.Fatalf("create after failover: %v", err)
	}
	last = max(last, created.Index)
	acked["/kill/app/new"] = "born-after-failover"

	// The old leader comes back as a follower and catches up.
	c.Start(old)
	oc := c.Client(old)
	tcFirstReadAfterRestart(t, c, old, "/kill/app/new", last, "born-after-failover")
	tcCheckAll(t, oc, acked, apitypes.ReadOptions{MinIndex: last})
	if c.Leader() == old && c.Nodes[old].Node().State().Index < last {
		t.Fatal("old leader took over without the new writes")
	}
	// And it serves writes again (forwarded if it follows).
	if _, err := oc.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: "/kill/app/new", Value: []byte("via-old-leader")}); err != nil {
		t.Fatalf("write via the restarted old leader: %v", err)
	}
}

// TestClusterRestartFollowerCatchesUp: a follower restarted with its data dir
// catches up on the writes it missed.
func TestClusterRestartFollowerCatchesUp(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := tcCtx(t, 90*time.Second)
	f := c.Followers()
	down, up := f[0], f[1]
	before, _ := tcWriteValues(t, c, []int{down, up}, "/restart/before", 10)
	c.Kill(down)
	during, last := tcWriteValues(t, c, []int{up, c.Leader()}, "/restart/during", 30)
	p, err := c.Client(up).PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: "/restart/before/s000", Value: []byte("changed-while-down")})
	if err != nil {
		t.Fatal(err)
	}
	before["/restart/before/s000"] = "changed-while-down"
	last = max(last, p.Index)

	c.Restart(down)
	cl := c.Client(down)
	tcFirstReadAfterRestart(t, c, down, "/restart/before/s000", last, "changed-while-down")
	tcCheckAll(t, cl, before, apitypes.ReadOptions{MinIndex: last})
	tcCheckAll(t, cl, during, apitypes.ReadOptions{MinIndex: last})
	// It works as a full member again: writes through it are forwarded.
	w, err := cl.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: "/restart/during/s001", Value: []byte("via-restarted")})
	if err != nil {
		t.Fatalf("write via restarted follower: %v", err)
	}
	tcMustValue(ctx, t, c.Client(up), "/restart/during/s001", 0, w.Index, "via-restarted")
}

// TestClusterWipedNodeRejoinsFromSnapshot: a node whose data dir is wiped rejoins
// and catches up through a snapshot once the log is compacted.
func TestClusterWipedNodeRejoinsFromSnapshot(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{SnapshotThreshold: 64, TrailingLogs: 16, LogSegmentSize: 16 << 10})
	ctx := tcCtx(t, 120*time.Second)
	f := c.Followers()
	victim := f[0]
	// ~300 commands: 100 creates (with value) and 200 puts, some of them
	// sequential so they are separate log entries.
	acked, _ := tcWriteValues(t, c, []int{f[0], f[1], c.Leader()}, "/wipe/app", 100)
	cl := c.Client(f[1])
	for i := 0; i < 200; i++ {
		p := fmt.Sprintf("/wipe/app/s%03d", i%100)
		v := fmt.Sprintf("put-%d", i)
		if _, err := cl.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: p, Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
		acked[p] = v
	}
	l := c.Leader()
	if err := c.Nodes[l].Node().TakeSnapshot(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		t.Fatalf("snapshot on leader: %v", err)
	}
	target := c.Nodes[l].Node().State().Index
	if target < 200 {
		t.Fatalf("only %d log entries: the log was not long enough to be compacted", target)
	}

	c.Wipe(victim)
	c.Eventually(60*time.Second, "the wiped node to catch up", func() bool {
		n := c.Nodes[victim].Node()
		return n != nil && n.State().Index >= target
	})
	// It caught up from a snapshot, not by replaying the whole log: its
	// snapshot store holds the installed snapshot.
	snaps, _ := os.ReadDir(filepath.Join(c.Nodes[victim].DataDir, "snapshots"))
	if len(snaps) == 0 {
		t.Fatalf("wiped node has no snapshot in %s: it did not catch up from a snapshot", c.Nodes[victim].DataDir)
	}
	vc := c.Client(victim)
	// Right after catching up, before anything else is written, its audit
	// chain must verify: the snapshot holds the chain head, and nothing in
	// the chain is broken.
	if v, err := vc.VerifyAudit(ctx, &apitypes.VerifyAuditRequest{ReadOptions: apitypes.ReadOptions{MinIndex: target}}); err != nil || !v.OK {
		t.Errorf("verifyAudit on the wiped node right after it caught up from a snapshot: %+v, %v (want ok: no entry of the chain is broken)", v, err)
	}
	tcCheckAll(t, vc, acked, apitypes.ReadOptions{MinIndex: target})
	for p, v := range map[string]string{"/wipe/app/s000": acked["/wipe/app/s000"], "/wipe/app/s099": acked["/wipe/app/s099"]} {
		tcMustValue(ctx, t, vc, p, 0, target, v)
	}
	s := tcMustDescribe(ctx, t, vc, "/wipe/app/s000", target).Secret
	if s.CurrentVersion != 3 {
		t.Fatalf("wiped node: /wipe/app/s000 current_version %d, want 3", s.CurrentVersion)
	}
	// Writes through the rejoined node work and it sees them.
	w, err := vc.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: "/wipe/app/s001", Value: []byte("after-wipe")})
	if err != nil {
		t.Fatalf("write via wiped node: %v", err)
	}
	tcMustValue(ctx, t, vc, "/wipe/app/s001", 0, w.Index, "after-wipe")

	// Its audit store verifies (once it has applied everything committed so
	// far, including the audit entries of the reads above).
	lead := tcLeaderIndex(c)
	c.Eventually(10*time.Second, "the wiped node to apply the reads' audit entries", func() bool {
		return c.Nodes[victim].Node().State().Index >= lead
	})
	v, err := vc.VerifyAudit(ctx, &apitypes.VerifyAuditRequest{ReadOptions: apitypes.ReadOptions{MinIndex: lead}})
	if err != nil {
		t.Fatalf("verifyAudit on wiped node: %v", err)
	}
	if !v.OK || v.Checked == 0 {
		t.Fatalf("verifyAudit on wiped node: %+v", v)
	}
	// The entries it holds are the cluster's, hash for hash.
	mine := tcAuditAll(t, c.ClientWithToken(victim, c.RootToken), lead)
	theirs := tcAuditAll(t, c.ClientWithToken(c.Leader(), c.RootToken), lead)
	bySeq := map[uint64]string{}
	for _, e := range theirs {
		bySeq[e.Seq] = e.Hash
	}
	for _, e := range mine {
		if h, ok := bySeq[e.Seq]; ok && h != e.Hash {
			t.Fatalf("wiped node: audit seq %d hash %s, leader has %s", e.Seq, e.Hash, h)
		}
	}
	if len(mine) > 0 {
		t.Logf("wiped node holds audit seqs %d..%d; the leader %d..%d", mine[0].Seq, mine[len(mine)-1].Seq, theirs[0].Seq, theirs[len(theirs)-1].Seq)
	}
	// The trail the snapshot did not carry is fetched from peers, checked
	// against the chain: the wiped node ends up with the whole trail.
	c.Eventually(30*time.Second, "the wiped node's audit trail to be backfilled from seq 1", func() bool {
		first, ok := c.Nodes[victim].Node().AuditStore().First()
		return ok && first == 1
	})
	v, err = vc.VerifyAudit(ctx, &apitypes.VerifyAuditRequest{ReadOptions: apitypes.ReadOptions{MinIndex: lead}})
	if err != nil || !v.OK || v.FirstSeq != 1 || v.Checked < lead/2 {
		t.Fatalf("verifyAudit on the backfilled node: %+v, %v", v, err)
	}
}

// tcReadUntilUnavailable reads path on cl (no retries) on a node that has
// lost its quorum: the read must fail with Unavailable within 10 s, and so
// must the next ones; the value must never be returned.
func tcReadUntilUnavailable(t *testing.T, cl *client.Client, path, value string) {
	t.Helper()
	ctx := tcCtx(t, 30*time.Second)
	for k := 0; k < 4; k++ {
		start := time.Now()
		got, err := cl.GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: path, ReadOptions: apitypes.ReadOptions{Consistency: apitypes.ConsistencyStale}})
		if err == nil {
			t.Fatalf("%s: read %d without quorum returned the value %q (v%d): reads must fail closed", cl.Addr(), k, got.Value, got.Version)
		}
		tcWantCode(t, err, errs.Unavailable, fmt.Sprintf("%s: read %d without quorum", cl.Addr(), k))
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("%s: read %d without quorum: Unavailable only after %v, want within 10s", cl.Addr(), k, d)
		}
	}
}

// TestClusterFailClosedReads: a node that can't commit the read's audit entry (no
// quorum) refuses the read with Unavailable and never returns the value.
func TestClusterFailClosedReads(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := tcCtx(t, 120*time.Second)
	const path, value = "/failclosed/app/db", "no-quorum-no-value"
	cr, err := c.Client(0).CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: path, Value: []byte(value)})
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range tcAllClients(c) {
		tcMustValue(ctx, t, cl, path, 0, cr.Index, value)
	}

	// Phase 1: the leader survives alone.
	l := c.Leader()
	f := c.Followers()
	c.Kill(f[0])
	c.Kill(f[1])
	tcReadUntilUnavailable(t, c.ClientWithToken(l, c.RootToken), path, value)
	c.Start(f[0])
	c.Eventually(30*time.Second, "reads to work again after a follower restarted", func() bool {
		got, err := c.ClientWithToken(l, c.RootToken).GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: path})
		return err == nil && string(got.Value) == value
	})

	// Phase 2: a follower survives alone (its leader is gone).
	l = c.Leader()
	var other int
	for i, tn := range c.Nodes {
		if tn.Running() && i != l {
			other = i
		}
	}
	c.Kill(l)
	tcReadUntilUnavailable(t, c.ClientWithToken(other, c.RootToken), path, value)
	c.Start(l)
	c.Eventually(30*time.Second, "reads to work again after the node restarted", func() bool {
		got, err := c.ClientWithToken(other, c.RootToken).GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: path})
		return err == nil && string(got.Value) == value
	})
}

// TestClusterLeaderReadRightAfterFailover: the first linearizable reads a
// newly elected leader serves (directly or for a follower) include every
// write acknowledged before the old leader died. Raft's read index is only
// valid once the new leader has committed an entry of its own term.
func TestClusterLeaderReadRightAfterFailover(t *testing.T) {
	c := testcluster.New(t, 3)
	leaderRead := apitypes.ReadOptions{Consistency: apitypes.ConsistencyLeader}
	const rounds = 3
	for r := 0; r < rounds; r++ {
		ctx := tcCtx(t, 60*time.Second)
		old := c.Leader()
		acked, ackedIdx := tcWriteValues(t, c, c.Followers(), fmt.Sprintf("/failover%d/app", r), 12)
		var paths []string
		for p := range acked {
			paths = append(paths, p)
		}
		c.Kill(old)
		// Catch the new leader as soon as it is elected (polling without
		// pause: the window is the new leader's first round trip).
		nl, deadline := -1, time.Now().Add(15*time.Second)
		for nl < 0 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: no new leader", r)
			}
			for i, tn := range c.Nodes {
				if n := tn.Node(); i != old && n != nil && n.IsLeader() {
					nl = i
				}
			}
		}
		st, err := c.Nodes[nl].Node().ReadState(ctx, leaderRead)
		switch {
		case err != nil:
			t.Logf("round %d: first leader read on the new leader: %v", r, err) // refusing is fine
		case st.Index < ackedIdx:
			t.Errorf("round %d: the new leader (node %d) served a consistency=leader read from state index %d, but writes were acknowledged up to index %d: stale linearizable read",
				r, nl, st.Index, ackedIdx)
		}
		var wg sync.WaitGroup
		for i, tn := range c.Nodes {
			if !tn.Running() {
				continue
			}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				b, err := c.Client(i).BatchGetSecretValue(ctx, &apitypes.BatchGetSecretValueRequest{Paths: paths, ReadOptions: leaderRead})
				if err != nil {
					t.Errorf("round %d: node %d: leader read after failover: %v", r, i, err)
					return
				}
				if len(b.Errors) > 0 {
					t.Errorf("round %d: node %d (new leader: %v): consistency=leader read right after failover answered index %d, but writes were acknowledged up to %d; missing %d of %d",
						r, i, i == nl, b.Index, ackedIdx, len(b.Errors), len(paths))
				}
			}(i)
		}
		wg.Wait()
		// Nothing was lost: everything is visible on both survivors.
		for i, tn := range c.Nodes {
			if tn.Running() {
				c.Eventually(10*time.Second, "acknowledged writes visible (else they are lost)", func() bool {
					b, err := c.ClientWithToken(i, c.RootToken).BatchGetSecretValue(ctx, &apitypes.BatchGetSecretValueRequest{Paths: paths, ReadOptions: leaderRead})
					return err == nil && len(b.Errors) == 0
				})
			}
		}
		// Bring the old leader back and let it catch up before the next round.
		c.Start(old)
		target := tcLeaderIndex(c)
		c.Eventually(30*time.Second, "the restarted node to catch up", func() bool {
			return c.Nodes[old].Node().State().Index >= target
		})
	}
}

// Every node snapshots once enough commands were applied since its last
// snapshot, however few log entries carried them (group commit packs many
// commands into one entry, and Raft's own trigger counts entries): that is
// what bounds a restarted node's replay.
func TestSnapshotByCommandCount(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{SnapshotThreshold: 1 << 40, SnapshotCommands: 150})
	for i, tn := range c.Nodes {
		if idx := tn.Node().LastSnapshotIndex(); idx != 0 {
			t.Fatalf("node %d has a snapshot (index %d) before the writes", i, idx)
		}
	}
	// 200 creates, 4 at a time: Raft's threshold (2^40 entries) can't be
	// what triggers a snapshot.
	tcWriteValues(t, c, []int{0, 1, 2}, "/snapcount/app", 200)
	c.Eventually(30*time.Second, "every node to take a snapshot", func() bool {
		for _, tn := range c.Nodes {
			if tn.Node().LastSnapshotIndex() == 0 {
				return false
			}
		}
		return true
	})
	for i, tn := range c.Nodes {
		if left := tn.Node().CommandsSinceSnapshot(); left >= 150 {
			t.Errorf("node %d: %d commands since its snapshot, want < 150", i, left)
		}
	}
}

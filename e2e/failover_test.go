package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
)

const (
	failoverTimeout = 30 * time.Second // a new leader answering writes after the old one dies
	catchUpTimeout  = 45 * time.Second // a restarted node serving and caught up
)

// TestLeaderFailover SIGKILLs the leader while a client keeps writing through
// a follower: a new leader must take writes within a deadline, no
// acknowledged write may be lost, and the killed node, restarted with its
// data dir, must catch up by itself.
func TestLeaderFailover(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	old := c.leader()
	if old == nil {
		t.Fatal("no leader")
	}
	fs := c.followers(old)
	writer, reader := fs[0], fs[1]
	t.Logf("leader %s, writing through %s", old.name, writer.name)

	// acked holds every acknowledged write: path -> value.
	var mu sync.Mutex
	acked := map[string][]byte{}
	var maxIndex uint64
	var lastErr string
	write := func(i int) bool {
		path := fmt.Sprintf("/failover/s%04d", i)
		val := []byte(fmt.Sprintf("value-%d-%x", i, randBytes(t, 6)))
		var cr apitypes.CreateSecretResponse
		body := apitypes.CreateSecretRequest{Path: path, Value: val}
		r, err := postRaw(writer.url, c.token, "createSecret", mustJSON(t, body))
		if err != nil || r.status != http.StatusOK {
			mu.Lock()
			lastErr = fmt.Sprintf("%s: %v", r, err)
			mu.Unlock()
			return false
		}
		if err := jsonUnmarshal(r.body, &cr); err != nil {
			t.Errorf("createSecret %s: 200 with a malformed answer: %s", path, r)
			return false
		}
		mu.Lock()
		acked[path] = val
		maxIndex = max(maxIndex, cr.Index)
		mu.Unlock()
		return true
	}

	// some writes before the failure
	for i := range 20 {
		if !write(i) {
			t.Fatalf("write %d failed before any failure: %s", i, lastErr)
		}
	}

	// keep writing while the leader dies
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var attempted, failed int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1000; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			attempted++
			if !write(i) {
				failed++
				time.Sleep(20 * time.Millisecond) // pace retries while there is no leader
			}
		}
	}()
	waitFor(5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 30 })

	killedAt := time.Now()
	if code := old.signal(syscall.SIGKILL); code != -1 {
		t.Errorf("SIGKILL: exit code %d, want -1 (killed)", code)
	}

	// a new leader among the survivors takes writes through the follower
	var newLeader *server
	var recovered time.Duration
	ok := waitFor(failoverTimeout, func() bool {
		l := c.leader()
		if l == nil || l == old {
			return false
		}
		newLeader = l
		return true
	})
	if !ok {
		t.Fatalf("no new leader within %v of killing %s", failoverTimeout, old.name)
	}
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	ok = waitFor(failoverTimeout, func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) > before+5 })
	recovered = time.Since(killedAt)
	close(stop)
	wg.Wait()
	if !ok {
		t.Fatalf("new leader %s elected, but writes through %s did not resume within %v", newLeader.name, writer.name, failoverTimeout)
	}
	t.Logf("new leader %s; writes resumed %v after the kill (%d attempts during the failover, %d failed)",
		newLeader.name, recovered.Round(time.Millisecond), attempted, failed)

	// no acknowledged write is lost: every one reads back on both survivors
	check := func(s *server, opts apitypes.ReadOptions) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		missing := 0
		for path, val := range acked {
			var gv apitypes.GetSecretValueResponse
			r := post(t, s.url, c.token, "getSecretValue", apitypes.GetSecretValueRequest{Path: path, ReadOptions: opts}, &gv)
			if r.status != http.StatusOK || !bytes.Equal(gv.Value, val) {
				missing++
				if missing <= 5 {
					t.Errorf("%s: acknowledged write %s lost: %s", s.name, path, r)
				}
			}
		}
		if missing > 0 {
			t.Errorf("%s: %d of %d acknowledged writes lost", s.name, missing, len(acked))
		}
	}
	check(newLeader, apitypes.ReadOptions{})
	check(reader, apitypes.ReadOptions{Consistency: "leader"})
	check(writer, apitypes.ReadOptions{MinIndex: maxIndex})
	t.Logf("%d acknowledged writes all readable on the survivors", len(acked))

	// restart the killed node with its data dir: it rejoins and catches up
	restartedAt := time.Now()
	old.start()
	old.waitServing(catchUpTimeout)
	var target uint64
	if h, status := newLeader.health(); status == http.StatusOK {
		target = h.AppliedIndex
	}
	var last apitypes.Health
	ok = waitFor(catchUpTimeout, func() bool {
		var status int
		last, status = old.health()
		return status == http.StatusOK && last.Role == "follower" && last.LeaderID != "" && last.AppliedIndex >= target
	})
	if !ok {
		t.Fatalf("restarted %s did not catch up to index %d within %v: %+v", old.name, target, catchUpTimeout, last)
	}
	t.Logf("restarted %s caught up to index %d (leader %s) in %v", old.name, last.AppliedIndex, last.LeaderID,
		time.Since(restartedAt).Round(time.Millisecond))
	check(old, apitypes.ReadOptions{}) // its own applied state, stale reads
	c.waitVoters(clusterFormTimeout)

	// the cluster is whole again: writes through the restarted node work and
	// the audit chain verifies everywhere
	var cr apitypes.CreateSecretResponse
	mustPost(t, old.url, c.token, "createSecret", apitypes.CreateSecretRequest{Path: "/failover/after", Value: []byte("after")}, &cr)
	for _, s := range c.nodes {
		r := c.cli(t, s, "", nil, "audit", "verify", "--min-index", fmt.Sprint(cr.Index))
		if r.code != 0 {
			t.Errorf("audit verify on %s after failover: %s", s.name, r)
		}
	}
}

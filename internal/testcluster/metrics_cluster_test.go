package testcluster_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/internal/testcluster"
)

// TestCommitLatencyMetrics: a write through a follower is counted in the
// follower's forward latency and in the leader's Raft commit latency, the
// two histograms an operator reads to see where a request's time goes.
func TestCommitLatencyMetrics(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := tcCtx(t, 60*time.Second)
	f := c.Followers()
	count := func(name string) float64 {
		t.Helper()
		line := kmsTMetric(t, c, f[0], name+"_count")
		v, err := strconv.ParseFloat(strings.TrimPrefix(line, name+"_count "), 64)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		return v
	}
	// The histograms are process-wide (every in-process node adds to them):
	// compare before and after.
	commits, forwards := count("coffer_raft_commit_seconds"), count("coffer_forward_seconds")
	if _, err := c.Client(f[0]).CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: "/metrics/a", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if got := count("coffer_raft_commit_seconds"); got <= commits {
		t.Errorf("coffer_raft_commit_seconds_count %v after a write, was %v", got, commits)
	}
	if got := count("coffer_forward_seconds"); got <= forwards {
		t.Errorf("coffer_forward_seconds_count %v after a write through a follower, was %v", got, forwards)
	}
}

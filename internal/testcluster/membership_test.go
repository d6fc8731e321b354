package testcluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/internal/testcluster"
)

func members(t *testing.T, c *testcluster.Cluster, i int) []apitypes.Member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ms, err := c.Nodes[i].Node().Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// A failed server is removed after the threshold while a healthy majority
// remains; with only a minority alive nothing is removed.
func TestDeadServerCleanupKeepsQuorumSafe(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{DeadServerCleanup: true, DeadServerThreshold: time.Second})
	l := c.Leader()
	f := c.Followers()
	c.Kill(f[0])
	c.Eventually(20*time.Second, "the failed server to be removed", func() bool {
		return len(members(t, c, l)) == 2
	})
	for _, m := range members(t, c, l) {
		if m.NodeID == c.Nodes[f[0]].ID {
			t.Fatalf("failed server still a member: %+v", m)
		}
	}
	// Writes keep working with two voters.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Client(l).CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: "/after/cleanup", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	// The removed node comes back through gossip: non-voter, then voter.
	c.Start(f[0])
	c.WaitForVoters(3)
}

// A restarted server that was only briefly away keeps its vote: nothing is
// removed before the threshold.
func TestShortOutageKeepsMembership(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{DeadServerCleanup: true, DeadServerThreshold: time.Hour})
	f := c.Followers()
	c.Kill(f[0])
	c.Start(f[0])
	c.WaitForVoters(3)
	if n := len(members(t, c, c.Leader())); n != 3 {
		t.Fatalf("%d members", n)
	}
}

package testcluster_test

import (
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/testcluster"
	"github.com/cofferhq/coffer/node"
	"github.com/hashicorp/go-hclog"
)

func loopbackAddr(t *testing.T) string { return testcluster.FreeAddr(t) }

// A server holding another cluster's data (same root key) that gossips with
// a cluster is never admitted to it.
func TestServerWithAnotherClustersDataIsNotAdmitted(t *testing.T) {
	a := testcluster.New(t, 1)
	b := testcluster.New(t, 3, testcluster.Options{RootKeyLine: a.RootKeyLine, IDPrefix: "b"})
	// Node a0 restarts with its data but joins b's gossip pool.
	a.Kill(0)
	an := a.Nodes[0]
	cfg := node.Config{
		NodeID: "intruder", DataDir: an.DataDir, HTTPAddr: loopbackAddr(t), ClusterAddr: an.ClusterAddr,
		GossipAddr: loopbackAddr(t), RootKeys: a.RootKeys, Join: []string{b.Nodes[0].GossipAddr},
		Logger: hclog.NewNullLogger(), GossipProbe: 200 * time.Millisecond,
	}
	// The data dir belongs to node n0 of cluster a: another node id is refused outright.
	if n, err := node.New(cfg); err == nil {
		n.Close()
		t.Fatal("a data dir of another node was accepted")
	}
	cfg.NodeID = an.ID
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	l := b.Leader()
	// Give gossip and the leader's reconcile loop time to see it: it must
	// stay out of b's configuration the whole time.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range members(t, b, l) {
			if m.NodeID == an.ID {
				t.Fatalf("server with cluster a's data admitted into cluster b: %+v", m)
			}
		}
		time.Sleep(100 * time.Millisecond) // observing that nothing happens
	}
}

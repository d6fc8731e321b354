package node

import (
	"context"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// latencyBuckets, 125 µs to 1 s, are the buckets of the Raft latency
// histograms below.
var latencyBuckets = prometheus.ExponentialBuckets(0.000125, 2, 14)

// Node metrics, registered by the API's /metrics handler. Labels never hold
// paths, values or tokens.
var (
	// LeaderChanges counts leader changes this node observed.
	LeaderChanges = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "coffer_raft_leader_changes_total", Help: "Leader changes observed by this node.",
	})
	// BatchCommands is the number of commands per Raft entry this leader
	// committed (group commit: writes and read audit entries together).
	BatchCommands = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "coffer_raft_batch_commands", Help: "Commands per Raft log entry (group commit).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 11),
	})
	// ForwardCommands is the number of commands per batch this follower
	// forwarded to the leader (the leader coalesces them again).
	ForwardCommands = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "coffer_forward_batch_commands", Help: "Commands per batch forwarded to the leader.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 11),
	})
	// AuditEntriesPerBatch is the number of audit entries per Raft entry.
	AuditEntriesPerBatch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "coffer_audit_batch_entries", Help: "Audit entries committed per Raft log entry.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12),
	})
	// CommitSeconds is how long a batch took on the leader from raft.Apply
	// to its results: the leader's fsync, a majority's AppendEntries and
	// fsync, and the leader's apply. It is the Raft round a write or a
	// read's audit entries wait for.
	CommitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "coffer_raft_commit_seconds", Help: "Time from submitting a batch to Raft to its results on the leader.",
		Buckets: latencyBuckets,
	})
	// ClusterAuthRefusals counts peers refused on the cluster port and Raft
	// RPCs refused for naming another server, by reason (transport's
	// Refused* values: handshake, key, tls, certificate, raft_header).
	ClusterAuthRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "coffer_cluster_auth_refusals_total", Help: "Peers and Raft RPCs refused on the cluster port, by reason.",
	}, []string{"reason"})
	// ForwardSeconds is how long a follower waited for the leader's answer
	// to a forwarded batch (the leader's queue, its Raft round, two hops).
	ForwardSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "coffer_forward_seconds", Help: "Time from forwarding a batch to the leader to its answer.",
		Buckets: latencyBuckets,
	})
)

// observeLeaders counts leader changes through a Raft observer.
func (n *Node) observeLeaders() {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	n.goLoop(func() {
		defer n.raft.DeregisterObserver(obs)
		for {
			select {
			case <-n.shutdownCh:
				return
			case <-ch:
				LeaderChanges.Inc()
				n.leaderChanged()
			}
		}
	})
}

// leaderChanged wakes everything waiting on the current leader (forwards in
// flight to a leader that just died must not wait out their timeout).
func (n *Node) leaderChanged() {
	n.leaderMu.Lock()
	close(n.leaderCh)
	n.leaderCh = make(chan struct{})
	n.leaderMu.Unlock()
}

// untilLeaderChange returns ctx, also cancelled at the next leader change
// (a call waiting on a leader that died gives up at once); cancel releases
// it.
func (n *Node) untilLeaderChange(ctx context.Context) (context.Context, context.CancelFunc) {
	changed := n.leaderWatch()
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-changed:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// leaderWatch returns a channel closed at the next leader change.
func (n *Node) leaderWatch() <-chan struct{} {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	return n.leaderCh
}

package node

import (
	"context"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/fsm"
	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"
)

// ReadState returns the state a read must be served from: the local applied
// state (stale), after the node has applied at least MinIndex, or after the
// leader-confirmed commit index (leader: linearizable).
func (n *Node) ReadState(ctx context.Context, opts apitypes.ReadOptions) (*fsm.State, error) {
	target := opts.MinIndex
	switch opts.Consistency {
	case "", apitypes.ConsistencyStale:
	case apitypes.ConsistencyLeader:
		idx, err := n.readIndex(ctx)
		if err != nil {
			return nil, err
		}
		target = max(target, idx)
	default:
		return nil, errs.New(errs.InvalidArgument, "consistency must be %q or %q", apitypes.ConsistencyStale, apitypes.ConsistencyLeader)
	}
	if target > 0 {
		if err := n.WaitApplied(ctx, target); err != nil {
			return nil, err
		}
	}
	return n.fsm.State(), nil
}

// LeaderRead is a linearizable read the leader serves itself, whose
// leadership is confirmed after the fact by the commit of an entry it
// proposed after taking the state (the read's own audit entry) instead of
// by a round of heartbeats before it. A follower accepts an entry of term T
// only while it has seen no higher term, so a majority accepting one after
// the read began proves, as the heartbeats would (Raft thesis §6.4), that
// no newer leader had committed anything the read's index misses. Confirm
// must be called after that commit and before anything read is returned.
type LeaderRead struct {
	n    *Node
	term uint64
}

// ReadStateConfirmLater is ReadState that, for consistency "leader" on the
// leader itself, skips the heartbeat round and returns a LeaderRead to
// confirm once an entry proposed afterwards has committed. Otherwise (stale
// reads, min_index, followers asking the leader) it is ReadState, and the
// LeaderRead is nil.
func (n *Node) ReadStateConfirmLater(ctx context.Context, opts apitypes.ReadOptions) (*fsm.State, *LeaderRead, error) {
	if opts.Consistency != apitypes.ConsistencyLeader || n.raft.State() != raft.Leader {
		st, err := n.ReadState(ctx, opts)
		return st, nil, err
	}
	term := n.raft.CurrentTerm()
	if err := n.readyForReads(term); err != nil {
		return nil, nil, err
	}
	idx := n.raft.CommitIndex()
	if n.raft.State() != raft.Leader || n.raft.CurrentTerm() != term {
		return nil, nil, errs.New(errs.Unavailable, "leadership changed; retry")
	}
	if err := n.WaitApplied(ctx, max(idx, opts.MinIndex)); err != nil {
		return nil, nil, err
	}
	return n.fsm.State(), &LeaderRead{n: n, term: term}, nil
}

// Confirm reports whether the read is linearizable, given that an entry
// this node proposed after the read took its state has been committed: it
// was, by this node as the leader of the read's term, if the term has not
// changed (a commit by a later leader would have shown this node the later
// term first: entries are forwarded only to a leader this node has heard).
func (r *LeaderRead) Confirm() error {
	if r == nil {
		return nil
	}
	if r.n.raft.CurrentTerm() != r.term {
		return errs.New(errs.Unavailable, "leadership changed during the read; retry")
	}
	return nil
}

// readIndex returns a commit index the leader confirmed after the call
// began; concurrent callers share one confirmation (readrounds.go).
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	if n.raft.State() == raft.Leader {
		return n.leaderReads.get(ctx)
	}
	return n.remoteReads.get(ctx)
}

// askLeaderReadIndex asks the leader for its confirmed commit index. If the
// leader changes meanwhile (it died), it stops waiting for it: the requests
// sharing the round fail fast and the next round asks the new leader.
func (n *Node) askLeaderReadIndex(ctx context.Context) (uint64, error) {
	ctx, cancel := n.untilLeaderChange(ctx)
	defer cancel()
	out, err := n.callLeader(ctx, rpcReadIndex, nil)
	if err != nil {
		return 0, err
	}
	var idx uint64
	if err := msgpack.Unmarshal(out, &idx); err != nil {
		return 0, errs.New(errs.Internal, "bad read index from the leader")
	}
	return idx, nil
}

// AppliedIndex is the log index this node's state reflects. Raft's own
// applied index also counts entries the FSM never sees (no-ops,
// configuration changes), but it runs ahead of the FSM: Raft hands commands
// to the FSM asynchronously, up to tens of thousands of entries ahead while
// a restarted node replays its log. So it is the FSM's index, or Raft's
// when only entries the FSM never sees lie in between.
func (n *Node) AppliedIndex() uint64 {
	fsmIndex := n.fsm.State().Index
	if raftIndex := n.raft.AppliedIndex(); raftIndex > fsmIndex && !n.commandBetween(fsmIndex, raftIndex) {
		return raftIndex
	}
	return fsmIndex
}

// WaitApplied waits (up to 5 s) until this node has applied index.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	ctx, cancel := context.WithTimeout(ctx, apitypes.MaxMinIndexWait)
	defer cancel()
	for {
		fsmIndex := n.fsm.State().Index
		if fsmIndex >= index || n.raft.AppliedIndex() >= index && !n.commandBetween(fsmIndex, index) {
			return nil
		}
		short, c2 := context.WithTimeout(ctx, 20*time.Millisecond)
		err := n.fsm.WaitIndex(short, index)
		c2()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return errs.New(errs.Unavailable, "this node has not applied index %d yet (at %d); retry", index, n.fsm.State().Index)
		}
	}
}

// commandBetween reports whether a log entry in (from, to] is a command the
// FSM has still to apply (or can't be read, which counts as one).
func (n *Node) commandBetween(from, to uint64) bool {
	if n.logs == nil {
		return true
	}
	var l raft.Log
	for i := from + 1; i <= to; i++ {
		if err := n.logs.GetLog(i, &l); err != nil || l.Type == raft.LogCommand {
			return true
		}
	}
	return false
}

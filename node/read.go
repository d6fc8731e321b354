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

func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	if n.raft.State() == raft.Leader {
		return n.leaderReadIndex()
	}
	ctx, cancel := context.WithTimeout(ctx, apitypes.MaxMinIndexWait)
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

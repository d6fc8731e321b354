package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/fsm"
	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"
)

// Forwarding RPC methods on the cluster port.
const (
	rpcForward    uint8 = 1 // []fsm.Envelope -> []fsm.Result
	rpcReadIndex  uint8 = 2 // -> uint64 commit index, after confirming leadership
	rpcStatus     uint8 = 3 // -> nodeStatus
	_             uint8 = 4 // retired: restores travel through the log
	rpcAuditRange uint8 = 5 // auditRangeRequest -> []AuditEntry
	rpcRemovePeer uint8 = 6 // node id -> nothing (leader only)
	rpcTransfer   uint8 = 7 // node id or "" -> nothing (leader only)
)

type nodeStatus struct {
	NodeID       string `msgpack:"id"`
	AppliedIndex uint64 `msgpack:"ai"`
	LastContact  int64  `msgpack:"lc"` // unix nanos of last leader contact, 0 if leader/never
	HTTPAddr     string `msgpack:"http"`
}

func (n *Node) handleRPC(ctx context.Context, method uint8, body []byte) ([]byte, error) {
	if !n.started.Load() { // the cluster port listens before Raft has started
		return nil, errs.New(errs.Unavailable, "node is starting")
	}
	switch method {
	case rpcForward:
		var cmds [][]byte
		if err := msgpack.Unmarshal(body, &cmds); err != nil {
			return nil, errs.New(errs.InvalidArgument, "bad forwarded commands: %v", err)
		}
		if n.raft.State() != raft.Leader {
			return nil, errs.New(errs.Unavailable, msgNotLeader)
		}
		results := n.proposeAll(ctx, cmds)
		return msgpack.Marshal(results)
	case rpcReadIndex:
		idx, err := n.leaderReads.get(ctx)
		if err != nil {
			return nil, err
		}
		return msgpack.Marshal(idx)
	case rpcStatus:
		return msgpack.Marshal(n.status())
	case rpcRemovePeer:
		return nil, n.RemovePeer(ctx, string(body))
	case rpcTransfer:
		return nil, n.TransferLeadership(ctx, string(body))
	case rpcAuditRange:
		return n.serveAuditRange(body)
	}
	return nil, errs.New(errs.InvalidArgument, "unknown rpc method %d", method)
}

// proposeAll submits forwarded commands to this leader's own proposer, so
// they coalesce with local ones, and waits for every result.
func (n *Node) proposeAll(ctx context.Context, cmds [][]byte) []fsm.Result {
	// Queue every command, then collect the answers: no goroutine per
	// command (a forwarded batch of reads is dozens of commands).
	results := make([]fsm.Result, len(cmds))
	prs := make([]*proposal, len(cmds))
	var enqueueErr error
	for i := range cmds {
		if enqueueErr == nil {
			prs[i] = newProposal(cmds[i])
			enqueueErr = n.enqueue(ctx, prs[i])
		}
		if enqueueErr != nil {
			prs[i] = nil
			results[i] = fsm.Result{Err: errs.As(enqueueErr)}
		}
	}
	for i, pr := range prs {
		if pr == nil {
			continue
		}
		res, err := n.await(ctx, pr)
		if err != nil {
			res = fsm.Result{Err: errs.As(err)}
		}
		results[i] = res
	}
	// Commands that provably never reached Raft (leadership moved, or no
	// leader yet) are retried the way proposeRaw retries them, together.
	var wg sync.WaitGroup
	for i := range results {
		if prs[i] != nil && results[i].Index == 0 && notSubmitted(results[i].Err) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := n.proposeRaw(ctx, cmds[i])
				if err != nil {
					res = fsm.Result{Err: errs.As(err)}
				}
				results[i] = res
			}()
		}
	}
	wg.Wait()
	return results
}

func (n *Node) status() nodeStatus {
	st := nodeStatus{NodeID: n.cfg.NodeID, AppliedIndex: n.AppliedIndex(), HTTPAddr: n.cfg.HTTPAddr}
	if lc := n.raft.LastContact(); !lc.IsZero() && n.raft.State() != raft.Leader {
		st.LastContact = lc.UnixNano()
	}
	return st
}

// leaderReadIndex confirms leadership with a quorum and returns the commit
// index a linearizable read must wait for.
func (n *Node) leaderReadIndex() (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, errs.New(errs.Unavailable, "not the leader")
	}
	if err := n.readyForReads(n.raft.CurrentTerm()); err != nil {
		return 0, err
	}
	idx := n.raft.CommitIndex()
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return 0, errs.New(errs.Unavailable, "could not confirm leadership: %v", err)
	}
	return idx, nil
}

// readyForReads waits, once per term, until this leader's commit index is
// up to date: a new leader's may lag until an entry of its own term commits
// (Raft §6.4).
func (n *Node) readyForReads(term uint64) error {
	if n.readyTerm.Load() == term {
		return nil
	}
	if err := n.raft.Barrier(apitypes.MaxMinIndexWait).Error(); err != nil {
		return errs.New(errs.Unavailable, "new leader not ready for reads: %v", err)
	}
	n.readyTerm.Store(term)
	return nil
}

func (n *Node) callLeader(ctx context.Context, method uint8, body []byte) ([]byte, error) {
	addr, _ := n.raft.LeaderWithID()
	if addr == "" {
		return nil, errs.New(errs.Unavailable, msgNoLeader)
	}
	if n.rpc == nil {
		return nil, errs.New(errs.Unavailable, "no cluster transport")
	}
	return n.rpc.Call(ctx, string(addr), method, body)
}

func (n *Node) peerStatus(ctx context.Context, id, addr string) (nodeStatus, error) {
	var st nodeStatus
	if id != "" && id == n.cfg.NodeID {
		return n.status(), nil
	}
	if n.rpc == nil {
		return st, fmt.Errorf("no cluster transport")
	}
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	out, err := n.rpc.Call(ctx, addr, rpcStatus, nil)
	if err != nil {
		return st, err
	}
	err = msgpack.Unmarshal(out, &st)
	return st, err
}

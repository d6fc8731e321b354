package node

import (
	"context"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/audit"
	"github.com/cofferhq/coffer/errs"
	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"
)

// auditRangeMax bounds one fetched chunk of the audit trail.
const auditRangeMax = 1000

type auditRangeRequest struct {
	From uint64 `msgpack:"f"`
	To   uint64 `msgpack:"t"`
}

// serveAuditRange answers a peer's request for part of the local trail.
func (n *Node) serveAuditRange(body []byte) ([]byte, error) {
	var req auditRangeRequest
	if err := msgpack.Unmarshal(body, &req); err != nil || req.From == 0 || req.To < req.From {
		return nil, errs.New(errs.InvalidArgument, "bad audit range request")
	}
	entries, err := n.fsm.AuditStore().Range(req.From, req.To, auditRangeMax)
	if err != nil {
		return nil, errs.New(errs.Internal, "read audit range: %v", err)
	}
	return msgpack.Marshal(entries)
}

// auditFillLoop completes the local audit trail. A node that started from a
// snapshot (wiped, or far behind) holds only the entries applied since; the
// snapshot carried just the chain head. The older entries are fetched from
// peers backwards, each chunk checked against a trusted anchor (the prev_hash
// of the oldest entry held, or the replicated chain head) before it is
// stored, so a peer can't slip in a forged history.
func (n *Node) auditFillLoop() {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		if err := n.fillAuditTrail(); err != nil {
			n.logger.Debug("audit trail backfill incomplete; will retry", "error", err)
		}
		select {
		case <-n.shutdownCh:
			return
		case <-t.C:
		}
	}
}

func (n *Node) fillAuditTrail() error {
	store := n.fsm.AuditStore()
	var to uint64
	var anchor string
	if first, ok := store.First(); ok {
		if first <= 1 {
			return nil
		}
		e, found, err := store.Get(first)
		if err != nil || !found {
			return fmt.Errorf("read first local audit entry: %v", err)
		}
		to, anchor = first-1, e.PrevHash
	} else {
		head := n.fsm.State().AuditHead
		if head.Seq == 0 {
			return nil
		}
		// Entries after the head are being appended by Apply; those up to
		// it come from peers.
		to, anchor = head.Seq, head.Hash
		if last, ok := store.Last(); ok && last.Seq <= to {
			return nil // Apply filled it meanwhile; the next pass uses First
		}
	}
	for to > 0 {
		from := uint64(1)
		if to > auditRangeMax {
			from = to - auditRangeMax + 1
		}
		chunk, err := n.fetchAuditRange(from, to)
		if err != nil {
			return err
		}
		if err := checkChunk(chunk, from, to, anchor); err != nil {
			return err
		}
		if err := store.Append(chunk); err != nil {
			return fmt.Errorf("store fetched audit entries: %w", err)
		}
		anchor, to = chunk[0].PrevHash, from-1
	}
	n.logger.Info("audit trail backfilled from peers")
	return nil
}

// checkChunk verifies that chunk holds exactly from..to, is internally
// chained, ends at anchor and, from seq 1, starts at the genesis hash.
func checkChunk(chunk []apitypes.AuditEntry, from, to uint64, anchor string) error {
	if uint64(len(chunk)) != to-from+1 || chunk[0].Seq != from {
		return fmt.Errorf("peer returned %d entries for %d..%d", len(chunk), from, to)
	}
	prev := audit.Head{Seq: from - 1, Hash: chunk[0].PrevHash}
	if from == 1 {
		prev.Hash = audit.GenesisHash
	}
	if ok, broken := audit.VerifyEntries(prev, chunk); !ok {
		return fmt.Errorf("fetched audit entries fail the chain check at seq %d", broken)
	}
	if chunk[len(chunk)-1].Hash != anchor {
		return fmt.Errorf("fetched audit entries %d..%d do not link to the local trail", from, to)
	}
	return nil
}

// fetchAuditRange asks the leader, then every other server, for from..to.
func (n *Node) fetchAuditRange(from, to uint64) ([]apitypes.AuditEntry, error) {
	if n.rpc == nil {
		return nil, fmt.Errorf("no cluster transport")
	}
	body, _ := msgpack.Marshal(&auditRangeRequest{From: from, To: to})
	var addrs []string
	if a, _ := n.raft.LeaderWithID(); a != "" {
		addrs = append(addrs, string(a))
	}
	if cf := n.raft.GetConfiguration(); cf.Error() == nil {
		for _, s := range cf.Configuration().Servers {
			if s.ID != raft.ServerID(n.cfg.NodeID) {
				addrs = append(addrs, string(s.Address))
			}
		}
	}
	var lastErr error = fmt.Errorf("no peer to fetch from")
	for _, a := range addrs {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := n.rpc.Call(ctx, a, rpcAuditRange, body)
		cancel()
		if err != nil {
			lastErr = err
			continue
		}
		var entries []apitypes.AuditEntry
		if err := msgpack.Unmarshal(out, &entries); err != nil {
			lastErr = err
			continue
		}
		if uint64(len(entries)) == to-from+1 {
			return entries, nil
		}
		lastErr = fmt.Errorf("peer %s holds only part of %d..%d", a, from, to)
	}
	return nil, lastErr
}

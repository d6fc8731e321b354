package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/fsm"
	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"
)

// A snapshot file: magic, a length-prefixed msgpack header, the state stream
// (encrypted as stored), and a SHA-256 of everything before it.
const snapshotFileMagic = "COFFER-SNAPSHOT v1\n"

// SnapshotInfo is the header of a snapshot file.
type SnapshotInfo struct {
	ClusterID  string    `msgpack:"cluster_id" json:"cluster_id"`
	Index      uint64    `msgpack:"index" json:"index"`
	Term       uint64    `msgpack:"term" json:"term"`
	CreatedAt  time.Time `msgpack:"created_at" json:"created_at"`
	NodeID     string    `msgpack:"node_id" json:"node_id"`
	Secrets    int       `msgpack:"secrets" json:"secrets"`
	Versions   int       `msgpack:"versions" json:"versions"`
	Keys       int       `msgpack:"keys" json:"keys"`
	Tokens     int       `msgpack:"tokens" json:"tokens"`
	AuditSeq   uint64    `msgpack:"audit_seq" json:"audit_seq"`
	StateBytes int       `msgpack:"state_bytes" json:"state_bytes"`
	Checksum   string    `msgpack:"-" json:"checksum"`
	Size       int       `msgpack:"-" json:"size"`
}

// WriteSnapshot streams a snapshot of this node's applied state to w.
func (n *Node) WriteSnapshot(w io.Writer) (SnapshotInfo, error) {
	st := n.fsm.State()
	var state bytes.Buffer
	if err := fsm.WriteState(&state, st); err != nil {
		return SnapshotInfo{}, err
	}
	info := SnapshotInfo{
		ClusterID: st.ClusterID, Index: st.Index, Term: n.raft.CurrentTerm(), CreatedAt: time.Now().UTC(), NodeID: n.cfg.NodeID,
		Secrets: st.Secrets.Len(), Versions: st.VersionCount, Keys: st.Keys.Len(), Tokens: st.Tokens.Len(),
		AuditSeq: st.AuditHead.Seq, StateBytes: state.Len(),
	}
	hdr, err := msgpack.Marshal(&info)
	if err != nil {
		return info, err
	}
	h := sha256.New()
	mw := io.MultiWriter(w, h)
	var lenBuf [4]byte
	binary.BigEndian.PutUint32(lenBuf[:], uint32(len(hdr)))
	for _, part := range [][]byte{[]byte(snapshotFileMagic), lenBuf[:], hdr, state.Bytes()} {
		if _, err := mw.Write(part); err != nil {
			return info, fmt.Errorf("write snapshot: %w", err)
		}
	}
	sum := h.Sum(nil)
	if _, err := w.Write(sum); err != nil {
		return info, fmt.Errorf("write snapshot: %w", err)
	}
	info.Checksum = fmt.Sprintf("sha256:%x", sum)
	info.Size = len(snapshotFileMagic) + 4 + len(hdr) + state.Len() + len(sum)
	return info, nil
}

// ParseSnapshot checks a snapshot file's checksum and returns its header
// and state stream.
func ParseSnapshot(data []byte) (SnapshotInfo, []byte, error) {
	var info SnapshotInfo
	if len(data) < len(snapshotFileMagic)+4+sha256.Size || string(data[:len(snapshotFileMagic)]) != snapshotFileMagic {
		return info, nil, errors.New("not a Coffer snapshot file")
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return info, nil, errors.New("snapshot checksum mismatch: the file is corrupt or truncated")
	}
	rest := body[len(snapshotFileMagic):]
	hl := int(binary.BigEndian.Uint32(rest[:4]))
	if hl > len(rest)-4 {
		return info, nil, errors.New("snapshot header is corrupt")
	}
	if err := msgpack.Unmarshal(rest[4:4+hl], &info); err != nil {
		return info, nil, fmt.Errorf("snapshot header is corrupt: %w", err)
	}
	state := rest[4+hl:]
	if len(state) != info.StateBytes {
		return info, nil, errors.New("snapshot state size does not match its header")
	}
	info.Checksum = fmt.Sprintf("sha256:%x", sum)
	info.Size = len(data)
	return info, state, nil
}

// RestoreSnapshot replaces the cluster's state with a snapshot file's. It
// runs on the leader (a follower forwards the file).
func (n *Node) RestoreSnapshot(ctx context.Context, data []byte) error {
	info, state, err := ParseSnapshot(data)
	if err != nil {
		return errs.New(errs.InvalidArgument, "%v", err)
	}
	if cur := n.fsm.State().ClusterID; cur != "" && info.ClusterID != cur {
		return errs.New(errs.FailedPrecondition, "snapshot is from another cluster (%s, this is %s)", info.ClusterID, cur)
	}
	if _, err := fsm.ReadState(bytes.NewReader(state)); err != nil {
		return errs.New(errs.InvalidArgument, "snapshot state is corrupt: %v", err)
	}
	if n.raft.State() == raft.Leader {
		return n.restoreOnLeader(data)
	}
	_, err = n.callLeader(ctx, rpcRestore, data)
	return err
}

func (n *Node) restoreOnLeader(data []byte) error {
	info, state, err := ParseSnapshot(data)
	if err != nil {
		return errs.New(errs.InvalidArgument, "%v", err)
	}
	if cur := n.fsm.State().ClusterID; cur != "" && info.ClusterID != cur {
		return errs.New(errs.FailedPrecondition, "snapshot is from another cluster (%s, this is %s)", info.ClusterID, cur)
	}
	st, err := fsm.ReadState(bytes.NewReader(state))
	if err != nil {
		return errs.New(errs.InvalidArgument, "snapshot state is corrupt: %v", err)
	}
	if err := n.checkKeyMaterial(st, "the snapshot's"); err != nil {
		return errs.New(errs.FailedPrecondition, "%v", err)
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: info.Index, Term: info.Term, Size: int64(len(state))}
	if err := n.raft.Restore(meta, bytes.NewReader(state), time.Minute); err != nil {
		return errs.New(errs.Unavailable, "restore: %v", err)
	}
	n.logger.Info("state restored from snapshot", "snapshot_index", info.Index, "secrets", info.Secrets)
	return nil
}

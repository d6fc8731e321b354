package node

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/fsm"
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
	// The state is streamed, not buffered: at a million secrets it is
	// hundreds of megabytes. The header's StateBytes is left 0 (unknown);
	// the trailing checksum covers everything.
	st := n.fsm.State()
	info := SnapshotInfo{
		ClusterID: st.ClusterID, Index: st.Index, Term: n.raft.CurrentTerm(), CreatedAt: time.Now().UTC(), NodeID: n.cfg.NodeID,
		Secrets: st.Secrets.Len(), Versions: st.VersionCount, Keys: st.Keys.Len(), Tokens: st.Tokens.Len(),
		AuditSeq: st.AuditHead.Seq,
	}
	hdr, err := msgpack.Marshal(&info)
	if err != nil {
		return info, err
	}
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(w, h)}
	var lenBuf [4]byte
	binary.BigEndian.PutUint32(lenBuf[:], uint32(len(hdr)))
	for _, part := range [][]byte{[]byte(snapshotFileMagic), lenBuf[:], hdr} {
		if _, err := cw.Write(part); err != nil {
			return info, fmt.Errorf("write snapshot: %w", err)
		}
	}
	if err := fsm.WriteState(cw, st); err != nil {
		return info, err
	}
	sum := h.Sum(nil)
	if _, err := w.Write(sum); err != nil {
		return info, fmt.Errorf("write snapshot: %w", err)
	}
	info.Checksum = fmt.Sprintf("sha256:%x", sum)
	info.Size = int(cw.n) + len(sum)
	return info, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

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
	if info.StateBytes != 0 && len(state) != info.StateBytes {
		return info, nil, errors.New("snapshot state size does not match its header")
	}
	info.Checksum = fmt.Sprintf("sha256:%x", sum)
	info.Size = len(data)
	return info, state, nil
}

// MaxRestoreStateBytes bounds a restore: the state travels through the Raft
// log as one entry, so every node applies it at the same point of the log.
const MaxRestoreStateBytes = 60 << 20

// CheckRestore validates a snapshot file for restoring into this cluster and
// returns its state stream. A snapshot from another cluster is accepted only
// by a fresh cluster (no secrets, no key but default, no policy, at most the
// root token): that is disaster recovery onto new nodes. The root key must
// unwrap every key version of the snapshot.
func (n *Node) CheckRestore(data []byte) (SnapshotInfo, []byte, error) {
	info, state, err := ParseSnapshot(data)
	if err != nil {
		return info, nil, errs.New(errs.InvalidArgument, "%v", err)
	}
	if len(state) > MaxRestoreStateBytes {
		return info, nil, errs.New(errs.TooLarge, "snapshot state is %d MiB; restores through the API take at most %d MiB", len(state)>>20, MaxRestoreStateBytes>>20)
	}
	cur := n.fsm.State()
	fresh := cur.Secrets.Len() == 0 && cur.Keys.Len() <= 1 && cur.Policies.Len() == 0 && cur.Tokens.Len() <= 1
	if cur.ClusterID != "" && info.ClusterID != cur.ClusterID && !fresh {
		return info, nil, errs.New(errs.FailedPrecondition, "snapshot is from another cluster (%s, this is %s); only a fresh cluster accepts it", info.ClusterID, cur.ClusterID)
	}
	st, err := fsm.ReadState(bytes.NewReader(state))
	if err != nil {
		return info, nil, errs.New(errs.InvalidArgument, "snapshot state is corrupt: %v", err)
	}
	if err := n.checkKeyMaterial(st, "the snapshot's"); err != nil {
		return info, nil, errs.New(errs.FailedPrecondition, "%v", err)
	}
	return info, state, nil
}

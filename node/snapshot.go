package node

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/fsm"
	"github.com/cofferhq/coffer/kms"
	"github.com/vmihailenco/msgpack/v5"
)

// A snapshot file (format 2): the magic line, a length-prefixed msgpack
// header, the state stream (encrypted as stored), then a trailer of the
// SHA-256 of everything before it and a MAC of that digest:
// HMAC-SHA256(snapshot MAC key, macContext || digest). The MAC key is
// derived from the root key, so only a holder of the root key can make a
// file that restores (SPEC §6, "Holder of a backup file"). Through the
// digest the MAC covers every byte of the file, with one pass over it (a
// snapshot of a million secrets is 600 MiB). The digest alone lets a file
// be checked for corruption without the root key; it proves nothing about
// who wrote it.
//
// Format 1 (magic "v1", digest only) is refused by restore: anyone could
// rewrite such a file and its digest.
const (
	snapshotFileMagic   = "COFFER-SNAPSHOT v2\n"
	snapshotFileMagicV1 = "COFFER-SNAPSHOT v1\n"
	snapshotFormat      = 2
	snapshotMACLabel    = "snapshot-mac"
	snapshotMACContext  = "coffer snapshot mac v2\x00"
	snapshotTrailerSize = 2 * sha256.Size
)

// SnapshotInfo is the header of a snapshot file.
type SnapshotInfo struct {
	Format     int       `msgpack:"format" json:"format"`
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
	// MACKey is the fingerprint of the root key whose derived key made the
	// MAC (as the file says; only a verified MAC proves it).
	MACKey   string `msgpack:"mac_key" json:"mac_key,omitempty"`
	Checksum string `msgpack:"-" json:"checksum"`
	Size     int    `msgpack:"-" json:"size"`
	// MACVerified is set by VerifySnapshot: the MAC was checked against the
	// root keys given, and MACKey names the one that matched.
	MACVerified bool `msgpack:"-" json:"mac_verified"`
}

// WriteSnapshot streams a snapshot of this node's applied state to w,
// authenticated with a key derived from the newest root key.
func (n *Node) WriteSnapshot(w io.Writer) (SnapshotInfo, error) {
	st := n.fsm.State()
	info := SnapshotInfo{
		ClusterID: st.ClusterID, Index: st.Index, Term: n.raft.CurrentTerm(), CreatedAt: time.Now().UTC(), NodeID: n.cfg.NodeID,
		Secrets: st.Secrets.Len(), Versions: st.VersionCount, Keys: st.Keys.Len(), Tokens: st.Tokens.Len(),
		AuditSeq: st.AuditHead.Seq,
	}
	return writeSnapshot(w, st, info, n.keys.Root())
}

// writeSnapshot writes st as a snapshot file with header info, its MAC
// keyed from the newest of root.
func writeSnapshot(w io.Writer, st *fsm.State, info SnapshotInfo, root *kms.RootKeys) (SnapshotInfo, error) {
	macKeys := root.DeriveKeys(snapshotMACLabel)
	if len(macKeys) == 0 {
		return info, errors.New("write snapshot: no root key to authenticate it with")
	}
	// The state is streamed, not buffered: at a million secrets it is
	// hundreds of megabytes. The header's StateBytes is left 0 (unknown);
	// the trailer covers everything.
	info.Format, info.MACKey = snapshotFormat, root.Fingerprint()
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
	trailer := snapshotMAC(macKeys[len(macKeys)-1], sum, sum)
	if _, err := w.Write(trailer); err != nil {
		return info, fmt.Errorf("write snapshot: %w", err)
	}
	info.Checksum = fmt.Sprintf("sha256:%x", sum)
	info.Size = int(cw.n) + len(trailer)
	info.MACVerified = true // made here, with that key
	return info, nil
}

// snapshotMAC appends to dst the MAC of a file whose SHA-256 is digest.
func snapshotMAC(key, digest, dst []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(snapshotMACContext))
	m.Write(digest)
	return m.Sum(dst)
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

// errOldSnapshotFormat refuses format-1 files: their SHA-256 trailer can be
// recomputed by anyone who changes them.
var errOldSnapshotFormat = errors.New("snapshot file is in format 1 (written before snapshots were authenticated): " +
	"it carries no MAC, so it can't be told from a tampered file and is not restored; take a new snapshot with this version")

// ParseSnapshot checks a snapshot file's structure and SHA-256, without the
// root key, and returns its header and state stream. It proves the file is
// intact, not that a cluster wrote it: anyone can recompute a digest. What
// is restored goes through VerifySnapshot. Format-1 files parse (for
// `coffer snapshot inspect`) with Format 1.
func ParseSnapshot(data []byte) (SnapshotInfo, []byte, error) {
	var info SnapshotInfo
	format, err := snapshotFileFormat(data)
	if err != nil {
		return info, nil, err
	}
	trailer := snapshotTrailerSize
	if format == 1 {
		trailer = sha256.Size
	}
	if len(data) < len(snapshotFileMagic)+4+trailer {
		return info, nil, errors.New("snapshot file is truncated")
	}
	body, sum := data[:len(data)-trailer], data[len(data)-trailer:][:sha256.Size]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return info, nil, errors.New("snapshot checksum mismatch: the file is corrupt or truncated")
	}
	return parseSnapshotBody(data, body, format)
}

// VerifySnapshot checks a snapshot file's MAC against every root key of
// root (a rotation keeps several; files are written with the newest)
// before it reads anything else of the file, then parses it. A file whose
// MAC doesn't verify under any of them, or of format 1, is refused.
func VerifySnapshot(data []byte, root *kms.RootKeys) (SnapshotInfo, []byte, error) {
	var info SnapshotInfo
	format, err := snapshotFileFormat(data)
	if err != nil {
		return info, nil, err
	}
	if format == 1 {
		return info, nil, errOldSnapshotFormat
	}
	if len(data) < len(snapshotFileMagic)+4+snapshotTrailerSize {
		return info, nil, errors.New("snapshot file is truncated")
	}
	body, mac := data[:len(data)-snapshotTrailerSize], data[len(data)-sha256.Size:]
	d := sha256.Sum256(body)
	sum := d[:]
	matched := -1
	buf := make([]byte, 0, sha256.Size)
	for i, key := range root.DeriveKeys(snapshotMACLabel) {
		if hmac.Equal(snapshotMAC(key, sum, buf[:0]), mac) {
			matched = i
		}
	}
	if matched < 0 {
		return info, nil, errors.New("snapshot MAC does not verify: the file was changed after it was written, " +
			"or it was written by a cluster under another root key (the node checks it with " + loadedKeys(root) + ")")
	}
	// The MAC covers the digest the trailer holds too (it is computed over
	// the file's own), so a mismatch here means a corrupt trailer.
	if !bytes.Equal(data[len(body):len(body)+sha256.Size], sum) {
		return info, nil, errors.New("snapshot checksum mismatch: the file is corrupt")
	}
	info, state, err := parseSnapshotBody(data, body, format)
	if err != nil {
		return info, nil, err
	}
	if fps := root.Fingerprints(); matched < len(fps) {
		info.MACKey = fps[matched]
	}
	info.MACVerified = true
	return info, state, nil
}

// snapshotFileFormat reads the magic line.
func snapshotFileFormat(data []byte) (int, error) {
	switch {
	case bytes.HasPrefix(data, []byte(snapshotFileMagic)):
		return snapshotFormat, nil
	case bytes.HasPrefix(data, []byte(snapshotFileMagicV1)):
		return 1, nil
	}
	return 0, errors.New("not a Coffer snapshot file")
}

// parseSnapshotBody reads the header and finds the state stream in body
// (data without its trailer), once the trailer has been checked.
func parseSnapshotBody(data, body []byte, format int) (SnapshotInfo, []byte, error) {
	var info SnapshotInfo
	rest := body[len(snapshotFileMagic):]
	hl := int(binary.BigEndian.Uint32(rest[:4]))
	if hl > len(rest)-4 {
		return info, nil, errors.New("snapshot header is corrupt")
	}
	if err := msgpack.Unmarshal(rest[4:4+hl], &info); err != nil {
		return info, nil, fmt.Errorf("snapshot header is corrupt: %w", err)
	}
	if format == 1 {
		info.Format = 1
	} else if info.Format != format {
		return info, nil, fmt.Errorf("snapshot header says format %d, its first line %d", info.Format, format)
	}
	state := rest[4+hl:]
	if info.StateBytes != 0 && len(state) != info.StateBytes {
		return info, nil, errors.New("snapshot state size does not match its header")
	}
	info.Checksum = fmt.Sprintf("sha256:%x", data[len(body):len(body)+sha256.Size])
	info.Size = len(data)
	return info, state, nil
}

// MaxRestoreStateBytes bounds a restore: the state travels through the Raft
// log as one entry, so every node applies it at the same point of the log.
const MaxRestoreStateBytes = 60 << 20

// CheckRestore validates a snapshot file for restoring into this cluster and
// returns its state stream. The MAC is checked first, under this node's root
// keys; then every record of the state is validated (fsm.ValidateState), so
// a file that was changed, or whose state no command could work with, is
// InvalidArgument and nothing changes. A snapshot from another cluster is
// accepted only by a fresh cluster (no secrets, no key but default, no
// policy, at most the root token): that is disaster recovery onto new nodes
// under the same root key. The root key must unwrap every key version of
// the snapshot.
func (n *Node) CheckRestore(data []byte) (SnapshotInfo, []byte, error) {
	info, state, err := VerifySnapshot(data, n.keys.Root())
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
	if err := fsm.ValidateState(st); err != nil {
		return info, nil, errs.New(errs.InvalidArgument, "snapshot state is invalid: %v", err)
	}
	if err := n.checkKeyMaterial(st, "the snapshot's"); err != nil {
		return info, nil, errs.New(errs.FailedPrecondition, "%v", err)
	}
	return info, state, nil
}

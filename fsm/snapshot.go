package fsm

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/cofferhq/coffer/acl"
	"github.com/cofferhq/coffer/audit"
	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"
)

// snapshotMagic starts every state snapshot; snapshotFormat is bumped on
// incompatible changes.
const (
	snapshotMagic  = "COFFER-STATE\n"
	snapshotFormat = 1
)

// Record types in a snapshot stream.
const (
	recSecret byte = 'S'
	recKey    byte = 'K'
	recToken  byte = 'T'
	recPolicy byte = 'P'
	recEnd    byte = 'E'
)

// SnapshotHeader opens a state snapshot.
type SnapshotHeader struct {
	Format          int        `msgpack:"f"`
	ClusterID       string     `msgpack:"id"`
	RootFingerprint string     `msgpack:"fp"`
	Initialized     bool       `msgpack:"init"`
	Index           uint64     `msgpack:"i"`
	AuditHead       audit.Head `msgpack:"ah"`
	VersionCount    int        `msgpack:"vc"`
	Secrets         int        `msgpack:"ns"`
	Keys            int        `msgpack:"nk"`
	Tokens          int        `msgpack:"nt"`
	Policies        int        `msgpack:"np"`
}

type snapshot struct {
	st    *State
	store audit.Store
}

// Snapshot captures the current state: with immutable trees it is a pointer
// copy. The audit trail is not in the snapshot, only its chain head.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.snapshotAt.Store(f.applied.Load()) // Raft calls this between applies
	return &snapshot{st: f.State(), store: f.store}, nil
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	// Entries up to this index must be durable locally before Raft may
	// compact the log entries that carried them.
	if err := s.store.Sync(); err != nil {
		sink.Cancel()
		return fmt.Errorf("sync audit store before snapshot: %w", err)
	}
	if err := WriteState(sink, s.st); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) Release() {}

// WriteState writes st as a snapshot stream.
func WriteState(w io.Writer, st *State) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	enc := msgpack.NewEncoder(bw)
	enc.SetSortMapKeys(true) // identical states give identical bytes
	if _, err := bw.WriteString(snapshotMagic); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	hdr := SnapshotHeader{
		Format: snapshotFormat, ClusterID: st.ClusterID, RootFingerprint: st.RootFingerprint,
		Initialized: st.Initialized, Index: st.Index, AuditHead: st.AuditHead, VersionCount: st.VersionCount,
		Secrets: st.Secrets.Len(), Keys: st.Keys.Len(), Tokens: st.Tokens.Len(), Policies: st.Policies.Len(),
	}
	if err := enc.Encode(&hdr); err != nil {
		return fmt.Errorf("write snapshot header: %w", err)
	}
	var err error
	put := func(typ byte, v any) bool {
		if err = enc.EncodeUint8(typ); err == nil {
			err = enc.Encode(v)
		}
		return err != nil // stop walking on error
	}
	st.Secrets.Ascend("", func(v *Secret) bool {
		if err = enc.EncodeUint8(recSecret); err == nil {
			err = writeSecret(enc, v)
		}
		return err == nil
	})
	if err == nil {
		st.Keys.Root().Walk(func(_ []byte, v *Key) bool { return put(recKey, v) })
	}
	if err == nil {
		st.Tokens.Root().Walk(func(_ []byte, v *Token) bool { return put(recToken, v) })
	}
	if err == nil {
		st.Policies.Root().Walk(func(_ []byte, v *acl.Policy) bool { return put(recPolicy, v) })
	}
	if err == nil {
		err = enc.EncodeUint8(recEnd)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

// ReadState parses a snapshot stream into a new State.
func ReadState(r io.Reader) (*State, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return nil, errors.New("not a Coffer state snapshot")
	}
	dec := msgpack.NewDecoder(br)
	var hdr SnapshotHeader
	if err := dec.Decode(&hdr); err != nil {
		return nil, fmt.Errorf("read snapshot header: %w", err)
	}
	if hdr.Format != snapshotFormat {
		return nil, fmt.Errorf("snapshot format %d is not supported (want %d)", hdr.Format, snapshotFormat)
	}
	st := emptyState()
	st.ClusterID, st.RootFingerprint, st.Initialized = hdr.ClusterID, hdr.RootFingerprint, hdr.Initialized
	st.Index, st.AuditHead, st.VersionCount = hdr.Index, hdr.AuditHead, hdr.VersionCount
	keys, tokens, hashes, pols := st.Keys.Txn(), st.Tokens.Txn(), st.TokenHashes.Txn(), st.Policies.Txn()
	records := newRecordDecoder(dec)
	for {
		typ, err := dec.DecodeUint8()
		if err != nil {
			return nil, fmt.Errorf("read snapshot record: %w", err)
		}
		switch typ {
		case recSecret:
			var s Secret
			if err := records.secret(&s); err != nil {
				return nil, fmt.Errorf("read secret record: %w", err)
			}
			st.Secrets.insert(&s) // a fresh tree, published only when complete
		case recKey:
			var k Key
			if err := decodeBounded(dec, &k); err != nil {
				return nil, fmt.Errorf("read key record: %w", err)
			}
			keys.Insert([]byte(k.Name), &k)
		case recToken:
			var t Token
			if err := decodeBounded(dec, &t); err != nil {
				return nil, fmt.Errorf("read token record: %w", err)
			}
			tokens.Insert([]byte(t.Accessor), &t)
			hashes.Insert([]byte(t.Hash), t.Accessor)
		case recPolicy:
			var p acl.Policy
			if err := decodeBounded(dec, &p); err != nil {
				return nil, fmt.Errorf("read policy record: %w", err)
			}
			pols.Insert([]byte(p.Name), &p)
		case recEnd:
			st.Keys, st.Tokens, st.TokenHashes = keys.CommitOnly(), tokens.CommitOnly(), hashes.CommitOnly()
			st.Policies = pols.CommitOnly()
			if st.Secrets.Len() != hdr.Secrets || st.Keys.Len() != hdr.Keys || st.Tokens.Len() != hdr.Tokens || st.Policies.Len() != hdr.Policies {
				return nil, errors.New("snapshot is truncated or corrupt: record counts do not match its header")
			}
			st.rebuildBindings()
			return st, nil
		default:
			return nil, fmt.Errorf("snapshot is corrupt: unknown record type %d", typ)
		}
	}
}

// Restore replaces the state with a snapshot's. The local audit store drops
// entries past the snapshot's chain head: the log entries after it are
// replayed and rewrite them.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := ReadState(rc)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	// If the local trail ends before the snapshot's head, keeping it would
	// leave a gap in the chain: start the local trail afresh at the head.
	keep := st.AuditHead.Seq
	if last, ok := f.store.Last(); !ok || last.Seq < keep {
		keep = 0
	}
	if err := f.store.TruncateAfter(keep); err != nil {
		return fmt.Errorf("restore snapshot: truncate audit store: %w", err)
	}
	f.snapshotAt.Store(f.applied.Load())
	f.publish(st)
	return nil
}

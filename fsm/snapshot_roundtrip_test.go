package fsm

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/audit"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"
)

// ftSink is an in-memory raft.SnapshotSink.
type ftSink struct {
	bytes.Buffer
	failWrites bool
	closed     bool
	cancelled  bool
}

func (s *ftSink) Write(p []byte) (int, error) {
	if s.failWrites {
		return 0, errors.New("disk full")
	}
	return s.Buffer.Write(p)
}
func (s *ftSink) ID() string    { return "ft-sink" }
func (s *ftSink) Close() error  { s.closed = true; return nil }
func (s *ftSink) Cancel() error { s.cancelled = true; return nil }

var _ raft.SnapshotSink = (*ftSink)(nil)

// ftPopulated returns a harness whose FSM holds secrets (with destroyed
// versions, labels, access policies), tokens and an audit trail.
func ftPopulated(t testing.TB) *ftHarness {
	h := newFtHarness(t)
	logs := ftScriptLogs(t)
	for _, l := range logs {
		h.f.Apply(l)
		h.index = l.Index
	}
	h.now += int64(len(logs)) * 1e9 // the time of the last entry
	return h
}

func TestWriteReadStateRoundTrip(t *testing.T) {
	h := ftPopulated(t)
	st := h.f.State()
	if st.Secrets.Len() < 4 || st.Tokens.Len() < 1 || st.AuditHead.Seq == 0 {
		t.Fatalf("populated state too small: %d secrets %d tokens", st.Secrets.Len(), st.Tokens.Len())
	}
	var buf bytes.Buffer
	if err := WriteState(&buf, st); err != nil {
		t.Fatal(err)
	}
	got, err := ReadState(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	ftSameState(t, st, got)
	// Token lookups by hash work on the restored state.
	if tok, ok := got.TokenByHash(ftRootHash); !ok || tok.Accessor != ftRootAcc {
		t.Fatal("root token not found by hash after ReadState")
	}
	// Destroyed versions stay destroyed and without material.
	sec, _ := got.Secret("/a/x")
	if !sec.Versions[0].Destroyed || sec.Versions[0].Ciphertext != nil || sec.Versions[0].WrappedDEK != nil || sec.CurrentVersion() != 2 {
		t.Fatalf("destroyed version after round trip: %+v", sec.Versions[0])
	}
	// Writing the restored state again reads back the same state.
	var buf2 bytes.Buffer
	if err := WriteState(&buf2, got); err != nil {
		t.Fatal(err)
	}
	again, err := ReadState(&buf2)
	if err != nil {
		t.Fatal(err)
	}
	ftSameState(t, st, again)

	// The empty state round-trips too.
	var eb bytes.Buffer
	if err := WriteState(&eb, emptyState()); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadState(&eb); err != nil {
		t.Fatalf("empty state: %v", err)
	}
}

// ftRecords splits a state stream into its raw header and records.
type ftRecord struct {
	typ  uint8
	body msgpack.RawMessage
}

func ftSplit(t testing.TB, stream []byte) (msgpack.RawMessage, []ftRecord) {
	t.Helper()
	if !bytes.HasPrefix(stream, []byte(snapshotMagic)) {
		t.Fatal("no magic")
	}
	dec := msgpack.NewDecoder(bytes.NewReader(stream[len(snapshotMagic):]))
	hdr, err := dec.DecodeRaw()
	if err != nil {
		t.Fatal(err)
	}
	var recs []ftRecord
	for {
		typ, err := dec.DecodeUint8()
		if err != nil {
			t.Fatal(err)
		}
		if typ == recEnd {
			return hdr, recs
		}
		body, err := dec.DecodeRaw()
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, ftRecord{typ, body})
	}
}

func ftJoin(t testing.TB, hdr msgpack.RawMessage, recs []ftRecord) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString(snapshotMagic)
	enc := msgpack.NewEncoder(&buf)
	if err := enc.Encode(hdr); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := enc.EncodeUint8(r.typ); err != nil {
			t.Fatal(err)
		}
		if err := enc.Encode(r.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.EncodeUint8(recEnd); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadStateRejectsCorruptStreams(t *testing.T) {
	h := ftPopulated(t)
	var buf bytes.Buffer
	if err := WriteState(&buf, h.f.State()); err != nil {
		t.Fatal(err)
	}
	stream := buf.Bytes()
	hdr, recs := ftSplit(t, stream)
	if _, err := ReadState(bytes.NewReader(ftJoin(t, hdr, recs))); err != nil {
		t.Fatalf("re-joined stream does not read: %v", err)
	}

	// Every strict prefix of the stream is refused.
	for n := 0; n < len(stream); n++ {
		if _, err := ReadState(bytes.NewReader(stream[:n])); err == nil {
			t.Fatalf("a stream truncated to %d of %d bytes was accepted", n, len(stream))
		}
	}

	without := func(typ uint8) []ftRecord {
		var out []ftRecord
		dropped := false
		for _, r := range recs {
			if r.typ == typ && !dropped {
				dropped = true
				continue
			}
			out = append(out, r)
		}
		if !dropped {
			t.Fatalf("no record of type %c", typ)
		}
		return out
	}
	var hdrMap map[string]any
	if err := msgpack.Unmarshal(hdr, &hdrMap); err != nil {
		t.Fatal(err)
	}
	withHeader := func(key string, v any) msgpack.RawMessage {
		m := map[string]any{}
		for k, x := range hdrMap {
			m[k] = x
		}
		m[key] = v
		b, err := msgpack.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := map[string][]byte{
		// Record counts must match the header: a stream cut at a record
		// boundary and closed with an end marker is still refused.
		"a secret record missing":  ftJoin(t, hdr, without(recSecret)),
		"a token record missing":   ftJoin(t, hdr, without(recToken)),
		"a key record missing":     ftJoin(t, hdr, without(recKey)),
		"no records at all":        ftJoin(t, hdr, nil),
		"unknown record type":      ftJoin(t, hdr, append(append([]ftRecord{}, recs...), ftRecord{'Z', msgpack.RawMessage{0xc0}})),
		"unknown record type 0":    ftJoin(t, hdr, append([]ftRecord{{0, msgpack.RawMessage{0xc0}}}, recs...)),
		"header counts one more":   ftJoin(t, withHeader("ns", len(recs)+100), recs),
		"unsupported format":       ftJoin(t, withHeader("f", 99), recs),
		"bad magic":                append([]byte("COFFER-STATE\r"), stream[len(snapshotMagic):]...),
		"empty":                    {},
		"garbage record body":      ftJoin(t, hdr, append([]ftRecord{{recSecret, msgpack.RawMessage{0xc1}}}, recs...)),
		"secret record of a token": ftJoin(t, hdr, append([]ftRecord{{recSecret, msgpack.RawMessage{0x93, 1, 2, 3}}}, recs...)),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			st, err := ReadState(bytes.NewReader(data))
			if err == nil {
				t.Fatalf("accepted: %d secrets", st.Secrets.Len())
			}
			if name == "unknown record type" && !strings.Contains(err.Error(), "unknown record type") {
				t.Fatalf("error %q does not name the unknown record type", err)
			}
			if strings.HasPrefix(name, "a ") || name == "no records at all" || name == "header counts one more" {
				if !strings.Contains(err.Error(), "count") {
					t.Fatalf("error %q does not mention the record counts", err)
				}
			}
		})
	}
}

func TestFSMSnapshotRestore(t *testing.T) {
	src := ftPopulated(t)
	snap, err := src.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	snapState := src.f.State()

	// Changes after Snapshot() are not in it: it is a point-in-time copy.
	extra := ftEnv(t, CmdCreateSecret, &CreateSecret{Path: "/after/snap", UID: "u-after", KMSKey: "default", Value: ftSealed(4)}, ftRootAcc, ftEntry("secrets.create", "/after/snap"))
	ftWantCode(t, "create after snapshot", src.one(extra), "")

	sink := &ftSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if !sink.closed || sink.cancelled {
		t.Fatalf("Persist: closed=%v cancelled=%v", sink.closed, sink.cancelled)
	}

	// Restore into a fresh FSM.
	dst := newFtHarness(t)
	if err := dst.f.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	ftSameState(t, snapState, dst.f.State())
	if _, ok := dst.f.State().Secret("/after/snap"); ok {
		t.Fatal("the snapshot holds a change made after Snapshot()")
	}
	if _, ok := dst.store.Last(); ok {
		t.Fatal("a fresh FSM's audit store is not empty after Restore")
	}

	// Replaying the log after the snapshot converges both FSMs, and the
	// restored trail continues the chain from the snapshot's head.
	dst.index, dst.now = snapState.Index, src.now-1e9
	l := dst.logOf(extra)
	if l.Index != src.index {
		t.Fatalf("log index %d, want %d", l.Index, src.index)
	}
	out := dst.f.Apply(l)
	if rs := out.([]Result); rs[0].Err != nil {
		t.Fatal(rs[0].Err)
	}
	ftSameState(t, src.f.State(), dst.f.State())
	tail := ftStoreEntries(t, dst.store)
	if ok, broken := audit.VerifyEntries(snapState.AuditHead, tail); !ok || len(tail) != 1 || tail[0].Seq != snapState.AuditHead.Seq+1 {
		t.Fatalf("restored trail does not continue the chain (broken at %d, %d entries)", broken, len(tail))
	}

	// Restoring an older snapshot into an FSM whose trail went further
	// truncates the trail to the snapshot's head.
	if err := src.f.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if last, ok := src.store.Last(); !ok || last.Seq != snapState.AuditHead.Seq || last.Hash != snapState.AuditHead.Hash {
		t.Fatalf("trail after restoring an older snapshot ends at %d, want %d", last.Seq, snapState.AuditHead.Seq)
	}
	ftSameState(t, snapState, src.f.State())

	// A corrupt snapshot is refused and leaves the state alone.
	before := dst.f.State()
	corrupt := sink.Bytes()[:sink.Len()/2]
	if err := dst.f.Restore(io.NopCloser(bytes.NewReader(corrupt))); err == nil {
		t.Fatal("Restore accepted a truncated snapshot")
	}
	if dst.f.State() != before {
		t.Fatal("a refused Restore changed the state")
	}

	// Persist to a failing sink cancels it.
	snap2, _ := dst.f.Snapshot()
	bad := &ftSink{failWrites: true}
	if err := snap2.Persist(bad); err == nil {
		t.Fatal("Persist to a failing sink succeeded")
	}
	if !bad.cancelled {
		t.Fatal("Persist did not cancel a failing sink")
	}
}

// TestRestoreThenApplyKeepsSeqGapFree: a restored FSM keeps appending to its
// own store, gap-free from the snapshot head.
func TestRestoreThenApplyKeepsSeqGapFree(t *testing.T) {
	src := ftPopulated(t)
	var buf bytes.Buffer
	if err := WriteState(&buf, src.f.State()); err != nil {
		t.Fatal(err)
	}
	store := audit.NewMemoryStore()
	f := New(store, nil, hclog.NewNullLogger())
	if err := f.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	head := f.State().AuditHead
	for i := 0; i < 3; i++ {
		data, _ := EncodeBatch(&Batch{Time: src.now + int64(i+1)*1e9, Cmds: []Envelope{ftEnv(t, CmdAuditOnly, &AuditOnly{}, ftRootAcc, ftEntry("secrets.list", "/"), ftEntry("secrets.list", "/a/"))}})
		f.Apply(&raft.Log{Index: src.index + uint64(i) + 1, Data: data})
	}
	es := ftStoreEntries(t, store)
	if len(es) != 6 || es[0].Seq != head.Seq+1 {
		t.Fatalf("entries after restore: %d, first seq %d (head %d)", len(es), es[0].Seq, head.Seq)
	}
	if ok, broken := audit.VerifyEntries(head, es); !ok {
		t.Fatalf("chain broken at %d", broken)
	}
}

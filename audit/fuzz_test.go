package audit

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
)

// seedLines are real lines (as FileSink writes them) and near misses.
func seedLines() [][]byte {
	entries, _ := chain(Head{}, 4)
	var out [][]byte
	for i := range entries {
		out = append(out, entries[i].AppendJSON(nil))
	}
	l := string(out[0])
	out = append(out,
		[]byte(l[:len(l)/2]),
		[]byte(`{"seq":1,"seq":2}`),
		[]byte(`{"seq":"1"}`),
		[]byte(`{"principal":{"accessor":"a","name":"b","name":"c"}}`),
		[]byte(`{"time":"2025-03-01T12:00:00.123456789+01:00"}`),
		[]byte(`{"path":"\ud800"}`),
		[]byte("{\"path\":\"\xff\"}"),
		[]byte(`{} {}`),
		[]byte(`{"SEQ":1}`),
	)
	return out
}

// FuzzParseLine: ParseLine never panics; a line it accepts reads the same
// with encoding/json (readers agree on it), and writing the entry back and
// parsing it again gives the same entry.
func FuzzParseLine(f *testing.F) {
	for _, l := range seedLines() {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := ParseLine(line)
		if err != nil {
			return
		}
		var std apitypes.AuditEntry
		if err := json.Unmarshal(line, &std); err != nil {
			t.Fatalf("accepted a line encoding/json refuses: %v\n%q", err, line)
		}
		std.Time = std.Time.UTC()
		if std != e {
			t.Fatalf("encoding/json reads the accepted line differently:\n%+v\n%+v\n%q", std, e, line)
		}
		back, err := ParseLine(e.AppendJSON(nil))
		if err != nil || back != e {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, back, e)
		}
	})
}

// FuzzVerifyJSONL: the file verifier never panics, and a file it passes is
// a chain VerifyEntries also accepts from the same anchor.
func FuzzVerifyJSONL(f *testing.F) {
	entries, _ := chain(Head{}, 5)
	good := jsonLines(entries)
	f.Add(good)
	f.Add(jsonLines(entries[2:]))
	f.Add(replaceLine(good, 3, func(s string) string { return s[:30] + "\n" + s }))
	f.Add(replaceLine(good, 2, func(s string) string { return s + ` ` }))
	f.Add(good[:len(good)-20])
	for _, l := range seedLines() {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, file []byte) {
		var got []Entry
		r, err := VerifyJSONL(bytes.NewReader(file), FileOptions{CheckpointEvery: 2, OnEntry: func(e *Entry) { got = append(got, *e) }})
		if err != nil {
			t.Fatalf("I/O error from a bytes.Reader: %v", err)
		}
		if !r.OK {
			if r.Reason == "" || r.Line == 0 {
				t.Fatalf("failure without a line or reason: %+v", r)
			}
			return
		}
		if uint64(len(got)) != r.Entries {
			t.Fatalf("%d entries seen, report says %d", len(got), r.Entries)
		}
		if len(got) == 0 {
			return
		}
		anchor := Head{Seq: got[0].Seq - 1, Hash: got[0].PrevHash}
		if got[0].Seq <= 1 {
			anchor = Head{Hash: GenesisHash}
		}
		if ok, broken := VerifyEntries(anchor, got); !ok {
			t.Fatalf("file passed, its entries break at %d", broken)
		}
		if last := got[len(got)-1]; last.Seq != r.Last || last.Hash != r.LastHash {
			t.Fatalf("report's last %d %s, entries end at %d %s", r.Last, r.LastHash, last.Seq, last.Hash)
		}
	})
}

// FuzzChainTamper: any change to any field of an entry in a chain (hash
// left as it was) is caught at that entry's seq, and a change with every
// later hash recomputed is caught by the head.
func FuzzChainTamper(f *testing.F) {
	f.Add(uint8(0), uint8(0), "x", uint64(1))
	f.Add(uint8(2), uint8(8), "/app/prod/other", uint64(0))
	f.Add(uint8(3), uint8(13), "", uint64(7))
	f.Fuzz(func(t *testing.T, at, field uint8, s string, n uint64) {
		entries, head := chain(Head{}, 4)
		k := int(at) % len(entries)
		e := &entries[k]
		orig := *e
		switch field % 16 {
		case 0:
			e.Time = time.Unix(0, int64(n)).UTC()
		case 1:
			e.Node = s
		case 2:
			e.RequestID = s
		case 3:
			e.Action = s
		case 4:
			e.Principal.Accessor = s
		case 5:
			e.Principal.Name = s
		case 6:
			e.SourceIP = s
		case 7:
			e.Path = s
		case 8:
			e.Version = n
		case 9:
			e.KMSKey = s
		case 10:
			e.KMSKeyVersion = uint32(n)
		case 11:
			e.Result = s
		case 12:
			e.ErrorCode = s
		case 13:
			e.Reason = s
		case 14:
			e.PrevHash = s
		case 15:
			e.Seq = n
		}
		changed := len(DiffFields(e, &orig)) > 0
		ok, broken := VerifyEntries(Head{}, entries)
		switch {
		case !changed && !ok:
			t.Fatalf("unchanged chain broken at %d", broken)
		case changed && (ok || broken != uint64(k+1)):
			t.Fatalf("field %d of entry %d changed: ok=%v broken=%d, want broken at %d", field%16, k+1, ok, broken, k+1)
		}
		if !changed || field%16 == 15 || field%16 == 14 {
			return
		}
		// Recompute every hash from the altered entry on: the chain holds,
		// the head does not.
		h := Head{Seq: uint64(k), Hash: GenesisHash}
		if k > 0 {
			h.Hash = entries[k-1].Hash
		}
		for i := k; i < len(entries); i++ {
			h = h.Append(&entries[i])
		}
		if ok, broken := VerifyEntries(Head{}, entries); !ok {
			t.Fatalf("recomputed chain broken at %d", broken)
		}
		st := NewMemoryStore()
		defer st.Close()
		if err := st.Append(entries); err != nil {
			t.Fatal(err)
		}
		r, err := VerifyStore(st, head)
		if err != nil || r.OK || r.FirstBroken != head.Seq {
			t.Fatalf("recomputed chain vs the head: %+v, %v", r, err)
		}
	})
}

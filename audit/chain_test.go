package audit

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/vmihailenco/msgpack/v5"
)

var baseTime = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)

var testActions = []string{"getSecretValue", "putSecretValue", "describeSecret", "kms.encrypt", "createToken"}

// rawEntry returns the i-th (0-based) entry body of a test trail, unchained.
// The fields vary so that every Query filter selects a proper subset.
func rawEntry(i int) Entry {
	e := Entry{
		Time:      baseTime.Add(time.Duration(i) * time.Second),
		Node:      fmt.Sprintf("node-%d", i%3),
		RequestID: fmt.Sprintf("req-%04d", i),
		Action:    testActions[i%len(testActions)],
		Principal: apitypes.Principal{Accessor: fmt.Sprintf("acc-%d", i%7), Name: fmt.Sprintf("name-%d", i%4)},
		SourceIP:  "10.0.0.1",
		Result:    apitypes.ResultOK,
	}
	switch i % 4 {
	case 0:
		e.Path = fmt.Sprintf("/app/prod/svc%d/db", i%5)
		e.Version = uint64(i)
		e.KMSKey, e.KMSKeyVersion = "default", 2
	case 1:
		e.Path = fmt.Sprintf("/app/dev/svc%d/db", i%5)
	case 2:
		e.Path = "/app/production/x"
		e.Result, e.ErrorCode, e.Reason = apitypes.ResultDenied, "PermissionDenied", "source address not allowed"
	}
	return e
}

// chain returns n chained entries continuing after h, and the new head.
func chain(h Head, n int) ([]Entry, Head) {
	out := make([]Entry, n)
	for i := range out {
		out[i] = rawEntry(int(h.Seq))
		h = h.Append(&out[i])
	}
	return out, h
}

func TestAppendAndVerify(t *testing.T) {
	entries, head := chain(Head{}, 10)
	if entries[0].Seq != 1 || entries[0].PrevHash != GenesisHash {
		t.Fatalf("first entry: seq %d prev %q", entries[0].Seq, entries[0].PrevHash)
	}
	for i := 1; i < len(entries); i++ {
		if entries[i].Seq != uint64(i+1) || entries[i].PrevHash != entries[i-1].Hash {
			t.Fatalf("entry %d not linked", i+1)
		}
	}
	if head != (Head{Seq: 10, Hash: entries[9].Hash}) {
		t.Fatalf("head %+v", head)
	}
	if ok, broken := VerifyEntries(Head{}, entries); !ok {
		t.Fatalf("fresh chain broken at %d", broken)
	}
	// Explicit genesis is the same as the zero head.
	if ok, _ := VerifyEntries(Head{Hash: GenesisHash}, entries); !ok {
		t.Fatal("chain does not verify from explicit genesis")
	}
	// A suffix verifies from the head before it.
	if ok, broken := VerifyEntries(Head{Seq: 4, Hash: entries[3].Hash}, entries[4:]); !ok {
		t.Fatalf("suffix broken at %d", broken)
	}
	// ...but not from a wrong head.
	if ok, broken := VerifyEntries(Head{Seq: 4, Hash: entries[2].Hash}, entries[4:]); ok || broken != 5 {
		t.Fatalf("wrong anchor: ok=%v broken=%d, want broken 5", ok, broken)
	}
	if ok, broken := VerifyEntries(Head{Seq: 3, Hash: entries[3].Hash}, entries[4:]); ok || broken != 4 {
		t.Fatalf("wrong anchor seq: ok=%v broken=%d, want broken 4", ok, broken)
	}
	if ok, _ := VerifyEntries(head, nil); !ok {
		t.Fatal("empty slice must verify")
	}
	// Deterministic: the same bodies from the same head give the same chain.
	again, head2 := chain(Head{}, 10)
	if head2 != head || again[5].Hash != entries[5].Hash {
		t.Fatal("Append is not deterministic")
	}
}

func TestComputeHashCanonical(t *testing.T) {
	e := rawEntry(0)
	Head{}.Append(&e)
	h := ComputeHash(&e)
	if len(h) != 64 {
		t.Fatalf("hash %q is not hex SHA-256", h)
	}

	// The instant matters, not the zone or monotonic reading it carries.
	z := e
	z.Time = e.Time.In(time.FixedZone("X", 5*3600+30*60))
	if ComputeHash(&z) != h {
		t.Fatal("hash depends on the time zone")
	}

	// Length prefixes keep field boundaries: moving a byte between adjacent
	// fields changes the hash.
	a, b := e, e
	a.Node, a.RequestID = "ab", "c"
	b.Node, b.RequestID = "a", "bc"
	if ComputeHash(&a) == ComputeHash(&b) {
		t.Fatal("field boundary is ambiguous")
	}

	// Hash itself is not an input.
	c := e
	c.Hash = "something else"
	if ComputeHash(&c) != h {
		t.Fatal("Hash field is hashed")
	}
}

// The hash must survive the encodings entries are stored and shipped in.
func TestHashSurvivesEncodings(t *testing.T) {
	entries, _ := chain(Head{}, 20)
	entries[3].Time = entries[3].Time.Local()
	mp, err := msgpack.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	var fromMP []Entry
	if err := msgpack.Unmarshal(mp, &fromMP); err != nil {
		t.Fatal(err)
	}
	if ok, broken := VerifyEntries(Head{}, fromMP); !ok {
		t.Fatalf("msgpack round trip broken at %d", broken)
	}
	js, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON []Entry
	if err := json.Unmarshal(js, &fromJSON); err != nil {
		t.Fatal(err)
	}
	if ok, broken := VerifyEntries(Head{}, fromJSON); !ok {
		t.Fatalf("JSON round trip broken at %d", broken)
	}
}

func flipString(s string) string {
	if s == "" {
		return "\x01"
	}
	b := []byte(s)
	b[len(b)/2] ^= 0x01
	return string(b)
}

// tamperers flip one byte of one field.
var tamperers = map[string]func(e *Entry){
	"seq":        func(e *Entry) { e.Seq ^= 1 << 8 },
	"time":       func(e *Entry) { e.Time = e.Time.Add(time.Nanosecond) },
	"node":       func(e *Entry) { e.Node = flipString(e.Node) },
	"request_id": func(e *Entry) { e.RequestID = flipString(e.RequestID) },
	"action":     func(e *Entry) { e.Action = flipString(e.Action) },
	"path":       func(e *Entry) { e.Path = flipString(e.Path) },
	"principal":  func(e *Entry) { e.Principal.Accessor = flipString(e.Principal.Accessor) },
	"principal_name": func(e *Entry) {
		e.Principal.Name = flipString(e.Principal.Name)
	},
	"source_ip":       func(e *Entry) { e.SourceIP = flipString(e.SourceIP) },
	"version":         func(e *Entry) { e.Version ^= 1 },
	"kms_key":         func(e *Entry) { e.KMSKey = flipString(e.KMSKey) },
	"kms_key_version": func(e *Entry) { e.KMSKeyVersion ^= 1 },
	"result":          func(e *Entry) { e.Result = flipString(e.Result) },
	"error_code":      func(e *Entry) { e.ErrorCode = flipString(e.ErrorCode) },
	"reason":          func(e *Entry) { e.Reason = flipString(e.Reason) },
	"prev_hash":       func(e *Entry) { e.PrevHash = flipString(e.PrevHash) },
	"hash":            func(e *Entry) { e.Hash = flipString(e.Hash) },
}

func TestTamperedFieldIsDetected(t *testing.T) {
	for name, tamper := range tamperers {
		for _, at := range []int{1, 5, 10} {
			t.Run(fmt.Sprintf("%s/seq%d", name, at), func(t *testing.T) {
				entries, _ := chain(Head{}, 10)
				tamper(&entries[at-1])
				ok, broken := VerifyEntries(Head{}, entries)
				if ok || broken != uint64(at) {
					t.Fatalf("ok=%v firstBroken=%d, want false, %d", ok, broken, at)
				}
			})
		}
	}
}

func TestSeqGapIsDetected(t *testing.T) {
	entries, _ := chain(Head{}, 10)
	gap := append(append([]Entry{}, entries[:4]...), entries[5:]...)
	if ok, broken := VerifyEntries(Head{}, gap); ok || broken != 5 {
		t.Fatalf("gap: ok=%v firstBroken=%d, want false, 5", ok, broken)
	}
	dup := append(append([]Entry{}, entries[:5]...), entries[4:]...)
	if ok, broken := VerifyEntries(Head{}, dup); ok || broken != 6 {
		t.Fatalf("duplicate: ok=%v firstBroken=%d, want false, 6", ok, broken)
	}
	// A gap re-chained by someone who knows the algorithm still shows: the
	// seqs don't continue.
	forged := append([]Entry{}, entries[:4]...)
	next := entries[5]
	h := Head{Seq: 5, Hash: entries[3].Hash} // skip seq 5 but link to seq 4
	h.Append(&next)
	forged = append(forged, next)
	if ok, broken := VerifyEntries(Head{}, forged); ok || broken != 5 {
		t.Fatalf("forged gap: ok=%v firstBroken=%d, want false, 5", ok, broken)
	}
}

package audit

import (
	"strings"
	"testing"
	"time"
)

// recomputeFrom alters entry seq (1-based) of entries with edit and
// re-chains every later entry, as someone rewriting a trail and all its
// later hashes would; it returns the altered copy.
func recomputeFrom(entries []Entry, seq uint64, edit func(e *Entry)) []Entry {
	out := append([]Entry(nil), entries...)
	h := Head{Seq: seq - 1, Hash: GenesisHash}
	if seq > 1 {
		h.Hash = out[seq-2].Hash
	}
	edit(&out[seq-1])
	for i := seq - 1; i < uint64(len(out)); i++ {
		h = h.Append(&out[i])
	}
	return out
}

// publicOnly hides a store's scanner methods, so VerifyStore takes the path
// of stores of other packages.
type publicOnly struct{ Store }

func TestVerifyStoreHeadHash(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		entries, head := chain(Head{}, 40)
		mustAppend(t, s, entries)
		for name, st := range map[string]Store{"direct": s, "public": publicOnly{s}} {
			if r, err := VerifyStore(st, head); err != nil || !r.OK || r.Checked != 40 || r.First != 1 || r.Last != 40 || r.FirstBroken != 0 {
				t.Fatalf("%s: intact store: %+v, %v", name, r, err)
			}
			// A head behind the store (entries applied after the state was
			// read) is checked at its own seq.
			if r, err := VerifyStore(st, Head{Seq: 30, Hash: entries[29].Hash}); err != nil || !r.OK || r.Checked != 40 {
				t.Fatalf("%s: head at 30: %+v, %v", name, r, err)
			}
		}

		// Entry 7's path changed and every later hash recomputed: the chain
		// alone is intact, the head's hash is not the store's.
		forged := recomputeFrom(entries, 7, func(e *Entry) { e.Path = "/app/prod/innocent" })
		tamper(t, s, forged[6:])
		if ok, _, _, _, _, err := s.Verify(); !ok || err != nil {
			t.Fatalf("a recomputed chain should pass the unanchored check (that is the gap): ok=%v err=%v", ok, err)
		}
		for name, st := range map[string]Store{"direct": s, "public": publicOnly{s}} {
			r, err := VerifyStore(st, head)
			if err != nil || r.OK || r.FirstBroken != 40 || r.Checked != 39 || !strings.Contains(r.Reason, "replicated chain head") {
				t.Fatalf("%s: recomputed chain vs head 40: %+v, %v; want broken at 40 (the head)", name, r, err)
			}
			r, err = VerifyStore(st, Head{Seq: 6, Hash: entries[5].Hash})
			if err != nil || !r.OK {
				t.Fatalf("%s: head at 6, before the edit: %+v, %v", name, r, err)
			}
			r, err = VerifyStore(st, Head{Seq: 7, Hash: entries[6].Hash})
			if err != nil || r.OK || r.FirstBroken != 7 {
				t.Fatalf("%s: head at 7: %+v, %v; want broken at 7", name, r, err)
			}
		}
	})
}

func TestVerifyStoreShortOrMisplaced(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		if r, err := VerifyStore(s, Head{Seq: 5, Hash: GenesisHash}); err != nil || !r.OK || r.Checked != 0 {
			t.Fatalf("empty store (snapshot restored, backfill pending): %+v, %v", r, err)
		}
		entries, head := chain(Head{}, 30)
		mustAppend(t, s, entries[:20])
		// The store ends before the head.
		if r, err := VerifyStore(s, head); err != nil || r.OK || r.FirstBroken != 21 || r.Checked != 20 {
			t.Fatalf("store ends at 20, head 30: %+v, %v; want broken at 21", r, err)
		}
		// A store that starts right after the head (restored from a
		// snapshot at 20) must link to it.
		if err := s.TruncateAfter(0); err != nil {
			t.Fatal(err)
		}
		mustAppend(t, s, entries[20:])
		if r, err := VerifyStore(s, Head{Seq: 20, Hash: entries[19].Hash}); err != nil || !r.OK || r.Checked != 10 {
			t.Fatalf("store 21..30 after head 20: %+v, %v", r, err)
		}
		if r, err := VerifyStore(s, Head{Seq: 20, Hash: entries[18].Hash}); err != nil || r.OK || r.FirstBroken != 21 || !strings.Contains(r.Reason, "replicated chain head") {
			t.Fatalf("store 21..30 after a head with another hash: %+v, %v; want broken at 21", r, err)
		}
		// ...and one that starts further on can't be anchored.
		if r, err := VerifyStore(s, Head{Seq: 10, Hash: entries[9].Hash}); err != nil || r.OK || r.FirstBroken != 11 {
			t.Fatalf("store 21..30, head 10: %+v, %v; want broken at 11", r, err)
		}
	})
}

func TestVerifyStoreBuffered(t *testing.T) {
	b := NewBufferedStore(NewMemoryStore())
	defer b.Close()
	entries, head := chain(Head{}, 50)
	mustAppend(t, b, entries)
	// Right after Append (queued, not yet written) the head is reached.
	if r, err := VerifyStore(b, head); err != nil || !r.OK || r.Checked != 50 {
		t.Fatalf("buffered: %+v, %v", r, err)
	}
	forged := recomputeFrom(entries, 3, func(e *Entry) { e.Result = "ok"; e.Reason = ""; e.ErrorCode = ""; e.Principal.Name = "someone-else" })
	mustAppend(t, b, forged[2:])
	if r, err := VerifyStore(b, head); err != nil || r.OK || r.FirstBroken != 50 {
		t.Fatalf("buffered, recomputed: %+v, %v", r, err)
	}
}

func TestFirstMismatch(t *testing.T) {
	entries, _ := chain(Head{}, 100)
	forged := recomputeFrom(entries, 37, func(e *Entry) { e.SourceIP = "6.6.6.6" })
	ref := func(seq uint64) (string, error) { return entries[seq-1].Hash, nil }
	var points []Head
	for i := 9; i < 100; i += 10 {
		points = append(points, Head{Seq: forged[i].Seq, Hash: forged[i].Hash})
	}
	calls := 0
	counted := func(seq uint64) (string, error) { calls++; return ref(seq) }
	i, err := FirstMismatch(points, counted)
	if err != nil || points[i].Seq != 40 {
		t.Fatalf("FirstMismatch = %d (%v), want the point at seq 40", i, err)
	}
	if calls > 5 {
		t.Fatalf("%d lookups for 10 points: not a binary search", calls)
	}
	if got := DiffFields(&forged[36], &entries[36]); strings.Join(got, ",") != "source_ip,hash" {
		t.Fatalf("DiffFields = %v", got)
	}
	if i, _ := FirstMismatch(points[:3], ref); i != 3 {
		t.Fatalf("all equal: %d, want len", i)
	}
}

// TestMemoryScanDoesNotHoldLock: the in-memory store (dev mode) walks its
// trail without holding its lock while verifying, so Apply's appends are
// not stalled behind a verifyAudit of a long trail.
func TestMemoryScanDoesNotHoldLock(t *testing.T) {
	entries, _ := chain(Head{}, 3*scanChunk)
	s := NewMemoryStore()
	defer s.Close()
	mustAppend(t, s, entries[:2*scanChunk])
	done := make(chan error, 1)
	go func() {
		appended := false
		err := s.(*memoryStore).scan(1, func(seq uint64, e *Entry, _ error) bool {
			if !appended {
				appended = true
				// Would deadlock if the walk held the lock.
				if err := s.Append(entries[2*scanChunk:]); err != nil {
					t.Error(err)
				}
			}
			return true
		})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an Append during a walk of the store blocked: the walk holds the lock")
	}
	if r, err := VerifyStore(s, Head{}); err != nil || !r.OK || r.Checked != 3*scanChunk {
		t.Fatalf("%+v %v", r, err)
	}
}

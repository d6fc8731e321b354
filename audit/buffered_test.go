package audit

import (
	"path/filepath"
	"testing"
)

// The buffered store behaves as the store it wraps: every read sees every
// appended entry, replays overwrite, and entries survive Close/reopen.
func TestBufferedStoreSeesEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	inner, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	b := NewBufferedStore(inner)
	entries, _ := chain(Head{}, 250)
	for i := 0; i < 250; i += 10 {
		if err := b.Append(entries[i : i+10]); err != nil {
			t.Fatal(err)
		}
	}
	if last, ok := b.Last(); !ok || last.Seq != 250 {
		t.Fatalf("last %d %v", last.Seq, ok)
	}
	// A replay of already queued or written entries is harmless.
	if err := b.Append(entries[100:120]); err != nil {
		t.Fatal(err)
	}
	if ok, checked, first, last, broken, err := b.Verify(); !ok || err != nil || checked != 250 || first != 1 || last != 250 || broken != 0 {
		t.Fatalf("verify: %v %d %d %d %d %v", ok, checked, first, last, broken, err)
	}
	got, err := b.Range(240, 260, 100)
	if err != nil || len(got) != 11 {
		t.Fatalf("range: %d %v", len(got), err)
	}
	if err := b.Append(entries[249:]); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	re, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	if last, ok := re.Last(); !ok || last.Seq != 250 {
		t.Fatalf("after reopen: last %d %v", last.Seq, ok)
	}
}

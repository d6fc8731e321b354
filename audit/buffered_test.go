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

// duringAppend is a Store that runs a hook in the middle of each Append,
// as the FSM appends while the buffered store writes a batch.
type duringAppend struct {
	Store
	hook func()
}

func (d *duringAppend) Append(entries []Entry) error {
	if d.hook != nil {
		d.hook()
	}
	return d.Store.Append(entries)
}

// Entries appended while a batch is being written, around flushes with
// nothing queued, all reach the inner store once, in order, intact.
func TestBufferedStoreAppendsDuringWrites(t *testing.T) {
	inner, err := OpenBoltStore(filepath.Join(t.TempDir(), "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	entries, _ := chain(Head{}, n)
	next := 0
	var b0 *BufferedStore
	appendSome := func() {
		if next < n {
			if err := b0.Append(entries[next:min(next+7, n)]); err != nil {
				t.Error(err)
			}
			next = min(next+7, n)
		}
	}
	hookOn := false
	d := &duringAppend{Store: inner, hook: func() {
		if hookOn {
			appendSome()
		}
	}}
	b0 = NewBufferedStore(d)
	defer b0.Close()
	flush := func(step int, what string) {
		t.Helper()
		if err := b0.flush(); err != nil {
			t.Fatalf("step %d, %s: %v", step, what, err)
		}
	}
	for step := 0; next < n; step++ {
		appendSome()
		hookOn = false
		flush(step, "a batch")
		flush(step, "nothing queued")
		appendSome()
		hookOn = true
		flush(step, "a batch while more is appended")
		hookOn = false
		flush(step, "what was appended meanwhile")
	}
	if ok, checked, first, last, broken, err := b0.Verify(); !ok || err != nil || checked != n || first != 1 || last != n || broken != 0 {
		t.Fatalf("verify: ok %v checked %d first %d last %d broken %d err %v", ok, checked, first, last, broken, err)
	}
}

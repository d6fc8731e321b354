package audit

import (
	"encoding/base64"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"
)

// stores runs f against every Store implementation.
func stores(t *testing.T, f func(t *testing.T, s Store)) {
	t.Run("memory", func(t *testing.T) {
		s := NewMemoryStore()
		defer s.Close()
		f(t, s)
	})
	t.Run("bolt", func(t *testing.T) {
		s, err := OpenBoltStore(filepath.Join(t.TempDir(), "audit.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		f(t, s)
	})
}

// tamper overwrites stored entries behind the store's back, as someone
// editing the file would: Append itself skips an entry whose hash matches
// the one held (a replay).
func tamper(t *testing.T, s Store, entries []Entry) {
	t.Helper()
	bs, ok := s.(*boltStore)
	if !ok {
		mustAppend(t, s, entries) // the memory store overwrites
		return
	}
	err := bs.db.Update(func(tx *bolt.Tx) error {
		for i := range entries {
			v, err := msgpack.Marshal(&entries[i])
			if err == nil {
				err = tx.Bucket(bucketEntries).Put(seqKey(entries[i].Seq), v)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustAppend(t *testing.T, s Store, entries []Entry) {
	t.Helper()
	if err := s.Append(entries); err != nil {
		t.Fatal(err)
	}
}

func mustVerify(t *testing.T, s Store, wantChecked, wantFirst, wantLast uint64) {
	t.Helper()
	ok, checked, first, last, broken, err := s.Verify()
	if err != nil || !ok || checked != wantChecked || first != wantFirst || last != wantLast || broken != 0 {
		t.Fatalf("Verify = ok %v checked %d first %d last %d broken %d err %v; want ok, %d, %d..%d",
			ok, checked, first, last, broken, err, wantChecked, wantFirst, wantLast)
	}
}

func TestStoreAppendGetIdempotent(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		if _, ok := s.First(); ok {
			t.Fatal("empty store has a first seq")
		}
		if _, ok := s.Last(); ok {
			t.Fatal("empty store has a last entry")
		}
		mustVerify(t, s, 0, 0, 0)

		entries, _ := chain(Head{}, 10)
		mustAppend(t, s, entries[:6])
		mustAppend(t, s, entries[6:])
		if first, ok := s.First(); !ok || first != 1 {
			t.Fatalf("First = %d, %v", first, ok)
		}
		if last, ok := s.Last(); !ok || !reflect.DeepEqual(last, entries[9]) {
			t.Fatalf("Last = %+v, %v", last, ok)
		}
		got, ok, err := s.Get(4)
		if err != nil || !ok || !reflect.DeepEqual(got, entries[3]) {
			t.Fatalf("Get(4) = %+v, %v, %v", got, ok, err)
		}
		if _, ok, err := s.Get(11); ok || err != nil {
			t.Fatalf("Get(11) = %v, %v", ok, err)
		}

		// Replaying the log rewrites the same seqs: nothing changes.
		mustAppend(t, s, entries[2:8])
		mustAppend(t, s, entries)
		mustVerify(t, s, 10, 1, 10)
		all, _, err := s.Query(Query{})
		if err != nil || !reflect.DeepEqual(all, entries) {
			t.Fatalf("after replay: %d entries, err %v", len(all), err)
		}

		// Re-writing a seq with another entry (another hash) overwrites it.
		changed := entries[4]
		changed.Action = "changed"
		changed.Hash = ComputeHash(&changed)
		mustAppend(t, s, []Entry{changed})
		if got, _, _ := s.Get(5); got.Action != "changed" {
			t.Fatalf("seq 5 not overwritten: %q", got.Action)
		}
		// A replay over a stretch with a gap fills the gap.
		if err := s.TruncateAfter(0); err != nil {
			t.Fatal(err)
		}
		mustAppend(t, s, entries[:3])
		mustAppend(t, s, entries[5:])
		mustAppend(t, s, entries)
		mustVerify(t, s, 10, 1, 10)

		if err := s.Append([]Entry{entries[3], entries[2]}); err == nil {
			t.Fatal("out-of-order append accepted")
		}
		if err := s.Append([]Entry{{}}); err == nil {
			t.Fatal("seq 0 accepted")
		}
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestStoreTruncateAfter(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		entries, _ := chain(Head{}, 10)
		mustAppend(t, s, entries)
		if err := s.TruncateAfter(5); err != nil {
			t.Fatal(err)
		}
		if last, ok := s.Last(); !ok || last.Seq != 5 {
			t.Fatalf("Last after truncate = %d, %v", last.Seq, ok)
		}
		if _, ok, _ := s.Get(6); ok {
			t.Fatal("seq 6 survived truncation")
		}
		mustVerify(t, s, 5, 1, 5)
		if err := s.TruncateAfter(100); err != nil { // beyond the end: no-op
			t.Fatal(err)
		}
		mustVerify(t, s, 5, 1, 5)

		// A different history continues from the restored head.
		other := make([]Entry, 3)
		h := Head{Seq: 5, Hash: entries[4].Hash}
		for i := range other {
			other[i] = rawEntry(100 + i)
			h = h.Append(&other[i])
		}
		mustAppend(t, s, other)
		mustVerify(t, s, 8, 1, 8)

		if err := s.TruncateAfter(0); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.First(); ok {
			t.Fatal("TruncateAfter(0) left entries")
		}
		mustVerify(t, s, 0, 0, 0)
	})
}

// wantQuery is a brute-force reference for Query's filters.
func wantQuery(all []Entry, q Query) []Entry {
	var out []Entry
	for _, e := range all {
		if q.Since != nil && e.Time.Before(*q.Since) {
			continue
		}
		if q.Until != nil && (e.Time.After(*q.Until) || e.Time.Equal(*q.Until)) {
			continue
		}
		if len(q.Actions) > 0 && !strings.Contains(","+strings.Join(q.Actions, ",")+",", ","+e.Action+",") {
			continue
		}
		if q.Principal != "" && e.Principal.Accessor != q.Principal && e.Principal.Name != q.Principal {
			continue
		}
		if q.PathPrefix != "" && !strings.HasPrefix(e.Path, q.PathPrefix) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// queryAll follows page tokens to the end.
func queryAll(t *testing.T, s Store, q Query) (all []Entry, pages int) {
	t.Helper()
	for {
		page, next, err := s.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		all = append(all, page...)
		if next == "" {
			return all, pages
		}
		if pages > 1000 {
			t.Fatal("pagination does not end")
		}
		q.PageToken = next
	}
}

func TestStoreQuery(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		entries, _ := chain(Head{}, 250)
		mustAppend(t, s, entries)

		since := baseTime.Add(40 * time.Second)
		until := baseTime.Add(90 * time.Second)
		cases := map[string]Query{
			"all":            {},
			"since":          {Since: &since},
			"until":          {Until: &until},
			"window":         {Since: &since, Until: &until},
			"empty window":   {Since: &until, Until: &since},
			"actions":        {Actions: []string{"putSecretValue", "kms.encrypt"}},
			"unknown action": {Actions: []string{"nope"}},
			"accessor":       {Principal: "acc-3"},
			"name":           {Principal: "name-2"},
			"path prefix":    {PathPrefix: "/app/prod"},
			"path segment":   {PathPrefix: "/app/prod/"},
			"combined": {Since: &since, Actions: []string{"getSecretValue", "describeSecret"},
				Principal: "name-0", PathPrefix: "/app/"},
		}
		for name, q := range cases {
			want := wantQuery(entries, q)
			// One big page.
			q.Limit = 1000
			got, next, err := s.Query(q)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if next != "" || len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
				t.Fatalf("%s: got %d entries (next %q), want %d", name, len(got), next, len(want))
			}
			// Small pages give the same entries in the same order.
			q.Limit = 7
			paged, _ := queryAll(t, s, q)
			if len(paged) != len(want) || (len(want) > 0 && !reflect.DeepEqual(paged, want)) {
				t.Fatalf("%s paged: got %d entries, want %d", name, len(paged), len(want))
			}
		}
		// Sanity: the filters actually filter.
		if n := len(wantQuery(entries, cases["combined"])); n == 0 || n >= 50 {
			t.Fatalf("combined filter selects %d entries; test data too uniform", n)
		}
		if n := len(wantQuery(entries, cases["path prefix"])); n <= len(wantQuery(entries, cases["path segment"])) {
			t.Fatal("path prefix cases don't differ")
		}
	})
}

func TestStoreQueryPagination(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		entries, _ := chain(Head{}, 250)
		mustAppend(t, s, entries)

		// Default limit is 100: pages of 100, 100, 50.
		var all []Entry
		var q Query
		for i, want := range []int{100, 100, 50} {
			page, next, err := s.Query(q)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) != want {
				t.Fatalf("page %d: %d entries, want %d", i, len(page), want)
			}
			if (next == "") != (i == 2) {
				t.Fatalf("page %d: next token %q", i, next)
			}
			all = append(all, page...)
			q.PageToken = next
		}
		if !reflect.DeepEqual(all, entries) {
			t.Fatal("pages don't add up to the trail")
		}

		// A page that ends exactly at the last entry has no next token.
		page, next, err := s.Query(Query{Limit: 250})
		if err != nil || len(page) != 250 || next != "" {
			t.Fatalf("exact page: %d entries, next %q, err %v", len(page), next, err)
		}

		// A token survives appends made between pages.
		page, next, _ = s.Query(Query{Limit: 200})
		more, _ := chain(Head{Seq: 250, Hash: entries[249].Hash}, 10)
		mustAppend(t, s, more)
		page2, next2, err := s.Query(Query{Limit: 200, PageToken: next})
		if err != nil || len(page2) != 60 || page2[0].Seq != 201 || next2 != "" {
			t.Fatalf("after append: %d entries from %v, next %q, err %v", len(page2), page2[0].Seq, next2, err)
		}
		_ = page

		// The limit is capped.
		big, _ := chain(Head{Seq: 260, Hash: more[9].Hash}, 900)
		mustAppend(t, s, big)
		page, next, err = s.Query(Query{Limit: 5000})
		if err != nil || len(page) != MaxQueryLimit || next == "" {
			t.Fatalf("capped: %d entries, next %q, err %v", len(page), next, err)
		}
	})
}

func TestStoreQueryBadPageToken(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		entries, _ := chain(Head{}, 20)
		mustAppend(t, s, entries)
		_, good, err := s.Query(Query{Limit: 5})
		if err != nil || good == "" {
			t.Fatalf("no token: %v", err)
		}
		raw, _ := base64.RawURLEncoding.DecodeString(good)
		raw[8] ^= 1 // change the seq without fixing the checksum
		for _, tok := range []string{
			"garbage!",
			"abc",
			base64.RawURLEncoding.EncodeToString(raw),
			base64.RawURLEncoding.EncodeToString(make([]byte, 13)),
			good + "A",
		} {
			if _, _, err := s.Query(Query{PageToken: tok}); !errors.Is(err, ErrBadPageToken) {
				t.Errorf("token %q: err %v, want ErrBadPageToken", tok, err)
			}
		}
	})
}

func TestStoreVerifyDetectsBreaks(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		entries, _ := chain(Head{}, 20)
		// A trail that starts mid-chain (node started from a snapshot)
		// verifies from its first entry's prev_hash.
		mustAppend(t, s, entries[10:])
		mustVerify(t, s, 10, 11, 20)

		// A gap is reported at the first missing seq.
		if err := s.TruncateAfter(0); err != nil {
			t.Fatal(err)
		}
		mustAppend(t, s, entries[:6])
		mustAppend(t, s, entries[8:])
		ok, checked, first, last, broken, err := s.Verify()
		if err != nil || ok || checked != 6 || first != 1 || last != 20 || broken != 7 {
			t.Fatalf("gap: ok %v checked %d %d..%d broken %d err %v", ok, checked, first, last, broken, err)
		}

		// A stored entry whose field changed is reported at its seq.
		mustAppend(t, s, entries)
		bad := entries[11]
		bad.Principal.Name = flipString(bad.Principal.Name)
		tamper(t, s, []Entry{bad})
		if ok, checked, _, _, broken, _ := s.Verify(); ok || checked != 11 || broken != 12 {
			t.Fatalf("tampered: ok %v checked %d broken %d", ok, checked, broken)
		}

		// Seq 1 must link to genesis.
		mustAppend(t, s, entries)
		first1 := entries[0]
		first1.PrevHash = flipString(GenesisHash)
		first1.Hash = ComputeHash(&first1)
		tamper(t, s, []Entry{first1})
		if ok, _, _, _, broken, _ := s.Verify(); ok || broken != 1 {
			t.Fatalf("seq 1 off genesis: ok %v broken %d", ok, broken)
		}
	})
}

// Verify and Query cross the bolt store's read-transaction chunks.
func TestStoreLargeTrail(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		entries, _ := chain(Head{}, 3*scanChunk+17)
		for i := 0; i < len(entries); i += 500 {
			mustAppend(t, s, entries[i:min(i+500, len(entries))])
		}
		n := uint64(len(entries))
		mustVerify(t, s, n, 1, n)
		q := Query{Principal: "acc-6", Actions: []string{"createToken"}, Limit: 1000}
		got, _ := queryAll(t, s, q)
		if want := wantQuery(entries, q); !reflect.DeepEqual(got, want) {
			t.Fatalf("sparse query: %d entries, want %d", len(got), len(want))
		}
	})
}

func TestBoltStoreReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	s, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := chain(Head{}, 30)
	mustAppend(t, s, entries)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustVerify(t, s, 30, 1, 30)
	if last, ok := s.Last(); !ok || !reflect.DeepEqual(last, entries[29]) {
		t.Fatalf("Last after reopen = %+v", last)
	}
}

// rewriteBolt changes the stored value of seq with edit, behind the store's back.
func rewriteBolt(t *testing.T, path string, seq uint64, edit func(v []byte) []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntries)
		v := b.Get(seqKey(seq))
		if v == nil {
			t.Fatalf("seq %d not in file", seq)
		}
		return b.Put(seqKey(seq), edit(append([]byte(nil), v...)))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBoltStoreVerifyTamperedFile(t *testing.T) {
	edits := map[string]func(t *testing.T) func([]byte) []byte{
		"field": func(t *testing.T) func([]byte) []byte {
			return func(v []byte) []byte {
				var e Entry
				if err := msgpack.Unmarshal(v, &e); err != nil {
					t.Fatal(err)
				}
				e.Action = "deleteSecret"
				out, err := msgpack.Marshal(&e)
				if err != nil {
					t.Fatal(err)
				}
				return out
			}
		},
		"byte": func(t *testing.T) func([]byte) []byte {
			return func(v []byte) []byte {
				i := strings.Index(string(v), "10.0.0.1")
				if i < 0 {
					t.Fatal("source ip not found in value")
				}
				v[i+3] ^= 1
				return v
			}
		},
		"garbage": func(t *testing.T) func([]byte) []byte {
			return func([]byte) []byte { return []byte{0xc1, 0xff, 0x00} }
		},
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.db")
			s, err := OpenBoltStore(path)
			if err != nil {
				t.Fatal(err)
			}
			entries, _ := chain(Head{}, 20)
			mustAppend(t, s, entries)
			s.Close()

			rewriteBolt(t, path, 7, edit(t))

			s, err = OpenBoltStore(path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ok, checked, first, last, broken, err := s.Verify()
			if err != nil || ok || checked != 6 || first != 1 || last != 20 || broken != 7 {
				t.Fatalf("ok %v checked %d %d..%d broken %d err %v", ok, checked, first, last, broken, err)
			}
			if name == "garbage" {
				if _, _, err := s.Get(7); err == nil {
					t.Fatal("Get of a corrupt entry succeeded")
				}
				if _, _, err := s.Query(Query{}); err == nil {
					t.Fatal("Query over a corrupt entry succeeded")
				}
			}
		})
	}
}

func TestClosedStoreFails(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		mustAppend(t, s, func() []Entry { e, _ := chain(Head{}, 3); return e }())
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Append([]Entry{{Seq: 4}}); err == nil {
			t.Error("Append after Close succeeded")
		}
		if _, _, err := s.Query(Query{}); err == nil {
			t.Error("Query after Close succeeded")
		}
		if ok, _, _, _, _, err := s.Verify(); ok || err == nil {
			t.Errorf("Verify after Close: ok %v err %v", ok, err)
		}
	})
}

// The FSM appends while API handlers query and verify.
func TestStoreConcurrentUse(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		entries, _ := chain(Head{}, 2000)
		done := make(chan error, 1)
		go func() {
			for i := 0; i < len(entries); i += 50 {
				if err := s.Append(entries[i : i+50]); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		for finished := false; !finished; {
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				finished = true
			default:
			}
			if ok, _, _, _, broken, err := s.Verify(); err != nil || !ok {
				t.Fatalf("Verify during appends: ok %v broken %d err %v", ok, broken, err)
			}
			if _, _, err := s.Query(Query{Principal: "acc-2", Limit: 10}); err != nil {
				t.Fatal(err)
			}
		}
		mustVerify(t, s, 2000, 1, 2000)
	})
}

// A new store file gets 16 KiB pages; a file made with another page size
// keeps it, entries and all.
func TestBoltPageSize(t *testing.T) {
	dir := t.TempDir()
	fresh := filepath.Join(dir, "new.db")
	s, err := OpenBoltStore(fresh)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.(*boltStore).db.Info().PageSize; got != boltPageSize {
		t.Fatalf("new store: page size %d, want %d", got, boltPageSize)
	}
	s.Close()

	old := filepath.Join(dir, "old.db")
	db, err := bolt.Open(old, 0o600, &bolt.Options{PageSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err = OpenBoltStore(old)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := chain(Head{}, 50)
	if err := s.Append(entries); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenBoltStore(old)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.(*boltStore).db.Info().PageSize; got != 4096 {
		t.Fatalf("existing 4 KiB store reopened with page size %d", got)
	}
	if last, ok := s.Last(); !ok || last.Seq != 50 {
		t.Fatalf("existing store: last %d %v", last.Seq, ok)
	}
}

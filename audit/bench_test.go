package audit

import (
	"path/filepath"
	"testing"
)

func BenchmarkComputeHash(b *testing.B) {
	e := rawEntry(0)
	Head{}.Append(&e)
	b.ReportAllocs()
	for b.Loop() {
		ComputeHash(&e)
	}
}

// BenchmarkBoltAppend100 measures one FSM apply's worth of audit writes: a
// batch of 100 chained entries in one bbolt transaction (NoSync).
func BenchmarkBoltAppend100(b *testing.B) {
	s, err := OpenBoltStore(filepath.Join(b.TempDir(), "audit.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var h Head
	batch := make([]Entry, 100)
	b.ReportAllocs()
	for b.Loop() {
		for i := range batch {
			batch[i] = rawEntry(int(h.Seq))
			h = h.Append(&batch[i])
		}
		if err := s.Append(batch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify100k measures verifyAudit's walk over a 100,000-entry
// trail (Store.Verify: decode, recompute every hash, check the links).
func BenchmarkVerify100k(b *testing.B) {
	entries, _ := chain(Head{}, 100000)
	for _, kind := range []string{"memory", "bolt"} {
		b.Run(kind, func(b *testing.B) {
			s := NewMemoryStore()
			if kind == "bolt" {
				var err error
				if s, err = OpenBoltStore(filepath.Join(b.TempDir(), "audit.db")); err != nil {
					b.Fatal(err)
				}
			}
			defer s.Close()
			for i := 0; i < len(entries); i += 1000 {
				if err := s.Append(entries[i : i+1000]); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for b.Loop() {
				if ok, checked, _, _, _, err := s.Verify(); !ok || err != nil || checked != 100000 {
					b.Fatalf("verify: %v %d %v", ok, checked, err)
				}
			}
		})
	}
}

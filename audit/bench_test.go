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

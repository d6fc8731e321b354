package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Each kind keeps entries and the term across a reopen, and auto reopens
// whichever kind the data dir holds.
func TestLogStoreKeepsWhatTheDataDirHolds(t *testing.T) {
	for _, kind := range []string{LogStoreWAL, LogStoreBolt} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			s, got, err := openLogStore(dir, kind, 0, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			if got != kind {
				t.Fatalf("opened %q, want %q", got, kind)
			}
			logs := []*raft.Log{{Index: 1, Term: 3, Data: []byte("a")}, {Index: 2, Term: 3, Data: []byte("b")}}
			if err := s.StoreLogs(logs); err != nil {
				t.Fatal(err)
			}
			if err := s.SetUint64([]byte("CurrentTerm"), 3); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s, got, err = openLogStore(dir, LogStoreAuto, 0, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got != kind {
				t.Fatalf("auto reopened %q, want %q", got, kind)
			}
			last, err := s.LastIndex()
			if err != nil || last != 2 {
				t.Fatalf("last index %d, %v; want 2", last, err)
			}
			var l raft.Log
			if err := s.GetLog(2, &l); err != nil || string(l.Data) != "b" {
				t.Fatalf("entry 2: %q, %v", l.Data, err)
			}
			if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term != 3 {
				t.Fatalf("term %d, %v", term, err)
			}
		})
	}
}

func TestLogStoreRefusesTheOtherKind(t *testing.T) {
	log := hclog.NewNullLogger()

	boltDir := t.TempDir()
	s, _, err := openLogStore(boltDir, LogStoreBolt, 0, log)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, _, err := openLogStore(boltDir, LogStoreWAL, 0, log); err == nil || !strings.Contains(err.Error(), "--raft-log-store bolt") {
		t.Fatalf("wal over a bolt data dir: %v", err)
	}

	walDir := t.TempDir()
	s, _, err = openLogStore(walDir, LogStoreAuto, 0, log)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, _, err := openLogStore(walDir, LogStoreBolt, 0, log); err == nil || !strings.Contains(err.Error(), "--raft-log-store wal") {
		t.Fatalf("bolt over a wal data dir: %v", err)
	}

	if err := os.WriteFile(filepath.Join(walDir, boltLogName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := openLogStore(walDir, LogStoreAuto, 0, log); err == nil || !strings.Contains(err.Error(), "both") {
		t.Fatalf("data dir with both logs: %v", err)
	}
	if _, _, err := openLogStore(t.TempDir(), "rocks", 0, log); err == nil {
		t.Fatal("unknown store kind accepted")
	}
}

// BenchmarkLogStoreAppend appends one 3 KB entry per StoreLogs call, each
// made durable (fsync), as a Raft leader does for every batch.
func BenchmarkLogStoreAppend(b *testing.B) {
	for _, kind := range []string{LogStoreWAL, LogStoreBolt} {
		b.Run(kind, func(b *testing.B) {
			s, _, err := openLogStore(b.TempDir(), kind, 0, hclog.NewNullLogger())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			data := make([]byte, 3000)
			i := uint64(0)
			for b.Loop() {
				i++
				if err := s.StoreLogs([]*raft.Log{{Index: i, Term: 1, Data: data}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

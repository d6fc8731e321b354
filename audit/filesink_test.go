package audit

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fileLines returns the seqs of the file's entry lines and its other lines.
func fileLines(t *testing.T, path string) (seqs []uint64, junk []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Seq == 0 {
			junk = append(junk, sc.Text())
			continue
		}
		seqs = append(seqs, e.Seq)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return seqs, junk
}

func wantSeqs(t *testing.T, got []uint64, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("file has seqs %v, want 1..%d", got, n)
	}
	for i, s := range got {
		if s != uint64(i+1) {
			t.Fatalf("file has seqs %v, want 1..%d", got, n)
		}
	}
}

func openSink(t *testing.T, path string) *FileSink {
	t.Helper()
	s, err := OpenFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sinkWrite(t *testing.T, s *FileSink, entries []Entry) {
	t.Helper()
	if err := s.Write(entries); err != nil {
		t.Fatal(err)
	}
}

func TestFileSinkIdempotentAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	entries, _ := chain(Head{}, 10)

	s := openSink(t, path)
	sinkWrite(t, s, entries[:5])
	sinkWrite(t, s, entries[3:6]) // overlap within one process
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}

	// A restart replays the log from an older point.
	s = openSink(t, path)
	sinkWrite(t, s, entries)
	sinkWrite(t, s, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	seqs, junk := fileLines(t, path)
	wantSeqs(t, seqs, 10)
	if len(junk) != 0 {
		t.Fatalf("unexpected lines %q", junk)
	}

	// Each line is the entry, hash included, so a SIEM can verify the chain.
	data, _ := os.ReadFile(path)
	var got []Entry
	for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		var e Entry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	if ok, broken := VerifyEntries(Head{}, got); !ok {
		t.Fatalf("file chain broken at %d", broken)
	}
}

func TestFileSinkTornLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	entries, _ := chain(Head{}, 10)
	s := openSink(t, path)
	sinkWrite(t, s, entries[:5])
	s.Close()

	// The process died mid-way through the line of seq 6.
	line, _ := json.Marshal(entries[5])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(line[:len(line)/2])
	f.Close()

	// Reopening twice without writing must not change what counts as last.
	openSink(t, path).Close()
	s = openSink(t, path)
	sinkWrite(t, s, entries[:7])
	s.Close()
	seqs, junk := fileLines(t, path)
	wantSeqs(t, seqs, 7)
	if len(junk) != 1 || junk[0] != string(line[:len(line)/2]) {
		t.Fatalf("torn fragment should stay alone on its line, got %q", junk)
	}

	// The fragment is now a complete but non-entry line; if it were the last
	// line, the sink must look past it.
	f, _ = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("not json\n")
	f.Close()
	s = openSink(t, path)
	sinkWrite(t, s, entries)
	s.Close()
	seqs, _ = fileLines(t, path)
	wantSeqs(t, seqs, 10)
}

func TestFileSinkOnlyTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path, []byte(`{"seq":1,"ti`), 0o600); err != nil {
		t.Fatal(err)
	}
	entries, _ := chain(Head{}, 3)
	s := openSink(t, path)
	sinkWrite(t, s, entries)
	s.Close()
	seqs, junk := fileLines(t, path)
	wantSeqs(t, seqs, 3)
	if len(junk) != 1 {
		t.Fatalf("junk %q", junk)
	}
}

// The last line is found even when it spans the backward-read chunks.
func TestFileSinkLongLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	entries, _ := chain(Head{}, 400)
	entries[299].Reason = strings.Repeat("r", 200<<10)
	s := openSink(t, path)
	sinkWrite(t, s, entries[:300])
	s.Close()
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"seq":301,"reason":"` + strings.Repeat("x", 150<<10))
	f.Close()

	s = openSink(t, path)
	if s.lastSeq != 300 || !s.torn {
		t.Fatalf("lastSeq %d torn %v, want 300, true", s.lastSeq, s.torn)
	}
	sinkWrite(t, s, entries)
	s.Close()
	seqs, _ := fileLines(t, path)
	wantSeqs(t, seqs, 400)
}

package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
)

// FileSink appends every entry as one JSON line to the --audit-file, for a
// SIEM to tail. It skips entries it already wrote (seq <= the last written),
// so replaying the Raft log after a restart does not duplicate lines.
//
// Lines are not fsynced per write (the Raft log is the durable copy); call
// Sync to flush, e.g. when the Raft snapshot is taken.
type FileSink struct {
	mu      sync.Mutex
	f       *os.File
	path    string
	lastSeq uint64
	// torn is set when the file does not end at a line boundary (a crash or
	// short write mid-line): the next write starts with a newline so the
	// fragment stays a line of its own instead of corrupting the next entry.
	torn bool
	buf  []byte // reused across writes
}

// OpenFileSink opens path for appending (creating it with mode 0600) and
// finds the seq of its last complete JSON line. A torn last line is ignored:
// its entry is written again in full on replay.
func OpenFileSink(path string) (*FileSink, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit file: %w", err)
	}
	last, torn, err := lastLineSeq(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open audit file %s: %w", path, err)
	}
	return &FileSink{f: f, path: path, lastSeq: last, torn: torn}, nil
}

// lastLineSeq reads f backwards for the last complete line that holds an
// entry's seq, and reports whether f ends mid-line. Lines that are not
// entries (an earlier torn fragment) are skipped.
func lastLineSeq(f *os.File) (seq uint64, torn bool, err error) {
	st, err := f.Stat()
	if err != nil {
		return 0, false, err
	}
	pos := st.Size()
	var buf []byte // the file's bytes from pos up to the lines not yet consumed
	readMore := func() error {
		n := min(int64(64<<10), pos)
		chunk := make([]byte, n, n+int64(len(buf)))
		if _, err := f.ReadAt(chunk, pos-n); err != nil && err != io.EOF {
			return err
		}
		pos -= n
		buf = append(chunk, buf...)
		return nil
	}
	// Drop what follows the last newline: a torn line.
	for {
		if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
			torn = torn || i < len(buf)-1
			buf = buf[:i+1]
			break
		}
		torn = torn || len(buf) > 0
		if pos == 0 {
			return 0, torn, nil
		}
		if err := readMore(); err != nil {
			return 0, false, err
		}
	}
	// buf ends with a newline; walk complete lines from the back.
	for {
		body := buf[:len(buf)-1]
		i := bytes.LastIndexByte(body, '\n')
		if i < 0 && pos > 0 {
			if err := readMore(); err != nil { // the line starts further back
				return 0, false, err
			}
			continue
		}
		if s, ok := entrySeq(body[i+1:]); ok {
			return s, torn, nil
		}
		if i < 0 {
			return 0, torn, nil
		}
		buf = buf[:i+1]
	}
}

// entrySeq returns the seq of a JSON line that is an audit entry.
func entrySeq(line []byte) (uint64, bool) {
	var v struct {
		Seq *uint64 `json:"seq"`
	}
	if len(bytes.TrimSpace(line)) == 0 || json.Unmarshal(line, &v) != nil || v.Seq == nil || *v.Seq == 0 {
		return 0, false
	}
	return *v.Seq, true
}

// Write appends the entries with a seq above the last one written, in one
// write call.
func (s *FileSink) Write(entries []Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	buf := s.buf[:0]
	if s.torn {
		buf = append(buf, '\n')
	}
	type mark struct {
		end int
		seq uint64
	}
	marks := make([]mark, 0, len(entries))
	last := s.lastSeq
	for i := range entries {
		if entries[i].Seq <= last {
			continue
		}
		buf = entries[i].AppendJSON(buf)
		buf = append(buf, '\n')
		last = entries[i].Seq
		marks = append(marks, mark{len(buf), last})
	}
	if cap(buf) <= 1<<20 {
		s.buf = buf // keep a buffer of ordinary size for the next write
	}
	if len(marks) == 0 {
		return nil
	}
	n, err := s.f.Write(buf)
	if err != nil {
		// Keep the state true to what reached the file, so a retry neither
		// skips an entry nor glues onto a partial line.
		if n > 0 {
			s.torn = !endsLine(buf[:n])
		}
		for _, m := range marks {
			if m.end <= n {
				s.lastSeq = m.seq
			}
		}
		return fmt.Errorf("audit file %s: %w", s.path, err)
	}
	s.torn = false
	s.lastSeq = last
	return nil
}

func endsLine(b []byte) bool { return len(b) > 0 && b[len(b)-1] == '\n' }

// Sync flushes written lines to stable storage.
func (s *FileSink) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Sync()
}

// Close syncs and closes the file.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	return err
}

package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// FileReport is the outcome of VerifyJSONL.
type FileReport struct {
	OK bool
	// Entries counts the entries verified (all of them when OK).
	Entries uint64
	// First and Last are the seqs of the first and last entry verified;
	// LastHash is the hash of Last.
	First, Last uint64
	LastHash    string
	// Genesis is set when the file starts at seq 1, so its start is anchored
	// at GenesisHash; a file that starts later is anchored by its own first
	// prev_hash.
	Genesis bool
	// FirstBroken is the seq at which the file stops being trustworthy (0
	// when OK, or when the first line fails before any seq is known), Line
	// the 1-based line where it was found, Reason why.
	FirstBroken uint64
	Line        int
	Reason      string
	// TornLines counts fragments left by a crash mid-write: lines that are
	// the start of a JSON object, cut short, and a strict prefix of the next
	// line, the entry the node
	// wrote again in full. TornTail is set when the file ends mid-line (a
	// write in progress, or a crash the node has not yet repaired); that
	// fragment is ignored.
	TornLines int
	TornTail  bool
	// Checkpoints are the verified entries' heads at every seq that is a
	// multiple of FileOptions.CheckpointEvery, in order.
	Checkpoints []Head
}

// FileOptions tunes VerifyJSONL.
type FileOptions struct {
	// CheckpointEvery keeps a Head every so many seqs (0: none), so a caller
	// can later locate where the file departs from another copy of the
	// chain without holding every hash.
	CheckpointEvery uint64
	// OnEntry, when set, is called with every verified entry, in order.
	OnEntry func(e *Entry)
}

// VerifyJSONL verifies an --audit-file (JSON lines, as FileSink writes
// them) offline: every line is parsed strictly (ParseLine), every hash is
// recomputed, every prev_hash must be the previous entry's hash and seqs must
// follow each other without gap or repeat. The first entry anchors the chain
// (GenesisHash for seq 1, else its own prev_hash). The error is only for I/O;
// a bad file is reported in the FileReport.
//
// On its own this proves the file is one unbroken chain, not that it is the
// cluster's: whoever edits an entry and recomputes every later hash produces
// a file that passes. Comparing the last entry's hash with the cluster's at
// that seq (coffer audit verify --file --addr) closes that gap.
func VerifyJSONL(r io.Reader, opt FileOptions) (FileReport, error) {
	var rep FileReport
	br := bufio.NewReaderSize(r, 64<<10)
	var v *verifier
	type fragment struct {
		line int
		b    []byte
	}
	var pending []fragment // terminated non-JSON lines, waiting for the entry they must prefix
	fail := func(line int, seq uint64, format string, args ...any) (FileReport, error) {
		rep.OK, rep.Line, rep.FirstBroken = false, line, seq
		rep.Reason = fmt.Sprintf("line %d: ", line) + fmt.Sprintf(format, args...)
		rep.Checkpoints = nil
		return rep, nil
	}
	next := func() uint64 { // the seq expected at this point
		if v == nil {
			return 0
		}
		return v.head.Seq + 1
	}
	lineNo := 0
	for {
		line, terminated, tooLong, err := readLine(br)
		if err != nil {
			return FileReport{}, fmt.Errorf("read audit file: %w", err)
		}
		if line == nil && !tooLong {
			break
		}
		lineNo++
		if tooLong {
			return fail(lineNo, next(), "longer than %d bytes", MaxLineBytes)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			return fail(lineNo, next(), "empty line")
		}
		e, perr := ParseLine(line)
		if perr != nil {
			if errors.Is(perr, ErrIncomplete) {
				if !terminated {
					rep.TornTail = true
					break
				}
				pending = append(pending, fragment{lineNo, bytes.Clone(line)})
				continue
			}
			seq := next()
			if seq == 0 {
				seq = looseSeq(line)
			}
			return fail(lineNo, seq, "%v", perr)
		}
		for _, f := range pending {
			if len(f.b) >= len(line) || !bytes.HasPrefix(line, f.b) {
				return fail(f.line, next(), "not an audit entry, nor a torn copy of the entry on the next line")
			}
		}
		rep.TornLines += len(pending)
		pending = pending[:0]
		if v == nil {
			anchor := Head{Seq: e.Seq - 1, Hash: e.PrevHash}
			if e.Seq <= 1 {
				anchor = Head{Hash: GenesisHash}
				rep.Genesis = true
			}
			v = &verifier{head: anchor}
			rep.First = e.Seq
		}
		if !v.check(e.Seq, &e, nil) {
			return fail(lineNo, v.broken, "%s", v.reason)
		}
		rep.Entries, rep.Last, rep.LastHash = v.checked, e.Seq, e.Hash
		if opt.CheckpointEvery > 0 && e.Seq%opt.CheckpointEvery == 0 {
			rep.Checkpoints = append(rep.Checkpoints, Head{Seq: e.Seq, Hash: e.Hash})
		}
		if opt.OnEntry != nil {
			opt.OnEntry(&e)
		}
	}
	if len(pending) > 0 {
		return fail(pending[0].line, next(), "not an audit entry")
	}
	rep.OK = true
	return rep, nil
}

// readLine returns the next line without its newline, and whether it had
// one; nil at the end of r. A line longer than MaxLineBytes is reported as
// tooLong instead.
func readLine(br *bufio.Reader) (line []byte, terminated, tooLong bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > MaxLineBytes+1 {
			return nil, false, true, nil
		}
		switch err {
		case nil:
			line = append(line, chunk[:len(chunk)-1]...)
			if line == nil {
				line = []byte{}
			}
			return line, true, false, nil
		case bufio.ErrBufferFull:
			line = append(line, chunk...)
		case io.EOF:
			if len(chunk) == 0 && line == nil {
				return nil, false, false, nil
			}
			return append(line, chunk...), false, false, nil
		default:
			return nil, false, false, err
		}
	}
}

// looseSeq reads seq from a line that failed the strict parse, only to say
// where the failure is.
func looseSeq(line []byte) uint64 {
	var x struct {
		Seq uint64 `json:"seq"`
	}
	_ = json.Unmarshal(line, &x)
	return x.Seq
}

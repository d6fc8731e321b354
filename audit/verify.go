package audit

import (
	"fmt"
	"math"
)

// Report is the outcome of verifying a chain.
type Report struct {
	OK bool
	// Checked counts the entries that passed every check before the first
	// broken one (all of them when OK).
	Checked uint64
	// First and Last are the lowest and highest seq held.
	First, Last uint64
	// FirstBroken is the seq at which the chain stops being trustworthy; 0
	// when OK.
	FirstBroken uint64
	// Reason says why FirstBroken is broken ("" when OK).
	Reason string
}

// VerifyStore verifies s's whole local chain, like Store.Verify, and also
// that it reaches head, the replicated chain head: the entry held at
// head.Seq must have head.Hash (or, when the store starts just after the
// head, its first prev_hash must be head.Hash). Without that anchor an entry
// altered together with every later hash, which chains perfectly, would
// pass. A head mismatch can't say which entry at or before head.Seq was
// altered (only a copy of the trail can: see the JSON-lines verifier), so it
// is reported at head.Seq.
//
// An empty store passes with nothing checked: a node restored from a
// snapshot holds no entry until it applies one or backfills from peers.
// The scan reads the store in chunks and holds no lock across them, so
// Apply is never stalled behind a verification; it is linear in the store's
// size.
func VerifyStore(s Store, head Head) (Report, error) {
	switch t := s.(type) {
	case *BufferedStore:
		// Everything the FSM queued before the caller read head is written
		// once flush returns.
		if err := t.flush(); err != nil {
			return Report{}, err
		}
		return VerifyStore(t.inner, head)
	case scanner:
		return verifyChain(t, head, true)
	default:
		return verifyChain(rangeScanner{s}, head, true)
	}
}

// verifyChain walks s from its first entry. With anchored, the chain must
// also pass through head (see VerifyStore).
func verifyChain(s scanner, head Head, anchored bool) (Report, error) {
	var r Report
	first, has, err := s.firstSeq()
	if err != nil || !has {
		r.OK = err == nil
		return r, err
	}
	r.First = first
	if r.Last, _, err = s.lastSeq(); err != nil {
		return Report{}, err
	}
	var v *verifier
	passed := !anchored || head.Seq == 0 // the chain went through head
	err = s.scan(first, func(seq uint64, e *Entry, decodeErr error) bool {
		if v == nil {
			// The first entry anchors the chain: the genesis hash for seq 1,
			// otherwise its own prev_hash (older entries are not held here),
			// or the replicated head when it is the entry right after it.
			anchor := Head{Seq: seq - 1, Hash: GenesisHash}
			switch {
			case anchored && head.Seq > 0 && seq == head.Seq+1:
				anchor.Hash = head.Hash
				passed = true
			case seq > 1 && decodeErr == nil:
				anchor.Hash = e.PrevHash
			}
			v = &verifier{head: anchor}
		}
		if !v.check(seq, e, decodeErr) {
			if anchored && head.Seq > 0 && seq == head.Seq+1 && v.checked == 0 && decodeErr == nil && e.Seq == seq && e.PrevHash != head.Hash {
				v.reason = fmt.Sprintf("entry %d's prev_hash is not the replicated chain head's hash", seq)
			}
			return false
		}
		if !passed && seq == head.Seq {
			if e.Hash != head.Hash {
				v.broken = seq
				v.checked--
				v.reason = fmt.Sprintf("the hash of entry %d is not the replicated chain head's: an entry at or before seq %d was altered and the later hashes recomputed", seq, seq)
				return false
			}
			passed = true
		}
		return true
	})
	if err != nil {
		return Report{First: first, Last: r.Last}, err
	}
	if v == nil { // emptied concurrently
		r.OK = true
		return r, nil
	}
	r.Checked = v.checked
	switch {
	case v.broken != 0:
		r.FirstBroken, r.Reason = v.broken, v.reason
	case !passed && v.head.Seq < head.Seq:
		r.FirstBroken = v.head.Seq + 1
		r.Reason = fmt.Sprintf("the local trail ends at seq %d, before the replicated chain head (seq %d)", v.head.Seq, head.Seq)
	case !passed:
		r.FirstBroken = head.Seq + 1
		r.Reason = fmt.Sprintf("the local trail starts at seq %d, after the replicated chain head (seq %d)", first, head.Seq)
	default:
		r.OK = true
	}
	return r, nil
}

// rangeScanner walks any Store through its public methods, for stores of
// other packages (test doubles).
type rangeScanner struct{ s Store }

func (r rangeScanner) firstSeq() (uint64, bool, error) {
	seq, ok := r.s.First()
	return seq, ok, nil
}

func (r rangeScanner) lastSeq() (uint64, bool, error) {
	e, ok := r.s.Last()
	return e.Seq, ok, nil
}

func (r rangeScanner) scan(from uint64, fn func(uint64, *Entry, error) bool) error {
	for {
		chunk, err := r.s.Range(from, math.MaxUint64, scanChunk)
		if err != nil {
			return err
		}
		for i := range chunk {
			if !fn(chunk[i].Seq, &chunk[i], nil) {
				return nil
			}
		}
		if len(chunk) < scanChunk || chunk[len(chunk)-1].Seq == math.MaxUint64 {
			return nil
		}
		from = chunk[len(chunk)-1].Seq + 1
	}
}

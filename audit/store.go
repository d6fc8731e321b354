package audit

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"time"
)

// Store is a node-local, append-only audit store. Writes are idempotent by
// seq (re-writing seq N overwrites it), so replaying the Raft log after a
// crash is harmless. Implementations are safe for concurrent use.
type Store interface {
	// Append writes entries, which must be in strictly increasing seq order
	// with seq > 0. An existing seq is overwritten, except that entries the
	// store provably holds already (a replay: every seq present and the
	// same hash at the last of them) may be skipped.
	Append(entries []Entry) error
	// TruncateAfter drops every entry with a seq greater than seq; it is used
	// when a snapshot is restored, so the local trail ends at the snapshot's
	// head before the log after it is replayed. TruncateAfter(0) empties the
	// store.
	TruncateAfter(seq uint64) error
	// Sync makes everything appended so far durable.
	Sync() error
	// First returns the lowest seq held.
	First() (uint64, bool)
	// Last returns the entry with the highest seq. ok is false when the store
	// is empty or that entry can't be read (Verify reports the latter).
	Last() (Entry, bool)
	// Get returns the entry with the given seq.
	Get(seq uint64) (Entry, bool, error)
	// Query returns the entries matching q in ascending seq order, and a
	// token for the next page ("" when the scan reached the end).
	Query(q Query) ([]Entry, string, error)
	// Verify verifies the whole local chain from its first entry, whose
	// prev_hash is trusted as the anchor (GenesisHash when that entry is seq
	// 1). It stops at the first broken entry: checked counts the entries
	// found intact before it, first and last are the lowest and highest seq
	// held, firstBroken is 0 when ok. err is reserved for I/O failures; a
	// corrupt entry is reported as broken, not as an error.
	Verify() (ok bool, checked uint64, first, last, firstBroken uint64, err error)
	Close() error
	// Range returns up to max entries with from <= seq <= to, in seq order
	// (for a peer filling in the trail a snapshot did not carry).
	Range(from, to uint64, max int) ([]Entry, error)
}

// Query selects entries. All set filters must match.
type Query struct {
	Since *time.Time // entries at or after Since
	Until *time.Time // entries strictly before Until (half-open, so adjacent windows don't overlap)
	// Actions keeps entries whose action is one of these; empty keeps all.
	Actions []string
	// Principal matches the principal's accessor or name exactly.
	Principal string
	// PathPrefix keeps entries whose path starts with it (a plain string
	// prefix, as in listSecrets).
	PathPrefix string
	// Limit is the page size: DefaultQueryLimit when <= 0, at most
	// MaxQueryLimit.
	Limit int
	// PageToken is an opaque token from a previous answer; it resumes after
	// that page's last entry.
	PageToken string
}

// Page sizes for Query.
const (
	DefaultQueryLimit = 100
	MaxQueryLimit     = 1000
)

// ErrBadPageToken is wrapped by Query's error for a token it did not issue.
var ErrBadPageToken = errors.New("invalid page token")

// The page token is version byte, next seq (8 bytes), CRC-32 of both, in
// unpadded base64url: opaque to clients, and a mangled token is rejected
// rather than silently resuming somewhere else.
const pageTokenVersion = 1

func encodePageToken(next uint64) string {
	b := make([]byte, 0, 13)
	b = append(b, pageTokenVersion)
	b = binary.BigEndian.AppendUint64(b, next)
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(tok string) (uint64, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 13 || b[0] != pageTokenVersion ||
		binary.BigEndian.Uint32(b[9:]) != crc32.ChecksumIEEE(b[:9]) {
		return 0, fmt.Errorf("audit query: %w", ErrBadPageToken)
	}
	next := binary.BigEndian.Uint64(b[1:9])
	if next == 0 {
		return 0, fmt.Errorf("audit query: %w", ErrBadPageToken)
	}
	return next, nil
}

// scanner is what Query and Verify need from a store: an ordered walk from a
// seq, and the highest seq held.
type scanner interface {
	// scan calls fn for every entry with seq >= from in ascending order until
	// fn returns false. decodeErr is set (and e zero) for an unreadable entry.
	scan(from uint64, fn func(seq uint64, e *Entry, decodeErr error) bool) error
	lastSeq() (uint64, bool, error)
	firstSeq() (uint64, bool, error)
}

// match reports whether e passes q's filters.
func (q *Query) match(e *Entry) bool {
	if q.Since != nil && e.Time.Before(*q.Since) {
		return false
	}
	if q.Until != nil && !e.Time.Before(*q.Until) {
		return false
	}
	if len(q.Actions) > 0 {
		found := false
		for _, a := range q.Actions {
			if a == e.Action {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if q.Principal != "" && q.Principal != e.Principal.Accessor && q.Principal != e.Principal.Name {
		return false
	}
	if q.PathPrefix != "" && !strings.HasPrefix(e.Path, q.PathPrefix) {
		return false
	}
	return true
}

// runQuery scans from the page token's seq, filters while scanning and stops
// at the limit, so a page costs what it skips plus what it returns.
func runQuery(s scanner, q Query) ([]Entry, string, error) {
	from := uint64(1)
	if q.PageToken != "" {
		var err error
		if from, err = decodePageToken(q.PageToken); err != nil {
			return nil, "", err
		}
	}
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultQueryLimit
	}
	if limit > MaxQueryLimit {
		limit = MaxQueryLimit
	}
	if q.Since != nil && q.Until != nil && !q.Since.Before(*q.Until) {
		return []Entry{}, "", nil
	}
	out := make([]Entry, 0, min(limit, 64))
	var scanErr error
	err := s.scan(from, func(seq uint64, e *Entry, decodeErr error) bool {
		if decodeErr != nil {
			scanErr = fmt.Errorf("audit query: entry %d: %w", seq, decodeErr)
			return false
		}
		if q.match(e) {
			out = append(out, *e)
		}
		return len(out) < limit
	})
	if err == nil {
		err = scanErr
	}
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) == limit {
		// Only hand out a token when something lies beyond the page; the
		// next page may still turn out empty if nothing else matches.
		lastOut := out[len(out)-1].Seq
		hi, ok, err := s.lastSeq()
		if err != nil {
			return nil, "", err
		}
		if ok && hi > lastOut {
			next = encodePageToken(lastOut + 1)
		}
	}
	return out, next, nil
}

// runVerify checks the whole local chain (see Store.Verify).
func runVerify(s scanner) (ok bool, checked uint64, first, last, firstBroken uint64, err error) {
	r, err := verifyChain(s, Head{}, false)
	return r.OK, r.Checked, r.First, r.Last, r.FirstBroken, err
}

// checkOrder enforces Append's precondition.
func checkOrder(entries []Entry) error {
	var prev uint64
	for i := range entries {
		if entries[i].Seq == 0 || entries[i].Seq <= prev {
			return fmt.Errorf("audit append: entry %d has seq %d after %d: seqs must be > 0 and increasing", i, entries[i].Seq, prev)
		}
		prev = entries[i].Seq
	}
	return nil
}

// rangeEntries implements Store.Range over a scanner.
func rangeEntries(s scanner, from, to uint64, max int) ([]Entry, error) {
	var out []Entry
	var scanErr error
	err := s.scan(from, func(seq uint64, e *Entry, err error) bool {
		if seq > to || len(out) >= max {
			return false
		}
		if err != nil {
			scanErr = fmt.Errorf("audit entry %d: %w", seq, err)
			return false
		}
		out = append(out, *e)
		return true
	})
	if err == nil {
		err = scanErr
	}
	return out, err
}

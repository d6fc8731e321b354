package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/apitypes"
)

// Entry is one audit entry; the type lives in apitypes so the API and the SDK
// share it.
type Entry = apitypes.AuditEntry

// GenesisHash is the prev_hash of the entry with seq 1.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// hashDomain separates our hash inputs from any other SHA-256 use and lets a
// future encoding change be told apart.
const hashDomain = "coffer.audit.v1"

// Head is the tip of the chain: the last seq and its hash. The zero Head is
// the empty chain; an empty Hash stands for GenesisHash.
type Head struct {
	Seq  uint64 `msgpack:"seq"`
	Hash string `msgpack:"hash"`
}

// hash returns h.Hash, with the empty chain's "" read as GenesisHash.
func (h Head) hash() string {
	if h.Hash == "" {
		return GenesisHash
	}
	return h.Hash
}

// Append chains e after h: it sets e.Seq, e.PrevHash and e.Hash and returns
// the new head. It reads nothing but h and e, so every node applying the same
// Raft entry computes the same chain.
func (h Head) Append(e *Entry) Head {
	e.Seq = h.Seq + 1
	e.PrevHash = h.hash()
	e.Hash = ComputeHash(e)
	return Head{Seq: e.Seq, Hash: e.Hash}
}

// ComputeHash returns the hex SHA-256 of e's canonical encoding: every field
// but Hash (PrevHash and Seq included), in a fixed order, integers as fixed
// width big-endian, strings length-prefixed, so no two different entries
// encode the same. Time is hashed as UTC RFC 3339 with nanoseconds, which
// survives msgpack and JSON round trips and ignores the time zone the value
// happens to carry.
func ComputeHash(e *Entry) string {
	// A stack buffer keeps the common case allocation-free apart from the
	// returned string.
	var stack [512]byte
	b := stack[:0]
	b = appendString(b, hashDomain)
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	var ts [48]byte
	b = appendBytes(b, e.Time.UTC().AppendFormat(ts[:0], time.RFC3339Nano))
	b = appendString(b, e.Node)
	b = appendString(b, e.RequestID)
	b = appendString(b, e.Action)
	b = appendString(b, e.Principal.Accessor)
	b = appendString(b, e.Principal.Name)
	b = appendString(b, e.SourceIP)
	b = appendString(b, e.Path)
	b = binary.BigEndian.AppendUint64(b, e.Version)
	b = appendString(b, e.KMSKey)
	b = binary.BigEndian.AppendUint32(b, e.KMSKeyVersion)
	b = appendString(b, e.Result)
	b = appendString(b, e.ErrorCode)
	b = appendString(b, e.Reason)
	b = appendString(b, e.PrevHash)
	sum := sha256.Sum256(b)
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:])
	return string(h[:])
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

// VerifyEntries checks that entries continue the chain after prev: seqs
// prev.Seq+1, prev.Seq+2, ... without gaps, each prev_hash equal to the
// previous hash, and each hash equal to ComputeHash. On failure firstBroken
// is the seq at which the chain stops being trustworthy (the position's
// expected seq, so a flipped seq field or a gap is reported where it occurs).
func VerifyEntries(prev Head, entries []Entry) (ok bool, firstBroken uint64) {
	v := verifier{head: prev}
	for i := range entries {
		if !v.check(entries[i].Seq, &entries[i], nil) {
			return false, v.broken
		}
	}
	return true, 0
}

// verifier walks a chain one entry at a time; VerifyEntries, the stores'
// Verify, VerifyStore and the JSON-lines verifier use it so they agree on
// what "broken" means.
type verifier struct {
	head    Head
	checked uint64
	broken  uint64
	reason  string
}

// check verifies the entry stored under seq (a store's key; for a plain slice
// the entry's own Seq). decodeErr reports an entry that could not be read.
func (v *verifier) check(seq uint64, e *Entry, decodeErr error) bool {
	want := v.head.Seq + 1
	var why string
	switch {
	case seq != want:
		why = fmt.Sprintf("seq %d is missing (the next entry held is seq %d)", want, seq)
		if seq < want {
			why = fmt.Sprintf("seq %d comes after seq %d", seq, v.head.Seq)
		}
	case decodeErr != nil:
		why = fmt.Sprintf("entry %d can't be decoded: %v", seq, decodeErr)
	case e.Seq != want:
		why = fmt.Sprintf("entry stored as seq %d says seq %d", want, e.Seq)
	case e.PrevHash != v.head.hash():
		why = fmt.Sprintf("entry %d's prev_hash is not the hash of entry %d", want, v.head.Seq)
	case ComputeHash(e) != e.Hash:
		why = fmt.Sprintf("entry %d's hash does not match its content", want)
	default:
		v.head = Head{Seq: e.Seq, Hash: e.Hash}
		v.checked++
		return true
	}
	v.broken, v.reason = want, why
	return false
}

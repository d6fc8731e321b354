package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxLineBytes bounds one line of an audit JSON-lines file; real entries are
// a few hundred bytes.
const MaxLineBytes = 1 << 20

// Fields of an entry's JSON object. Every one of them except hash is an
// input of ComputeHash, so a verified line vouches for every byte of meaning
// it carries. A field this version does not know can't be covered by the
// hash as it computes it, so ParseLine refuses it rather than vouch for it:
// a release that adds a field to entries must add it to the hash (a new
// hash domain) and ship the verifier that knows it.
const (
	fSeq = 1 << iota
	fTime
	fNode
	fRequestID
	fAction
	fPrincipal
	fSourceIP
	fPath
	fVersion
	fKMSKey
	fKMSKeyVersion
	fResult
	fErrorCode
	fReason
	fPrevHash
	fHash
)

// requiredFields are those the writer (apitypes.AuditEntry.AppendJSON)
// always emits; the others are omitted when empty or zero.
const requiredFields = fSeq | fTime | fNode | fRequestID | fAction | fPrincipal | fSourceIP | fResult | fPrevHash | fHash

var fieldBits = map[string]int{
	"seq": fSeq, "time": fTime, "node": fNode, "request_id": fRequestID, "action": fAction,
	"principal": fPrincipal, "source_ip": fSourceIP, "path": fPath, "version": fVersion,
	"kms_key": fKMSKey, "kms_key_version": fKMSKeyVersion, "result": fResult,
	"error_code": fErrorCode, "reason": fReason, "prev_hash": fPrevHash, "hash": fHash,
}

var fieldOrder = []string{"seq", "time", "node", "request_id", "action", "principal", "source_ip", "result", "prev_hash", "hash"}

// ParseLine decodes one audit entry from a JSON line, strictly: one JSON
// object and nothing else, valid UTF-8, no escaped surrogate, no duplicate
// key (JSON readers disagree which value of a duplicate counts, so a line
// with one could show a reader other content than what was hashed), no
// unknown key, every value of its field's type (seq and versions plain
// non-negative integers), the always-present fields present, and time in the
// canonical form that is hashed (UTC RFC 3339 with nanoseconds). It does not
// check the hash; VerifyJSONL does.
func ParseLine(line []byte) (Entry, error) {
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := expectDelim(dec, '{'); err != nil {
		return e, err
	}
	seen := 0
	for dec.More() {
		key, err := stringToken(dec, "a key")
		if err != nil {
			return e, err
		}
		bit, known := fieldBits[key]
		switch {
		case !known:
			return e, fmt.Errorf("unknown field %q (not covered by the entry's hash)", key)
		case seen&bit != 0:
			return e, fmt.Errorf("duplicate key %q", key)
		}
		seen |= bit
		if err := decodeField(dec, key, &e); err != nil {
			return e, err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return e, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return e, errors.New("more than one JSON value on the line")
	}
	// Checked after the walk, so that a line cut short mid-character by a
	// crash is still reported as incomplete (see ErrIncomplete).
	if !utf8.Valid(line) {
		return e, errors.New("invalid UTF-8")
	}
	if err := checkEscapes(line); err != nil {
		return e, err
	}
	if missing := requiredFields &^ seen; missing != 0 {
		for _, k := range fieldOrder {
			if missing&fieldBits[k] != 0 {
				return e, fmt.Errorf("missing field %q", k)
			}
		}
	}
	return e, nil
}

func decodeField(dec *json.Decoder, key string, e *Entry) error {
	var err error
	switch key {
	case "seq":
		e.Seq, err = uintToken(dec, key, 64)
	case "version":
		e.Version, err = uintToken(dec, key, 64)
	case "kms_key_version":
		var v uint64
		v, err = uintToken(dec, key, 32)
		e.KMSKeyVersion = uint32(v)
	case "time":
		var s string
		if s, err = stringToken(dec, key); err != nil {
			return err
		}
		t, perr := time.Parse(time.RFC3339Nano, s)
		if perr != nil || t.UTC().Format(time.RFC3339Nano) != s {
			return fmt.Errorf("time %q is not a UTC RFC 3339 time in canonical form", s)
		}
		e.Time = t.UTC()
	case "principal":
		return decodePrincipal(dec, e)
	default:
		var s string
		if s, err = stringToken(dec, key); err != nil {
			return err
		}
		switch key {
		case "node":
			e.Node = s
		case "request_id":
			e.RequestID = s
		case "action":
			e.Action = s
		case "source_ip":
			e.SourceIP = s
		case "path":
			e.Path = s
		case "kms_key":
			e.KMSKey = s
		case "result":
			e.Result = s
		case "error_code":
			e.ErrorCode = s
		case "reason":
			e.Reason = s
		case "prev_hash":
			e.PrevHash = s
		case "hash":
			e.Hash = s
		}
	}
	return err
}

func decodePrincipal(dec *json.Decoder, e *Entry) error {
	if err := expectDelim(dec, '{'); err != nil {
		return fmt.Errorf("principal: %w", err)
	}
	var seenAcc, seenName bool
	for dec.More() {
		key, err := stringToken(dec, "a key")
		if err != nil {
			return fmt.Errorf("principal: %w", err)
		}
		var dup bool
		var dst *string
		switch key {
		case "accessor":
			dup, seenAcc, dst = seenAcc, true, &e.Principal.Accessor
		case "name":
			dup, seenName, dst = seenName, true, &e.Principal.Name
		default:
			return fmt.Errorf("unknown field %q in principal (not covered by the entry's hash)", key)
		}
		if dup {
			return fmt.Errorf("duplicate key %q in principal", key)
		}
		if *dst, err = stringToken(dec, "principal."+key); err != nil {
			return err
		}
	}
	if !seenAcc || !seenName {
		return errors.New("principal must have accessor and name")
	}
	return expectDelim(dec, '}')
}

func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return syntaxErr(err)
	}
	if got, ok := tok.(json.Delim); !ok || got != d {
		if d == '{' {
			return errors.New("not a JSON object")
		}
		return fmt.Errorf("expected %q", string(d))
	}
	return nil
}

func stringToken(dec *json.Decoder, what string) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", syntaxErr(err)
	}
	s, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("%s must be a string, not %s", what, jsonKind(tok))
	}
	return s, nil
}

func uintToken(dec *json.Decoder, what string, bits int) (uint64, error) {
	tok, err := dec.Token()
	if err != nil {
		return 0, syntaxErr(err)
	}
	n, ok := tok.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%s must be a number, not %s", what, jsonKind(tok))
	}
	// ParseUint refuses fractions, exponents and signs: only the plain
	// integers the writer emits.
	v, perr := strconv.ParseUint(string(n), 10, bits)
	if perr != nil {
		return 0, fmt.Errorf("%s must be an integer from 0 to %d", what, uint64(1)<<bits-1)
	}
	return v, nil
}

func jsonKind(tok json.Token) string {
	switch tok.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case json.Delim:
		return "an object or array"
	}
	return "another type"
}

// ErrIncomplete is wrapped by ParseLine's error for a line that is a
// correct start of a JSON object but ends before it does: what a crash in
// the middle of a write leaves.
var ErrIncomplete = errors.New("incomplete JSON")

func syntaxErr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return ErrIncomplete
	}
	return fmt.Errorf("invalid JSON: %v", err)
}

// checkEscapes refuses \u escapes of UTF-16 surrogates: encoding/json turns
// a lone one into U+FFFD while other readers keep it, so the same line would
// read differently. The writer never escapes a surrogate (non-ASCII is
// written as UTF-8).
func checkEscapes(line []byte) error {
	inStr := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '"':
			inStr = !inStr
		case c == '\\' && inStr && i+1 < len(line):
			i++
			if line[i] == 'u' && i+4 < len(line) {
				if v, err := strconv.ParseUint(string(line[i+1:i+5]), 16, 16); err == nil && v >= 0xD800 && v <= 0xDFFF {
					return errors.New("escaped UTF-16 surrogate in a string")
				}
				i += 4
			}
		}
	}
	return nil
}

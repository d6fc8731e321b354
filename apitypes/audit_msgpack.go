package apitypes

import (
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// auditFields is the number of fields of the compact encoding.
const auditFields = 16

// EncodeMsgpack writes an entry as a fixed-order array: audit entries are
// most of what travels through the Raft log and the audit store, and the
// reflective, field-named encoding cost several times more CPU.
func (e AuditEntry) EncodeMsgpack(enc *msgpack.Encoder) error {
	var t int64
	if !e.Time.IsZero() {
		t = e.Time.UnixNano()
	}
	if err := enc.EncodeArrayLen(auditFields); err != nil {
		return err
	}
	for _, err := range []error{
		enc.EncodeUint(e.Seq), enc.EncodeInt(t), enc.EncodeString(e.Node), enc.EncodeString(e.RequestID),
		enc.EncodeString(e.Action), enc.EncodeString(e.Principal.Accessor), enc.EncodeString(e.Principal.Name),
		enc.EncodeString(e.SourceIP), enc.EncodeString(e.Path), enc.EncodeUint(e.Version), enc.EncodeString(e.KMSKey),
		enc.EncodeUint(uint64(e.KMSKeyVersion)), enc.EncodeString(e.Result), enc.EncodeString(e.ErrorCode),
		enc.EncodeString(e.Reason), enc.EncodeString(e.PrevHash + "\x00" + e.Hash),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// DecodeMsgpack reads the encoding of EncodeMsgpack.
func (e *AuditEntry) DecodeMsgpack(dec *msgpack.Decoder) error {
	return e.DecodeMsgpackStrings(dec, dec.DecodeString)
}

// DecodeMsgpackStrings is DecodeMsgpack reading each string field with str
// (which must read one msgpack string from dec): a decoder of many entries
// can keep one copy of the strings that repeat across them.
func (e *AuditEntry) DecodeMsgpackStrings(dec *msgpack.Decoder, str func() (string, error)) error {
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n != auditFields {
		return fmt.Errorf("audit entry: %d fields, want %d", n, auditFields)
	}
	var t int64
	var kv uint64
	var hashes string
	strs := []*string{&e.Node, &e.RequestID, &e.Action, &e.Principal.Accessor, &e.Principal.Name, &e.SourceIP, &e.Path}
	if e.Seq, err = dec.DecodeUint64(); err != nil {
		return err
	}
	if t, err = dec.DecodeInt64(); err != nil {
		return err
	}
	for _, p := range strs {
		if *p, err = str(); err != nil {
			return err
		}
	}
	if e.Version, err = dec.DecodeUint64(); err != nil {
		return err
	}
	if e.KMSKey, err = str(); err != nil {
		return err
	}
	if kv, err = dec.DecodeUint64(); err != nil {
		return err
	}
	for _, p := range []*string{&e.Result, &e.ErrorCode, &e.Reason} {
		if *p, err = str(); err != nil {
			return err
		}
	}
	// The hashes are unique to each entry: not worth a lookup.
	if hashes, err = dec.DecodeString(); err != nil {
		return err
	}
	e.KMSKeyVersion = uint32(kv)
	e.Time = time.Time{}
	if t != 0 {
		e.Time = time.Unix(0, t).UTC()
	}
	e.PrevHash, e.Hash = hashes, ""
	for i := 0; i < len(hashes); i++ {
		if hashes[i] == 0 {
			e.PrevHash, e.Hash = hashes[:i], hashes[i+1:]
			break
		}
	}
	return nil
}

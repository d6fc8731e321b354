package fsm

import (
	"bytes"
	"fmt"
	"io"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"github.com/vmihailenco/msgpack/v5"
)

// EntryBatch is the type byte of a log entry holding a batch of commands
// (group commit). Type bytes are never reused; a high bit (0x80) marks types
// an older node may skip.
const (
	EntryBatch byte = 1
	skippable  byte = 0x80
)

// CmdType identifies one command inside a batch.
type CmdType uint8

// Command types. Never renumber; add new ones at the end.
const (
	CmdInitCluster    CmdType = 1
	CmdInitRoot       CmdType = 2
	CmdCreateSecret   CmdType = 3
	CmdPutValue       CmdType = 4
	CmdUpdateSecret   CmdType = 5
	CmdDestroyVersion CmdType = 6
	CmdDeleteSecret   CmdType = 7
	CmdAuditOnly      CmdType = 8
	CmdCreateToken    CmdType = 9
	CmdRevokeToken    CmdType = 10
	CmdPutPolicy      CmdType = 11
	CmdDeletePolicy   CmdType = 12
	CmdRestoreState   CmdType = 13
)

// Command types of the KMS key lifecycle (20–39, see keys.go). Never
// renumber; add new ones at the end.
const (
	CmdCreateKey           CmdType = 20
	CmdRotateKey           CmdType = 21
	CmdDisableKey          CmdType = 22
	CmdEnableKey           CmdType = 23
	CmdScheduleKeyDeletion CmdType = 24
	CmdCancelKeyDeletion   CmdType = 25
	CmdDestroyKey          CmdType = 26
	CmdRebindSecretKey     CmdType = 27
	CmdRewrapRootKey       CmdType = 28
)

// Batch is one log entry: commands applied in order at the leader's time.
type Batch struct {
	Time int64      `msgpack:"t"` // leader's wall clock, unix nanoseconds
	Cmds []Envelope `msgpack:"c"`
}

// Envelope is one command with what Apply needs around it: the caller whose
// token must still be valid at apply time, and the audit entries the command
// produces (Apply fills time, result, version, seq and hash).
type Envelope struct {
	Type   CmdType `msgpack:"t"`
	Body   []byte  `msgpack:"b"`
	Caller string  `msgpack:"c,omitempty"` // token accessor; "" = no token check
	// Authorization re-checked at apply time against the replicated state
	// and the leader's clock, so a token revoked or a policy changed between
	// the check on the receiving node and the commit can't slip a write in.
	Action string                `msgpack:"ac,omitempty"` // API action name; "" = no policy check
	Path   string                `msgpack:"p,omitempty"`
	Source string                `msgpack:"ip,omitempty"`
	Audit  []apitypes.AuditEntry `msgpack:"a,omitempty"`
}

// Result is the outcome of one command, handed back to its caller.
type Result struct {
	Err     *errs.Error      `msgpack:"e,omitempty"`
	Version uint64           `msgpack:"v,omitempty"`
	Secret  *apitypes.Secret `msgpack:"s,omitempty"`
	Index   uint64           `msgpack:"i,omitempty"`
	Key     *apitypes.Key    `msgpack:"k,omitempty"` // KMS key actions
}

// SealedValue is an envelope-encrypted value as produced by kms.Seal.
type SealedValue struct {
	Ciphertext    []byte `msgpack:"ct"`
	WrappedDEK    []byte `msgpack:"dek"`
	Size          int    `msgpack:"sz"`
	KMSKey        string `msgpack:"k"`
	KMSKeyVersion uint32 `msgpack:"kv"`
}

// InitCluster sets the cluster id and creates the default KMS key.
type InitCluster struct {
	ClusterID       string `msgpack:"id"`
	DefaultKey      []byte `msgpack:"dk"` // key material wrapped by the root key
	RootFingerprint string `msgpack:"fp"`
}

// InitRoot creates the first (root) token, once per cluster.
type InitRoot struct {
	Accessor string `msgpack:"a"`
	Hash     string `msgpack:"h"`
}

// CreateSecret creates a secret, optionally with its first version.
type CreateSecret struct {
	Path         string                 `msgpack:"p"`
	UID          string                 `msgpack:"u"`
	KMSKey       string                 `msgpack:"k"`
	Description  string                 `msgpack:"d,omitempty"`
	Labels       map[string]string      `msgpack:"l,omitempty"`
	AccessPolicy *apitypes.AccessPolicy `msgpack:"ap,omitempty"`
	Value        *SealedValue           `msgpack:"v,omitempty"`
	Origin       string                 `msgpack:"o,omitempty"` // of the first version; "put" if empty
	CreatedBy    string                 `msgpack:"by"`
}

// PutValue adds a version. If Create is set and the path is absent, the
// secret is created with UID and KMSKey (generateSecret with create: true).
type PutValue struct {
	Path            string      `msgpack:"p"`
	UID             string      `msgpack:"u"`
	ExpectedVersion *uint64     `msgpack:"ev,omitempty"`
	Value           SealedValue `msgpack:"v"`
	Origin          string      `msgpack:"o"`
	Create          bool        `msgpack:"c,omitempty"`
	CreatedBy       string      `msgpack:"by"`
}

// UpdateSecret changes metadata; nil fields are left alone.
type UpdateSecret struct {
	Path         string                 `msgpack:"p"`
	Description  *string                `msgpack:"d,omitempty"`
	Labels       *map[string]string     `msgpack:"l,omitempty"`
	AccessPolicy *apitypes.AccessPolicy `msgpack:"ap,omitempty"`
}

// DestroyVersion erases one version's material.
type DestroyVersion struct {
	Path    string `msgpack:"p"`
	Version uint64 `msgpack:"v"`
}

// DeleteSecret removes a secret and all its versions.
type DeleteSecret struct {
	Path string `msgpack:"p"`
}

// AuditOnly carries only audit entries (reads, denials, failed requests).
type AuditOnly struct{}

// CreateToken stores a token's hash and metadata.
type CreateToken struct {
	Accessor    string   `msgpack:"a"`
	Hash        string   `msgpack:"h"`
	Name        string   `msgpack:"n"`
	Policies    []string `msgpack:"p"`
	ExpiresAt   int64    `msgpack:"x,omitempty"`
	SourceCIDRs []string `msgpack:"cidr,omitempty"`
}

// RevokeToken deletes a token by accessor.
type RevokeToken struct {
	Accessor string `msgpack:"a"`
}

// NewEnvelope encodes body as a command of type t.
func NewEnvelope(t CmdType, body any, caller string, auditEntries []apitypes.AuditEntry) (Envelope, error) {
	b, err := marshalSized(nil, body, 256)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode command %d: %w", t, err)
	}
	return Envelope{Type: t, Body: b, Caller: caller, Audit: auditEntries}, nil
}

// wireBatch is a batch as it sits in the log: each command is an encoded
// Envelope, embedded as is, so a leader batches commands forwarded by
// followers without decoding and re-encoding them.
type wireBatch struct {
	Time int64    `msgpack:"t"`
	Cmds [][]byte `msgpack:"c"` // length-prefixed: no parsing to find their ends
}

// EncodeEnvelope encodes one command for a batch (EncodeRawBatch).
func EncodeEnvelope(env *Envelope) ([]byte, error) {
	b, err := marshalSized(nil, env, 64+len(env.Body)+len(env.Path)+auditEntrySizeHint*len(env.Audit))
	if err != nil {
		return nil, fmt.Errorf("encode command %d: %w", env.Type, err)
	}
	return b, nil
}

// auditEntrySizeHint is about the encoded size of one audit entry, to size
// encoding buffers once instead of growing them.
const auditEntrySizeHint = 320

// marshalSized is msgpack.Marshal into a buffer of about the expected size:
// growing the buffer from empty was a quarter of a node's allocated bytes.
// prefix, if not empty, goes before the encoding in the same buffer.
func marshalSized(prefix []byte, v any, sizeHint int) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(prefix) + sizeHint)
	buf.Write(prefix)
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// EncodeRawBatch returns the log entry bytes of a batch of encoded commands.
func EncodeRawBatch(time int64, cmds [][]byte) ([]byte, error) {
	size := 32 // map and array headers, the time
	for _, c := range cmds {
		size += 5 + len(c)
	}
	b, err := marshalSized([]byte{EntryBatch}, &wireBatch{Time: time, Cmds: cmds}, size)
	if err != nil {
		return nil, fmt.Errorf("encode batch: %w", err)
	}
	return b, nil
}

// EncodeBatch returns the log entry bytes of a batch.
func EncodeBatch(b *Batch) ([]byte, error) {
	cmds := make([][]byte, len(b.Cmds))
	for i := range b.Cmds {
		c, err := EncodeEnvelope(&b.Cmds[i])
		if err != nil {
			return nil, err
		}
		cmds[i] = c
	}
	return EncodeRawBatch(b.Time, cmds)
}

// DecodeBatch parses a log entry made by EncodeBatch or EncodeRawBatch.
func DecodeBatch(data []byte) (*Batch, error) {
	if len(data) == 0 || data[0] != EntryBatch {
		return nil, fmt.Errorf("not a batch entry")
	}
	w, err := decodeWireBatch(data[1:])
	if err != nil {
		return nil, fmt.Errorf("decode batch: %w", err)
	}
	b := &Batch{Time: w.Time, Cmds: make([]Envelope, len(w.Cmds))}
	// Every node decodes every entry. One decoder serves all its commands,
	// and strings that repeat across them (node, actions, accessor, token
	// name, source, path, key, a read's request id in its two entries) are
	// allocated once: a decoder per command and a string per field were
	// most of the apply of read-audit commands.
	var r bytes.Reader
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	strs := newRecordDecoder(dec)
	for i, c := range w.Cmds {
		r.Reset(c)
		dec.Reset(&r)
		if err := b.Cmds[i].decode(dec, strs.shared); err != nil {
			return nil, fmt.Errorf("decode command %d of batch: %w", i, err)
		}
	}
	return b, nil
}

// decodeWireBatch reads what msgpack.Marshal made of a wireBatch, with the
// commands as sub-slices of data rather than copies (they are decoded right
// away, into values that copy what they keep).
func decodeWireBatch(data []byte) (wireBatch, error) {
	var w wireBatch
	r := bytes.NewReader(data)
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(r)
	n, err := dec.DecodeMapLen()
	if err != nil {
		return w, err
	}
	for range n {
		key, err := dec.DecodeString()
		if err != nil {
			return w, err
		}
		switch key {
		case "t":
			if w.Time, err = dec.DecodeInt64(); err != nil {
				return w, err
			}
		case "c":
			nc, err := dec.DecodeArrayLen()
			if err != nil {
				return w, err
			}
			if nc < 0 || nc > r.Len() { // every command takes at least one byte
				return w, fmt.Errorf("%d commands in %d bytes", nc, r.Len())
			}
			w.Cmds = make([][]byte, nc)
			for i := range w.Cmds {
				l, err := dec.DecodeBytesLen()
				if err != nil {
					return w, err
				}
				if l < 0 || l > r.Len() {
					return w, fmt.Errorf("command %d: %d bytes, %d left", i, l, r.Len())
				}
				start := len(data) - r.Len()
				w.Cmds[i] = data[start : start+l : start+l]
				if _, err := r.Seek(int64(l), io.SeekCurrent); err != nil {
					return w, err
				}
			}
		default:
			if err := dec.Skip(); err != nil {
				return w, err
			}
		}
	}
	return w, nil
}

// envelopeFields is the number of fields of an Envelope's compact encoding.
const envelopeFields = 7

// EncodeMsgpack writes an Envelope as a fixed-order array (it is decoded by
// every node for every command: the reflective encoding cost more).
func (e Envelope) EncodeMsgpack(enc *msgpack.Encoder) error {
	for _, err := range []error{
		enc.EncodeArrayLen(envelopeFields), enc.EncodeUint(uint64(e.Type)), enc.EncodeBytes(e.Body),
		enc.EncodeString(e.Caller), enc.EncodeString(e.Action), enc.EncodeString(e.Path), enc.EncodeString(e.Source),
		enc.EncodeArrayLen(len(e.Audit)),
	} {
		if err != nil {
			return err
		}
	}
	for i := range e.Audit {
		if err := e.Audit[i].EncodeMsgpack(enc); err != nil {
			return err
		}
	}
	return nil
}

// DecodeMsgpack reads the encoding of EncodeMsgpack.
func (e *Envelope) DecodeMsgpack(dec *msgpack.Decoder) error {
	return e.decode(dec, dec.DecodeString)
}

// decode is DecodeMsgpack reading the string fields with str.
func (e *Envelope) decode(dec *msgpack.Decoder, str func() (string, error)) error {
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n != envelopeFields {
		return fmt.Errorf("command envelope: %d fields, want %d", n, envelopeFields)
	}
	t, err := dec.DecodeUint8()
	if err != nil {
		return err
	}
	e.Type = CmdType(t)
	if e.Body, err = dec.DecodeBytes(); err != nil {
		return err
	}
	for _, p := range []*string{&e.Caller, &e.Action, &e.Path, &e.Source} {
		if *p, err = str(); err != nil {
			return err
		}
	}
	na, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	e.Audit = nil
	if na > 0 {
		e.Audit = make([]apitypes.AuditEntry, na)
		for i := range e.Audit {
			if err := e.Audit[i].DecodeMsgpackStrings(dec, str); err != nil {
				return err
			}
		}
	}
	return nil
}

package fsm

import (
	"fmt"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// recordDecoder decodes a snapshot's secret records by hand. They are
// written by msgpack's reflective encoder, as maps keyed by the fields'
// tags; decoding them by reflection, and interning their repeated strings
// through unique.Make, was most of a restore (seconds for a node holding a
// million secrets). This reads the same format, so the snapshot bytes do not
// change: unknown keys are skipped and absent ones leave the zero value, as
// the reflective decoder does.
type recordDecoder struct {
	dec  *msgpack.Decoder
	seen map[string]string // one copy of each key name, accessor and origin
	key  []byte            // the field name being decoded
	buf  []byte            // a shared string being read
}

func newRecordDecoder(dec *msgpack.Decoder) *recordDecoder {
	return &recordDecoder{dec: dec, seen: make(map[string]string)}
}

func (r *recordDecoder) secret(s *Secret) error {
	n, err := r.dec.DecodeMapLen()
	if err != nil {
		return err
	}
	for range max(n, 0) {
		key, err := r.bytes(&r.key)
		if err != nil {
			return err
		}
		switch string(key) {
		case "p":
			s.Path, err = r.dec.DecodeString()
		case "u":
			s.UID, err = r.dec.DecodeString()
		case "k":
			s.KMSKey, err = r.shared()
		case "d":
			s.Description, err = r.dec.DecodeString()
		case "l":
			err = r.dec.Decode(&s.Labels)
		case "ap":
			err = r.dec.Decode(&s.AccessPolicy)
		case "ca":
			s.CreatedAt, err = r.dec.DecodeInt64()
		case "cb":
			s.CreatedBy, err = r.shared()
		case "ua":
			s.UpdatedAt, err = r.dec.DecodeInt64()
		case "vs":
			s.Versions, err = r.versions()
		default:
			err = r.dec.Skip()
		}
		if err != nil {
			return fmt.Errorf("field %q: %w", key, err)
		}
	}
	return nil
}

func (r *recordDecoder) versions() ([]*Version, error) {
	n, err := r.dec.DecodeArrayLen()
	if err != nil || n < 0 {
		return nil, err
	}
	// The length comes from the file: a corrupt or crafted one must not
	// allocate more than the versions actually present.
	vs := make([]*Version, 0, min(n, 64))
	for i := range n {
		c, err := r.dec.PeekCode()
		if err != nil {
			return nil, err
		}
		if c == msgpcode.Nil {
			if err := r.dec.DecodeNil(); err != nil {
				return nil, err
			}
			vs = append(vs, nil)
			continue
		}
		v := new(Version)
		if err := r.version(v); err != nil {
			return nil, fmt.Errorf("version %d: %w", i+1, err)
		}
		vs = append(vs, v)
	}
	return vs, nil
}

func (r *recordDecoder) version(v *Version) error {
	n, err := r.dec.DecodeMapLen()
	if err != nil {
		return err
	}
	for range max(n, 0) {
		key, err := r.bytes(&r.key)
		if err != nil {
			return err
		}
		switch string(key) {
		case "n":
			v.Version, err = r.dec.DecodeUint64()
		case "x":
			v.Destroyed, err = r.dec.DecodeBool()
		case "ca":
			v.CreatedAt, err = r.dec.DecodeInt64()
		case "cb":
			v.CreatedBy, err = r.shared()
		case "o":
			v.Origin, err = r.shared()
		case "sz":
			v.Size, err = r.dec.DecodeInt()
		case "k":
			v.KMSKey, err = r.shared()
		case "kv":
			v.KMSKeyVersion, err = r.dec.DecodeUint32()
		case "ct":
			v.Ciphertext, err = r.dec.DecodeBytes()
		case "dek":
			v.WrappedDEK, err = r.dec.DecodeBytes()
		default:
			err = r.dec.Skip()
		}
		if err != nil {
			return fmt.Errorf("field %q: %w", key, err)
		}
	}
	return nil
}

// bytes reads a string (or nil) into *buf, reused: valid until the next
// read into it. The buffer grows as bytes arrive, so a length prefix larger
// than the data left allocates no more than that data (plus a chunk).
func (r *recordDecoder) bytes(buf *[]byte) ([]byte, error) {
	n, err := r.dec.DecodeBytesLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	const chunk = 64 << 10
	b := (*buf)[:0]
	for len(b) < n {
		k := min(n-len(b), chunk)
		b = slices.Grow(b, k)[:len(b)+k]
		if err := r.dec.ReadFull(b[len(b)-k:]); err != nil {
			return nil, err
		}
	}
	*buf = b
	return b, nil
}

// shared reads a string that repeats across records, allocating it only
// the first time it is seen.
func (r *recordDecoder) shared() (string, error) {
	b, err := r.bytes(&r.buf)
	if err != nil || len(b) == 0 {
		return "", err
	}
	if s, ok := r.seen[string(b)]; ok {
		return s, nil
	}
	s := string(b)
	r.seen[s] = s
	return s, nil
}

package fsm

import (
	"errors"
	"fmt"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// recordDecoder decodes a snapshot's secret records by hand. They are maps
// keyed by the fields' tags, the format msgpack's reflective encoder gives
// them (writeSecret below writes the same bytes, faster); decoding them by
// reflection, and interning their repeated strings through unique.Make, was
// most of a restore (seconds for a node holding a million secrets). Unknown
// keys are skipped and absent ones leave the zero value, as the reflective
// decoder does, so older and newer snapshots read the same. DecodeBatch
// uses its shared strings for the commands of a log entry.
type recordDecoder struct {
	dec  *msgpack.Decoder
	seen map[string]string // one copy of each key name, accessor and origin
	key  []byte            // the field name being decoded
	buf  []byte            // a shared string being read
	// recent caches seen strings by a cheap hash of their bytes: most
	// shared strings repeat the one read last in their place, and a
	// comparison costs less than the map's hashing.
	recent [64]string
}

func newRecordDecoder(dec *msgpack.Decoder) *recordDecoder {
	return &recordDecoder{dec: dec, seen: make(map[string]string)}
}

func (r *recordDecoder) secret(s *Secret) error {
	return r.fields(func(key []byte) (err error) {
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
			err = decodeBounded(r.dec, &s.AccessPolicy)
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
		return err
	})
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
	return r.fields(func(key []byte) (err error) {
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
		return err
	})
}

// fields decodes a record's map, handing each key to field, which decodes
// (or skips) its value; an error names the field.
func (r *recordDecoder) fields(field func(key []byte) error) error {
	n, err := r.dec.DecodeMapLen()
	if err != nil {
		return err
	}
	for range max(n, 0) {
		key, err := r.bytes(&r.key)
		if err != nil {
			return err
		}
		// The value may hold records of its own (versions), whose keys
		// reuse r.key: keep this one for the error.
		var name [8]byte
		k := copy(name[:], key)
		if err := field(key); err != nil {
			return fmt.Errorf("field %q: %w", string(name[:k]), err)
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
	slot := &r.recent[(len(b)*31+int(b[0])*7+int(b[len(b)-1]))%len(r.recent)]
	if *slot == string(b) {
		return *slot, nil
	}
	s, ok := r.seen[string(b)]
	if !ok {
		s = string(b)
		r.seen[s] = s
	}
	*slot = s
	return s, nil
}

// writeSecret writes s exactly as msgpack's reflective encoder does (a map
// of the fields by tag, in field order, without the empty omitempty ones;
// int64, uint32 and uint64 at fixed width), several times faster: a
// snapshot of a large state is mostly these records. A test holds it to the
// reflective encoder's bytes. enc must use neither compact ints nor
// omit-empty-all (WriteState's does not).
func writeSecret(enc *msgpack.Encoder, s *Secret) error {
	n := 7 // p u k ca cb ua vs; d l ap only when not empty
	if s.Description != "" {
		n++
	}
	if len(s.Labels) > 0 {
		n++
	}
	if s.AccessPolicy != nil {
		n++
	}
	w := fieldWriter{enc: enc}
	w.err = enc.EncodeMapLen(n)
	w.str("p", s.Path)
	w.str("u", s.UID)
	w.str("k", s.KMSKey)
	if s.Description != "" {
		w.str("d", s.Description)
	}
	if len(s.Labels) > 0 {
		w.field("l", func() error { return enc.Encode(s.Labels) })
	}
	if s.AccessPolicy != nil {
		w.field("ap", func() error { return enc.Encode(s.AccessPolicy) })
	}
	w.int64("ca", s.CreatedAt)
	w.str("cb", s.CreatedBy)
	w.int64("ua", s.UpdatedAt)
	w.field("vs", func() error { return writeVersions(enc, s.Versions) })
	return w.err
}

func writeVersions(enc *msgpack.Encoder, vs []*Version) error {
	if vs == nil {
		return enc.EncodeNil()
	}
	err := enc.EncodeArrayLen(len(vs))
	for _, v := range vs {
		if err != nil {
			break
		}
		if v == nil {
			err = enc.EncodeNil()
		} else {
			err = writeVersion(enc, v)
		}
	}
	return err
}

func writeVersion(enc *msgpack.Encoder, v *Version) error {
	n := 7 // n ca cb o sz k kv; x ct dek only when not empty
	if v.Destroyed {
		n++
	}
	if len(v.Ciphertext) > 0 {
		n++
	}
	if len(v.WrappedDEK) > 0 {
		n++
	}
	w := fieldWriter{enc: enc}
	w.err = enc.EncodeMapLen(n)
	w.field("n", func() error { return enc.EncodeUint64(v.Version) })
	if v.Destroyed {
		w.field("x", func() error { return enc.EncodeBool(true) })
	}
	w.int64("ca", v.CreatedAt)
	w.str("cb", v.CreatedBy)
	w.str("o", v.Origin)
	w.field("sz", func() error { return enc.EncodeInt(int64(v.Size)) })
	w.str("k", v.KMSKey)
	w.field("kv", func() error { return enc.EncodeUint32(v.KMSKeyVersion) })
	if len(v.Ciphertext) > 0 {
		w.field("ct", func() error { return enc.EncodeBytes(v.Ciphertext) })
	}
	if len(v.WrappedDEK) > 0 {
		w.field("dek", func() error { return enc.EncodeBytes(v.WrappedDEK) })
	}
	return w.err
}

// fieldWriter writes map entries and keeps the first error.
type fieldWriter struct {
	enc *msgpack.Encoder
	err error
}

// field writes key k, then its value with value, unless an error came first.
func (w *fieldWriter) field(k string, value func() error) {
	if w.err == nil {
		w.err = w.enc.EncodeString(k)
	}
	if w.err == nil {
		w.err = value()
	}
}

func (w *fieldWriter) str(k, v string) { w.field(k, func() error { return w.enc.EncodeString(v) }) }

func (w *fieldWriter) int64(k string, v int64) {
	w.field(k, func() error { return w.enc.EncodeInt64(v) })
}

// checkMsgpackBounds walks the msgpack values in b and checks that no array
// or map announces more elements than b has bytes left (each element takes
// at least one). msgpack's reflective decoder allocates a slice of the
// announced length before reading it (v5.4.1 ignores its own allocation
// limit), so 5 crafted bytes asked for hundreds of GB and killed the
// process: untrusted bytes are checked before they are decoded by
// reflection.
func checkMsgpackBounds(b []byte) error {
	pending := 1 // values still to read
	for i := 0; pending > 0; pending-- {
		if i >= len(b) {
			return errors.New("msgpack: truncated")
		}
		c := b[i]
		i++
		n, size := 0, 0 // n: elements that follow; size: bytes of the value's payload
		switch {
		case c <= msgpcode.PosFixedNumHigh || c >= msgpcode.NegFixedNumLow:
		case c >= msgpcode.FixedMapLow && c <= msgpcode.FixedMapHigh:
			n = 2 * int(c&0x0f)
		case c >= msgpcode.FixedArrayLow && c <= msgpcode.FixedArrayHigh:
			n = int(c & 0x0f)
		case c >= msgpcode.FixedStrLow && c <= msgpcode.FixedStrHigh:
			size = int(c & 0x1f)
		default:
			var w int // width of a length that follows the code
			switch c {
			case msgpcode.Nil, msgpcode.False, msgpcode.True:
			case msgpcode.Uint8, msgpcode.Int8:
				size = 1
			case msgpcode.Uint16, msgpcode.Int16:
				size = 2
			case msgpcode.Uint32, msgpcode.Int32, msgpcode.Float:
				size = 4
			case msgpcode.Uint64, msgpcode.Int64, msgpcode.Double:
				size = 8
			case msgpcode.FixExt1, msgpcode.FixExt2, msgpcode.FixExt4, msgpcode.FixExt8, msgpcode.FixExt16:
				size = 1 + 1<<(c-msgpcode.FixExt1)
			case msgpcode.Str8, msgpcode.Bin8, msgpcode.Ext8:
				w = 1
			case msgpcode.Str16, msgpcode.Bin16, msgpcode.Ext16, msgpcode.Array16, msgpcode.Map16:
				w = 2
			case msgpcode.Str32, msgpcode.Bin32, msgpcode.Ext32, msgpcode.Array32, msgpcode.Map32:
				w = 4
			default:
				return fmt.Errorf("msgpack: invalid code %#x", c)
			}
			if w > 0 {
				if len(b)-i < w {
					return errors.New("msgpack: truncated")
				}
				l := 0
				for _, x := range b[i : i+w] {
					l = l<<8 | int(x)
				}
				i += w
				switch c {
				case msgpcode.Array16, msgpcode.Array32:
					n = l
				case msgpcode.Map16, msgpcode.Map32:
					n = 2 * l
				case msgpcode.Ext8, msgpcode.Ext16, msgpcode.Ext32:
					size = l + 1 // the type byte
				default:
					size = l
				}
			}
		}
		if size > len(b)-i || n > len(b)-i || pending+n > len(b)-i+1 {
			return errors.New("msgpack: a length exceeds the data")
		}
		i += size
		pending += n
	}
	return nil
}

// decodeBounded decodes the next value of dec into v, by reflection, once
// checkMsgpackBounds has passed its bytes.
func decodeBounded(dec *msgpack.Decoder, v any) error {
	raw, err := dec.DecodeRaw()
	if err != nil {
		return err
	}
	if err := checkMsgpackBounds(raw); err != nil {
		return err
	}
	return msgpack.Unmarshal(raw, v)
}

package kms

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
)

// ErrDecrypt is wrapped by every error caused by a wrong key or altered data.
// Callers test it with errors.Is; the wrapping text names what was being
// decrypted, never the key.
var ErrDecrypt = errors.New("kms: decryption failed (wrong key or tampered data)")

// ErrNoRootKey is returned when an operation needs root keys and none are
// loaded (a nil *RootKeys, or a MaterialCache without a root).
var ErrNoRootKey = errors.New("kms: no root key loaded")

const (
	// KeySize is the size of every key in the package: root keys, KMS key
	// material and DEKs are all AES-256 keys.
	KeySize = 32

	nonceSize = 12 // standard GCM nonce; random nonces are safe well below 2^32 uses per key
	tagSize   = 16
	idSize    = 8

	// wrapFormatV1 is the first byte of a WrapKeyMaterial blob, so the layout
	// can change later without guessing.
	wrapFormatV1 byte = 1
	wrapHeader        = 1 + idSize // format byte + root key id

	checkMessage  = "coffer root key check v1"
	keyWrapDomain = "coffer-kms-key\x00"
)

// RootKeys holds one or more root keys. The newest (last) wraps; all unwrap.
// It is immutable after construction and safe for concurrent use.
type RootKeys struct {
	// The keys sit behind a pointer so that even reflection-based printing of
	// a struct that embeds a RootKeys value shows an address, not key bytes.
	set *rootKeySet
}

type rootKeySet struct {
	keys []rootKey // oldest first; never empty
}

type rootKey struct {
	key  []byte
	id   [idSize]byte
	fp   string
	aead cipher.AEAD // built once: re-keying AES on every wrap would dominate the cost
}

// ParseRootKeys parses the content of a root key file: one standard-base64
// (padded) 32-byte key per line, newest last. Blank lines and lines starting
// with '#' are ignored. Errors never contain key text.
func ParseRootKeys(data []byte) (*RootKeys, error) {
	r, err := parseRootKeys(data)
	if err != nil {
		return nil, fmt.Errorf("kms: root key file: %w", err)
	}
	return r, nil
}

// parseRootKeys returns errors without a prefix so ParseRootKeys and
// LoadRootKeyFile can each add their own context once.
func parseRootKeys(data []byte) (*RootKeys, error) {
	var keys [][]byte
	defer func() {
		for _, k := range keys {
			clear(k)
		}
	}()
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a BOM from a Windows editor is not key text
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line) // also drops '\r' from CRLF files
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		k := make([]byte, base64.StdEncoding.DecodedLen(len(line)))
		n, err := base64.StdEncoding.Decode(k, line)
		if err != nil {
			clear(k)
			// The decoder's own error is dropped: it is harmless today, but
			// the message is ours to keep free of key text.
			return nil, fmt.Errorf("line %d: not base64 (want standard alphabet with padding)", i+1)
		}
		k = k[:n]
		keys = append(keys, k)
		if n != KeySize {
			return nil, fmt.Errorf("line %d: key is %d bytes, want %d", i+1, n, KeySize)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no root key")
	}
	return newRootKeys(keys)
}

// LoadRootKeyFile reads and parses a root key file. Errors name the path,
// never the content.
func LoadRootKeyFile(path string) (*RootKeys, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kms: read root key file: %w", err) // *PathError already names the path
	}
	defer clear(data)
	r, err := parseRootKeys(data)
	if err != nil {
		return nil, fmt.Errorf("kms: root key file %s: %w", path, err)
	}
	return r, nil
}

// NewRootKeys builds RootKeys from raw keys, oldest first. The keys are
// copied, so the caller may clear its slices afterwards.
func NewRootKeys(keys ...[]byte) (*RootKeys, error) {
	if len(keys) == 0 {
		return nil, errors.New("kms: no root key")
	}
	for i, k := range keys {
		if len(k) != KeySize {
			return nil, fmt.Errorf("kms: root key %d is %d bytes, want %d", i+1, len(k), KeySize)
		}
	}
	return newRootKeys(keys)
}

func newRootKeys(keys [][]byte) (*RootKeys, error) {
	set := &rootKeySet{keys: make([]rootKey, len(keys))}
	for i, k := range keys {
		rk := rootKey{key: bytes.Clone(k)}
		mac := hmac.New(sha256.New, rk.key)
		mac.Write([]byte(checkMessage))
		copy(rk.id[:], mac.Sum(nil))
		rk.fp = hex.EncodeToString(rk.id[:])
		aead, err := newGCM(rk.key)
		if err != nil {
			return nil, err
		}
		rk.aead = aead
		set.keys[i] = rk
	}
	return &RootKeys{set: set}, nil
}

// list returns the keys, oldest first; nil for a nil or zero RootKeys.
func (r *RootKeys) list() []rootKey {
	if r == nil || r.set == nil {
		return nil
	}
	return r.set.keys
}

// newestKey returns the wrapping key, or nil if there is none.
func (r *RootKeys) newestKey() *rootKey {
	keys := r.list()
	if len(keys) == 0 {
		return nil
	}
	return &keys[len(keys)-1]
}

// GenerateRootKey returns a new root key file line (without newline): the
// standard base64 encoding of 32 random bytes.
func GenerateRootKey() (string, error) {
	k := make([]byte, KeySize)
	defer clear(k)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("kms: generate root key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// Fingerprint returns the key check value of the newest root key: the hex of
// the first 8 bytes of HMAC-SHA256(key, "coffer root key check v1"). It
// reveals nothing usable about the key and is safe to store and print, e.g.
// to detect a node started with another cluster's root key.
func (r *RootKeys) Fingerprint() string {
	if k := r.newestKey(); k != nil {
		return k.fp
	}
	return ""
}

// Fingerprints returns the fingerprints of all keys, oldest first.
func (r *RootKeys) Fingerprints() []string {
	keys := r.list()
	if keys == nil {
		return nil
	}
	fps := make([]string, len(keys))
	for i, k := range keys {
		fps[i] = k.fp
	}
	return fps
}

// Count returns the number of root keys.
func (r *RootKeys) Count() int {
	return len(r.list())
}

// Format prints a redacted summary under every verb (%v, %+v, %#v, %s, %x,
// ...), so a stray log or debug print can never leak root key bytes or the
// AES key schedules. It has a value receiver so that printing a dereferenced
// RootKeys is redacted too (fmt prints a nil *RootKeys as <nil>).
func (r RootKeys) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "kms.RootKeys{count: %d, newest: %s}", r.Count(), r.Fingerprint())
}

// String returns the same redacted summary as Format.
func (r RootKeys) String() string { return fmt.Sprint(r) }

// GoString returns the same redacted summary as Format.
func (r RootKeys) GoString() string { return fmt.Sprint(r) }

// Internal values get redacting Format methods too: the AEAD's key schedule
// contains the key, and fmt prints unexported fields by reflection.
func (k rootKey) Format(f fmt.State, _ rune)    { fmt.Fprintf(f, "rootKey{%s}", k.fp) }
func (s rootKeySet) Format(f fmt.State, _ rune) { fmt.Fprint(f, RootKeys{set: &s}) }

// keyWrapAAD binds a wrapped blob to its KMS key name and version, and to the
// blob's own header: the header is authenticated too, so altering the format
// byte or the root key id is detected like any other tampering.
func keyWrapAAD(keyName string, version uint32, header []byte) []byte {
	aad := make([]byte, 0, len(keyWrapDomain)+len(keyName)+1+4+len(header))
	aad = append(aad, keyWrapDomain...)
	aad = append(aad, keyName...)
	aad = append(aad, 0)
	aad = binary.BigEndian.AppendUint32(aad, version)
	return append(aad, header...)
}

// WrapKeyMaterial encrypts KMS key material under the newest root key.
// Output: format byte (1) | 8-byte root key id | 12-byte nonce | ciphertext+tag.
func (r *RootKeys) WrapKeyMaterial(keyName string, version uint32, material []byte) ([]byte, error) {
	rk := r.newestKey()
	if rk == nil {
		return nil, ErrNoRootKey
	}
	if len(material) != KeySize {
		return nil, fmt.Errorf("kms: wrap key %q version %d: material is %d bytes, want %d", keyName, version, len(material), KeySize)
	}
	out := make([]byte, wrapHeader+nonceSize, wrapHeader+nonceSize+len(material)+tagSize)
	out[0] = wrapFormatV1
	copy(out[1:wrapHeader], rk.id[:])
	nonce := out[wrapHeader:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("kms: wrap key %q version %d: %w", keyName, version, err)
	}
	return rk.aead.Seal(out, nonce, material, keyWrapAAD(keyName, version, out[:wrapHeader])), nil
}

// UnwrapKeyMaterial reverses WrapKeyMaterial. The root key is chosen by the
// id in the blob; if that fails, the other keys are tried too, so blobs stay
// readable even if the id derivation ever changes. Any failure wraps
// ErrDecrypt.
func (r *RootKeys) UnwrapKeyMaterial(keyName string, version uint32, wrapped []byte) ([]byte, error) {
	keys := r.list()
	if len(keys) == 0 {
		return nil, ErrNoRootKey
	}
	fail := fmt.Errorf("%w: key %q version %d", ErrDecrypt, keyName, version)
	if len(wrapped) < wrapHeader+nonceSize+tagSize || wrapped[0] != wrapFormatV1 {
		return nil, fail
	}
	header := wrapped[:wrapHeader]
	nonce := wrapped[wrapHeader : wrapHeader+nonceSize]
	ct := wrapped[wrapHeader+nonceSize:]
	aad := keyWrapAAD(keyName, version, header)
	id := header[1:]

	// Two passes, newest first (recent blobs are the common case): keys whose
	// id matches, then the rest. Failed attempts cost one GCM tag check each.
	for _, matching := range []bool{true, false} {
		for i := len(keys) - 1; i >= 0; i-- {
			if bytes.Equal(keys[i].id[:], id) != matching {
				continue
			}
			if pt, err := keys[i].aead.Open(nil, nonce, ct, aad); err == nil {
				return pt, nil
			}
		}
	}
	return nil, fail
}

// WrappedByNewest reports whether a WrapKeyMaterial blob names the newest root
// key, i.e. whether it still needs re-wrapping after a root key rotation.
func (r *RootKeys) WrappedByNewest(wrapped []byte) bool {
	rk := r.newestKey()
	if rk == nil || len(wrapped) < wrapHeader || wrapped[0] != wrapFormatV1 {
		return false
	}
	return bytes.Equal(wrapped[1:wrapHeader], rk.id[:])
}

// NewKeyMaterial returns 32 random bytes for a new KMS key version.
func NewKeyMaterial() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("kms: generate key material: %w", err)
	}
	return k, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("kms: key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, errors.New("kms: cannot create AES cipher") // never echo anything about the key
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, errors.New("kms: cannot create GCM")
	}
	return aead, nil
}

// DeriveKeys returns one 32-byte key per root key (oldest first), derived
// with HMAC-SHA256 under label, for purposes that must not use the root key
// itself (e.g. gossip encryption). Derived keys reveal nothing of the root.
func (r *RootKeys) DeriveKeys(label string) [][]byte {
	if r == nil || r.set == nil {
		return nil
	}
	out := make([][]byte, 0, len(r.set.keys))
	for _, k := range r.set.keys {
		m := hmac.New(sha256.New, k.key)
		m.Write([]byte("coffer derive v1\x00" + label))
		out = append(out, m.Sum(nil))
	}
	return out
}

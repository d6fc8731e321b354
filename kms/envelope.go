package kms

import (
	"crypto/cipher"
	"crypto/rand"
	"fmt"
)

const (
	dekDomain      = "coffer-dek\x00"
	wrappedDEKSize = nonceSize + KeySize + tagSize
)

// Seal encrypts a secret value under a fresh random DEK and wraps the DEK
// under keyMaterial.
//
//	ciphertext = nonce | AES-256-GCM(DEK, plaintext, aad)
//	wrappedDEK = nonce | AES-256-GCM(keyMaterial, DEK, "coffer-dek\x00"+aad)
//
// aad binds both to their secret (callers pass e.g. uid+path); Open and
// RewrapDEK must be given the same aad. A fresh DEK per version means a nonce
// collision can never span versions, and rebinding a secret to another key
// only re-wraps 60 bytes per version.
func Seal(keyMaterial, aad, plaintext []byte) (ciphertext, wrappedDEK []byte, err error) {
	kek, err := NewKEK(keyMaterial)
	if err != nil {
		return nil, nil, fmt.Errorf("kms: seal: key material: %w", err)
	}
	return kek.Seal(aad, plaintext)
}

// Open decrypts a value produced by Seal. Any altered byte, a wrong aad or
// wrong key material gives an error wrapping ErrDecrypt.
func Open(keyMaterial, aad, ciphertext, wrappedDEK []byte) ([]byte, error) {
	kek, err := NewKEK(keyMaterial)
	if err != nil {
		return nil, fmt.Errorf("kms: open: key material: %w", err)
	}
	return kek.Open(aad, ciphertext, wrappedDEK)
}

// KEK is a key-encryption key ready to use: one KMS key version's material
// expanded into its AES-GCM key schedule. Building it costs about as much as
// a whole Open of a small value, so MaterialCache.KEK keeps one per cached
// key version. A KEK is safe for concurrent use (the standard library's
// AES-GCM keeps no mutable state after construction), and it never prints
// its key (Format).
type KEK struct {
	aead cipher.AEAD
}

// NewKEK expands key material (KeySize bytes) into a KEK. The KEK does not
// keep material: callers may clear it afterwards.
func NewKEK(keyMaterial []byte) (*KEK, error) {
	aead, err := newGCM(keyMaterial)
	if err != nil {
		return nil, err
	}
	return &KEK{aead: aead}, nil
}

// Format keeps the key schedule out of prints (fmt reads unexported fields).
func (k KEK) Format(f fmt.State, _ rune) { fmt.Fprint(f, "kms.KEK{[redacted]}") }

// Seal is the package's Seal under this KEK.
func (k *KEK) Seal(aad, plaintext []byte) (ciphertext, wrappedDEK []byte, err error) {
	dek := make([]byte, KeySize)
	defer clear(dek)
	if _, err := rand.Read(dek); err != nil {
		return nil, nil, fmt.Errorf("kms: seal: generate data key: %w", err)
	}
	aead, err := newGCM(dek)
	if err != nil {
		return nil, nil, fmt.Errorf("kms: seal: %w", err)
	}
	ciphertext, err = sealWithNonce(aead, plaintext, aad)
	if err != nil {
		return nil, nil, fmt.Errorf("kms: seal: %w", err)
	}
	wrappedDEK, err = wrapDEK(k.aead, dek, aad)
	if err != nil {
		return nil, nil, fmt.Errorf("kms: seal: %w", err)
	}
	return ciphertext, wrappedDEK, nil
}

// Open is the package's Open under this KEK.
func (k *KEK) Open(aad, ciphertext, wrappedDEK []byte) ([]byte, error) {
	dek, err := unwrapDEK(k.aead, wrappedDEK, aad)
	if err != nil {
		return nil, err
	}
	defer clear(dek)
	aead, err := newGCM(dek)
	if err != nil {
		return nil, fmt.Errorf("kms: open: %w", err)
	}
	if len(ciphertext) < nonceSize+tagSize {
		return nil, fmt.Errorf("%w: value", ErrDecrypt)
	}
	pt, err := aead.Open(nil, ciphertext[:nonceSize], ciphertext[nonceSize:], aad)
	if err != nil {
		return nil, fmt.Errorf("%w: value", ErrDecrypt)
	}
	return pt, nil
}

// RewrapDEK unwraps a DEK under oldMaterial and wraps it under newMaterial
// with the same aad. The value ciphertext is untouched, which is what makes
// rebinding a secret to another KMS key cheap and atomic.
func RewrapDEK(oldMaterial, newMaterial, aad, wrappedDEK []byte) ([]byte, error) {
	oldKEK, err := newGCM(oldMaterial)
	if err != nil {
		return nil, fmt.Errorf("kms: rewrap: old key material: %w", err)
	}
	newKEK, err := newGCM(newMaterial)
	if err != nil {
		return nil, fmt.Errorf("kms: rewrap: new key material: %w", err)
	}
	dek, err := unwrapDEK(oldKEK, wrappedDEK, aad)
	if err != nil {
		return nil, err
	}
	defer clear(dek)
	out, err := wrapDEK(newKEK, dek, aad)
	if err != nil {
		return nil, fmt.Errorf("kms: rewrap: %w", err)
	}
	return out, nil
}

func dekAAD(aad []byte) []byte {
	b := make([]byte, 0, len(dekDomain)+len(aad))
	b = append(b, dekDomain...)
	return append(b, aad...)
}

func wrapDEK(kek cipher.AEAD, dek, aad []byte) ([]byte, error) {
	return sealWithNonce(kek, dek, dekAAD(aad))
}

func unwrapDEK(kek cipher.AEAD, wrappedDEK, aad []byte) ([]byte, error) {
	if len(wrappedDEK) != wrappedDEKSize {
		return nil, fmt.Errorf("%w: data key", ErrDecrypt)
	}
	dek, err := kek.Open(nil, wrappedDEK[:nonceSize], wrappedDEK[nonceSize:], dekAAD(aad))
	if err != nil || len(dek) != KeySize {
		clear(dek)
		return nil, fmt.Errorf("%w: data key", ErrDecrypt)
	}
	return dek, nil
}

// sealWithNonce returns nonce | aead.Seal(plaintext) with a random nonce.
func sealWithNonce(aead cipher.AEAD, plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, nonceSize, nonceSize+len(plaintext)+tagSize)
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("generate nonce: %w", err)
	}
	return aead.Seal(out, out[:nonceSize], plaintext, aad), nil
}

package kms

import (
	"bytes"
	"testing"
)

func TestWrappingFingerprintNamesTheWrappingRootKey(t *testing.T) {
	oldKey, newKey := bytes.Repeat([]byte{1}, KeySize), bytes.Repeat([]byte{2}, KeySize)
	oldOnly, err := NewRootKeys(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	both, err := NewRootKeys(oldKey, newKey)
	if err != nil {
		t.Fatal(err)
	}
	newOnly, err := NewRootKeys(newKey)
	if err != nil {
		t.Fatal(err)
	}
	material := bytes.Repeat([]byte{7}, KeySize)
	w1, err := oldOnly.WrapKeyMaterial("k", 1, material)
	if err != nil {
		t.Fatal(err)
	}
	if got := WrappingFingerprint(w1); got != oldOnly.Fingerprint() {
		t.Fatalf("fingerprint %q, want %q", got, oldOnly.Fingerprint())
	}
	// Root key rotation: old+new unwraps the old blob and wraps under new;
	// after the re-wrap, new alone unwraps everything.
	m, err := both.UnwrapKeyMaterial("k", 1, w1)
	if err != nil || !bytes.Equal(m, material) {
		t.Fatalf("old+new can't unwrap an old blob: %v", err)
	}
	if both.WrappedByNewest(w1) {
		t.Fatal("an old blob counts as wrapped by the newest key")
	}
	w2, err := both.WrapKeyMaterial("k", 1, m)
	if err != nil {
		t.Fatal(err)
	}
	if WrappingFingerprint(w2) != newOnly.Fingerprint() || !both.WrappedByNewest(w2) {
		t.Fatal("re-wrapped blob is not under the newest key")
	}
	if _, err := newOnly.UnwrapKeyMaterial("k", 1, w1); err == nil {
		t.Fatal("the new key alone unwrapped an old blob")
	}
	if m2, err := newOnly.UnwrapKeyMaterial("k", 1, w2); err != nil || !bytes.Equal(m2, material) {
		t.Fatalf("the new key alone can't unwrap the re-wrapped blob: %v", err)
	}
	for _, bad := range [][]byte{nil, {1, 2}, append([]byte{9}, w1[1:]...)} {
		if got := WrappingFingerprint(bad); got != "" {
			t.Errorf("WrappingFingerprint(%x) = %q, want empty", bad, got)
		}
	}
}

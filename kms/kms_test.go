package kms

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// seqKey returns a deterministic 32-byte key: seed, seed+1, ...
func seqKey(seed byte) []byte {
	k := make([]byte, KeySize)
	for i := range k {
		k[i] = seed + byte(i)
	}
	return k
}

func b64(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

func mustRoot(t testing.TB, keys ...[]byte) *RootKeys {
	t.Helper()
	r, err := NewRootKeys(keys...)
	if err != nil {
		t.Fatalf("NewRootKeys: %v", err)
	}
	return r
}

func mustMaterial(t testing.TB) []byte {
	t.Helper()
	m, err := NewKeyMaterial()
	if err != nil {
		t.Fatalf("NewKeyMaterial: %v", err)
	}
	return m
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

func TestParseRootKeys(t *testing.T) {
	k1, k2 := seqKey(0), seqKey(100)
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	long := base64.StdEncoding.EncodeToString(make([]byte, 33))
	unpadded := base64.RawStdEncoding.EncodeToString(seqKey(7)[:31]) // 31 bytes -> needs padding
	tests := []struct {
		name    string
		in      string
		wantErr string   // substring; "" means success
		wantFPs []string // fingerprints of the keys, oldest first
	}{
		{name: "empty", in: "", wantErr: "no root key"},
		{name: "only blanks and comments", in: "\n# a comment\n   \n\t\n#" + b64(k1) + "\n", wantErr: "no root key"},
		{name: "bad base64", in: b64(k1) + "\n\nnot*base64!\n", wantErr: "line 3: not base64"},
		{name: "unpadded", in: unpadded + "\n", wantErr: "line 1: not base64"},
		{name: "url alphabet", in: strings.NewReplacer("+", "-", "/", "_").Replace(b64(seqKey(0xf0))), wantErr: "line 1: not base64"},
		{name: "too short", in: "# root\n" + short + "\n", wantErr: "line 2: key is 16 bytes, want 32"},
		{name: "too long", in: b64(k1) + "\n" + long, wantErr: "line 2: key is 33 bytes, want 32"},
		{name: "two keys on one line", in: b64(k1) + " " + b64(k2), wantErr: "line 1: not base64"},
		{name: "utf-8 BOM", in: "\xef\xbb\xbf" + b64(k1) + "\n", wantFPs: []string{"76148dc0ac6d86a5"}},
		{name: "single key no newline", in: b64(k1), wantFPs: []string{"76148dc0ac6d86a5"}},
		{name: "single key", in: b64(k1) + "\n", wantFPs: []string{"76148dc0ac6d86a5"}},
		{
			name:    "comments blanks CRLF and indentation",
			in:      "# coffer root keys, newest last\r\n\r\n  " + b64(k1) + "  \r\n# rotated 2025-01-01\r\n\t" + b64(k2) + "\r\n\r\n",
			wantFPs: []string{fpOf(k1), fpOf(k2)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRootKeys([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseRootKeys succeeded, want error containing %q", tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q does not contain %q", err, tc.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "kms: ") {
					t.Errorf("error %q lacks the kms: prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRootKeys: %v", err)
			}
			if got := r.Fingerprints(); fmt.Sprint(got) != fmt.Sprint(tc.wantFPs) {
				t.Errorf("Fingerprints = %v, want %v", got, tc.wantFPs)
			}
			if r.Count() != len(tc.wantFPs) {
				t.Errorf("Count = %d, want %d", r.Count(), len(tc.wantFPs))
			}
			if r.Fingerprint() != tc.wantFPs[len(tc.wantFPs)-1] {
				t.Errorf("Fingerprint = %s, want newest %s", r.Fingerprint(), tc.wantFPs[len(tc.wantFPs)-1])
			}
		})
	}
}

func fpOf(k []byte) string {
	r, err := NewRootKeys(k)
	if err != nil {
		panic(err)
	}
	return r.Fingerprint()
}

func TestLoadRootKeyFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "root.key")
	bad := filepath.Join(dir, "bad.key")
	secretish := b64(seqKey(9))[:20] // looks like key text; must not be echoed
	if err := os.WriteFile(good, []byte("# root\n"+b64(seqKey(1))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(secretish+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		wantErr []string
	}{
		{name: "ok", path: good},
		{name: "missing", path: filepath.Join(dir, "nope.key"), wantErr: []string{"nope.key", "kms: "}},
		{name: "bad content", path: bad, wantErr: []string{bad, "line 1: key is 15 bytes, want 32"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := LoadRootKeyFile(tc.path)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("LoadRootKeyFile: %v", err)
				}
				if r.Fingerprint() != fpOf(seqKey(1)) {
					t.Errorf("wrong key loaded")
				}
				return
			}
			if err == nil {
				t.Fatal("LoadRootKeyFile succeeded, want error")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), secretish) {
				t.Errorf("error %q echoes file content", err)
			}
		})
	}
}

func TestNewRootKeys(t *testing.T) {
	tests := []struct {
		name    string
		keys    [][]byte
		wantErr string
	}{
		{name: "none", wantErr: "no root key"},
		{name: "short", keys: [][]byte{seqKey(0), seqKey(1)[:31]}, wantErr: "root key 2 is 31 bytes, want 32"},
		{name: "one", keys: [][]byte{seqKey(0)}},
		{name: "three", keys: [][]byte{seqKey(0), seqKey(1), seqKey(2)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewRootKeys(tc.keys...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Count() != len(tc.keys) {
				t.Errorf("Count = %d, want %d", r.Count(), len(tc.keys))
			}
		})
	}

	// The keys are copied: clearing the caller's slice must not break wrapping.
	k := seqKey(3)
	r := mustRoot(t, k)
	m := mustMaterial(t)
	w, err := r.WrapKeyMaterial("default", 1, m)
	if err != nil {
		t.Fatal(err)
	}
	clear(k)
	if got, err := r.UnwrapKeyMaterial("default", 1, w); err != nil || !bytes.Equal(got, m) {
		t.Fatalf("after clearing caller's key: got %x, %v", got, err)
	}
	if r.Fingerprint() != fpOf(seqKey(3)) {
		t.Errorf("fingerprint changed after clearing caller's key")
	}
}

func TestGenerateRootKey(t *testing.T) {
	a, err := GenerateRootKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateRootKey()
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("two generated root keys are equal")
	}
	if strings.ContainsAny(a, "\r\n") {
		t.Fatalf("generated key contains a newline")
	}
	r, err := ParseRootKeys([]byte(a + "\n" + b + "\n"))
	if err != nil {
		t.Fatalf("generated keys do not parse: %v", err)
	}
	if r.Count() != 2 {
		t.Fatalf("Count = %d", r.Count())
	}
	raw, _ := base64.StdEncoding.DecodeString(a)
	if len(raw) != KeySize {
		t.Fatalf("generated key is %d bytes", len(raw))
	}
}

func TestNewKeyMaterial(t *testing.T) {
	a, b := mustMaterial(t), mustMaterial(t)
	if len(a) != KeySize || len(b) != KeySize {
		t.Fatalf("lengths %d, %d", len(a), len(b))
	}
	if bytes.Equal(a, b) {
		t.Fatal("two key materials are equal")
	}
}

func TestWrapKeyMaterialLayoutAndBinding(t *testing.T) {
	r := mustRoot(t, seqKey(0))
	m := mustMaterial(t)
	w, err := r.WrapKeyMaterial("payments", 3, m)
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 + 8 + 12 + KeySize + 16; len(w) != want {
		t.Fatalf("wrapped len = %d, want %d", len(w), want)
	}
	if w[0] != 1 {
		t.Errorf("format byte = %d, want 1", w[0])
	}
	if got := hex.EncodeToString(w[1:9]); got != r.Fingerprint() {
		t.Errorf("key id = %s, want fingerprint %s", got, r.Fingerprint())
	}
	if bytes.Contains(w, m) {
		t.Error("wrapped blob contains the material in clear")
	}

	tests := []struct {
		name    string
		keyName string
		version uint32
		ok      bool
	}{
		{"same name and version", "payments", 3, true},
		{"other version", "payments", 4, false},
		{"version zero", "payments", 0, false},
		{"other name", "payment", 3, false},
		{"name prefix trick", "payments\x00", 3, false},
		{"empty name", "", 3, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.UnwrapKeyMaterial(tc.keyName, tc.version, w)
			if tc.ok {
				if err != nil || !bytes.Equal(got, m) {
					t.Fatalf("got %x, %v", got, err)
				}
				return
			}
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("err = %v, want ErrDecrypt", err)
			}
		})
	}

	if _, err := r.WrapKeyMaterial("payments", 1, m[:16]); err == nil || errors.Is(err, ErrDecrypt) {
		t.Errorf("wrapping 16-byte material: err = %v, want a length error", err)
	}
	var nilRoot *RootKeys
	if _, err := nilRoot.WrapKeyMaterial("x", 1, m); !errors.Is(err, ErrNoRootKey) {
		t.Errorf("nil root wrap: %v", err)
	}
	if _, err := nilRoot.UnwrapKeyMaterial("x", 1, w); !errors.Is(err, ErrNoRootKey) {
		t.Errorf("nil root unwrap: %v", err)
	}
}

func TestUnwrapKeyMaterialTamper(t *testing.T) {
	r := mustRoot(t, seqKey(0), seqKey(50))
	w, err := r.WrapKeyMaterial("default", 1, mustMaterial(t))
	if err != nil {
		t.Fatal(err)
	}
	// Layout: [0] format | [1,9) key id | [9,21) nonce | [21,53) ciphertext | [53,69) tag
	tests := []struct {
		name string
		blob []byte
	}{
		{"format byte", flip(w, 0)},
		{"format byte zero", append([]byte{0}, w[1:]...)},
		{"key id first", flip(w, 1)},
		{"key id last", flip(w, 8)},
		{"key id of other loaded key", append(append([]byte{1}, r.list()[0].id[:]...), w[9:]...)},
		{"nonce first", flip(w, 9)},
		{"nonce last", flip(w, 20)},
		{"ciphertext first", flip(w, 21)},
		{"ciphertext last", flip(w, 52)},
		{"tag first", flip(w, 53)},
		{"tag last", flip(w, len(w)-1)},
		{"truncated", w[:len(w)-1]},
		{"extended", append(bytes.Clone(w), 0)},
		{"header only", w[:9]},
		{"empty", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.UnwrapKeyMaterial("default", 1, tc.blob)
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("err = %v (material %d bytes), want ErrDecrypt", err, len(got))
			}
			if got != nil {
				t.Fatal("material returned alongside an error")
			}
		})
	}
}

func TestMultiKeyRoot(t *testing.T) {
	k1, k2, k3 := seqKey(0), seqKey(64), seqKey(128)
	oldRoot := mustRoot(t, k1)
	rotated, err := ParseRootKeys([]byte("# old\n" + b64(k1) + "\n# new\n" + b64(k2) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	onlyNew := mustRoot(t, k2)
	other := mustRoot(t, k3)
	m := mustMaterial(t)

	oldBlob, err := oldRoot.WrapKeyMaterial("default", 1, m)
	if err != nil {
		t.Fatal(err)
	}
	newBlob, err := rotated.WrapKeyMaterial("default", 1, m)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(newBlob[1:9]) != fpOf(k2) {
		t.Fatal("rotated root did not wrap with its newest key")
	}
	if rotated.Fingerprint() != fpOf(k2) || fmt.Sprint(rotated.Fingerprints()) != fmt.Sprint([]string{fpOf(k1), fpOf(k2)}) {
		t.Fatalf("fingerprints %s %v", rotated.Fingerprint(), rotated.Fingerprints())
	}

	tests := []struct {
		name       string
		root       *RootKeys
		blob       []byte
		ok         bool
		byNewest   bool
		blobOrigin string
	}{
		{"old root reads old blob", oldRoot, oldBlob, true, true, "old"},
		{"rotated root reads old blob", rotated, oldBlob, true, false, "old"},
		{"rotated root reads new blob", rotated, newBlob, true, true, "new"},
		{"old root can't read new blob", oldRoot, newBlob, false, false, "new"},
		{"dropped old key can't read old blob", onlyNew, oldBlob, false, false, "old"},
		{"new-only root reads new blob", onlyNew, newBlob, true, true, "new"},
		{"unrelated root", other, newBlob, false, false, "new"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.root.UnwrapKeyMaterial("default", 1, tc.blob)
			if tc.ok && (err != nil || !bytes.Equal(got, m)) {
				t.Fatalf("got %d bytes, %v", len(got), err)
			}
			if !tc.ok && !errors.Is(err, ErrDecrypt) {
				t.Fatalf("err = %v, want ErrDecrypt", err)
			}
			if g := tc.root.WrappedByNewest(tc.blob); g != tc.byNewest {
				t.Errorf("WrappedByNewest = %v, want %v", g, tc.byNewest)
			}
		})
	}
	for _, b := range [][]byte{nil, {1}, flip(newBlob, 0)} {
		if rotated.WrappedByNewest(b) {
			t.Errorf("WrappedByNewest(%x) = true", b)
		}
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	m := mustMaterial(t)
	tests := []struct {
		name string
		size int
		aad  []byte
	}{
		{"empty", 0, []byte("uid|/a")},
		{"1 byte", 1, []byte("0123456789abcdef0123456789abcdef/app/prod/db/password")},
		{"256 bytes", 256, []byte("uid/x")},
		{"64 KiB", 64 << 10, []byte("uid/big")},
		{"nil aad", 10, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pt := make([]byte, tc.size)
			rand.Read(pt)
			ct, wd, err := Seal(m, tc.aad, pt)
			if err != nil {
				t.Fatal(err)
			}
			if len(ct) != 12+tc.size+16 {
				t.Errorf("ciphertext len = %d, want %d", len(ct), 12+tc.size+16)
			}
			if len(wd) != 12+KeySize+16 {
				t.Errorf("wrapped DEK len = %d, want %d", len(wd), 12+KeySize+16)
			}
			if tc.size >= 16 && bytes.Contains(ct, pt) {
				t.Error("ciphertext contains plaintext")
			}
			got, err := Open(m, tc.aad, ct, wd)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, pt) {
				t.Fatal("round trip mismatch")
			}
		})
	}
}

func TestSealTwiceDiffers(t *testing.T) {
	m := mustMaterial(t)
	aad, pt := []byte("uid/p"), []byte("hunter2")
	ct1, wd1, err := Seal(m, aad, pt)
	if err != nil {
		t.Fatal(err)
	}
	ct2, wd2, err := Seal(m, aad, pt)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(ct1, ct2) || bytes.Equal(ct1[:12], ct2[:12]) {
		t.Error("two seals of the same plaintext produced the same value ciphertext or nonce")
	}
	if bytes.Equal(wd1, wd2) {
		t.Error("two seals produced the same wrapped DEK")
	}
	// Fresh DEK per seal: the DEK of one seal can't open the other's value.
	if _, err := Open(m, aad, ct1, wd2); !errors.Is(err, ErrDecrypt) {
		t.Errorf("value opened with another version's DEK: %v", err)
	}
	r := mustRoot(t, seqKey(0))
	w1, _ := r.WrapKeyMaterial("k", 1, m)
	w2, _ := r.WrapKeyMaterial("k", 1, m)
	if bytes.Equal(w1, w2) {
		t.Error("two wraps of the same material are equal")
	}
}

func TestOpenTamper(t *testing.T) {
	m, m2 := mustMaterial(t), mustMaterial(t)
	aad := []byte("3f2a/app/prod/db")
	pt := []byte("correct horse battery staple") // 28 bytes
	ct, wd, err := Seal(m, aad, pt)
	if err != nil {
		t.Fatal(err)
	}
	otherCT, otherWD, err := Seal(m, []byte("3f2a/app/prod/other"), pt)
	if err != nil {
		t.Fatal(err)
	}
	// value:       [0,12) nonce | [12,40) ciphertext | [40,56) tag
	// wrapped DEK: [0,12) nonce | [12,44) ciphertext | [44,60) tag
	tests := []struct {
		name     string
		material []byte
		aad      []byte
		ct, wd   []byte
	}{
		{"value nonce first", m, aad, flip(ct, 0), wd},
		{"value nonce last", m, aad, flip(ct, 11), wd},
		{"value ciphertext first", m, aad, flip(ct, 12), wd},
		{"value ciphertext last", m, aad, flip(ct, 12+len(pt)-1), wd},
		{"value tag first", m, aad, flip(ct, len(ct)-16), wd},
		{"value tag last", m, aad, flip(ct, len(ct)-1), wd},
		{"value truncated", m, aad, ct[:len(ct)-1], wd},
		{"value too short", m, aad, ct[:27], wd},
		{"value empty", m, aad, nil, wd},
		{"value extended", m, aad, append(bytes.Clone(ct), 0), wd},
		{"dek nonce first", m, aad, ct, flip(wd, 0)},
		{"dek nonce last", m, aad, ct, flip(wd, 11)},
		{"dek ciphertext first", m, aad, ct, flip(wd, 12)},
		{"dek ciphertext last", m, aad, ct, flip(wd, 43)},
		{"dek tag first", m, aad, ct, flip(wd, 44)},
		{"dek tag last", m, aad, ct, flip(wd, 59)},
		{"dek truncated", m, aad, ct, wd[:59]},
		{"dek extended", m, aad, ct, append(bytes.Clone(wd), 0)},
		{"dek empty", m, aad, ct, nil},
		{"wrong aad", m, []byte("3f2a/app/prod/dc"), ct, wd},
		{"empty aad", m, nil, ct, wd},
		{"wrong key material", m2, aad, ct, wd},
		{"dek from another secret", m, aad, ct, otherWD},
		{"value from another secret", m, aad, otherCT, wd},
		{"value and dek swapped", m, aad, wd, ct},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Open(tc.material, tc.aad, tc.ct, tc.wd)
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("err = %v, want ErrDecrypt", err)
			}
			if got != nil {
				t.Fatal("plaintext returned alongside an error")
			}
		})
	}
	// Sanity: the untampered inputs still open.
	if got, err := Open(m, aad, ct, wd); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("untampered open: %q, %v", got, err)
	}
}

func TestBadMaterialLength(t *testing.T) {
	m := mustMaterial(t)
	ct, wd, err := Seal(m, nil, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	short := m[:16] // AES-128 size: must be refused, not silently accepted
	tests := []struct {
		name string
		call func() error
	}{
		{"seal", func() error { _, _, err := Seal(short, nil, []byte("x")); return err }},
		{"seal nil", func() error { _, _, err := Seal(nil, nil, []byte("x")); return err }},
		{"open", func() error { _, err := Open(short, nil, ct, wd); return err }},
		{"rewrap old", func() error { _, err := RewrapDEK(short, m, nil, wd); return err }},
		{"rewrap new", func() error { _, err := RewrapDEK(m, short, nil, wd); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil || !strings.Contains(err.Error(), "16 bytes, want 32") && !strings.Contains(err.Error(), "0 bytes, want 32") {
				t.Fatalf("err = %v, want a length error", err)
			}
		})
	}
}

func TestRewrapDEK(t *testing.T) {
	oldM, newM, otherM := mustMaterial(t), mustMaterial(t), mustMaterial(t)
	aad := []byte("uid/app/prod/api-key")
	pt := []byte("sk_live_123")
	ct, wd, err := Seal(oldM, aad, pt)
	if err != nil {
		t.Fatal(err)
	}
	ctBefore := bytes.Clone(ct)
	nwd, err := RewrapDEK(oldM, newM, aad, wd)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ct, ctBefore) {
		t.Fatal("rewrap changed the value ciphertext")
	}
	if bytes.Equal(nwd, wd) || len(nwd) != len(wd) {
		t.Fatal("rewrapped DEK is identical or a different size")
	}

	tests := []struct {
		name     string
		material []byte
		aad      []byte
		wd       []byte
		ok       bool
	}{
		{"new material opens rewrapped", newM, aad, nwd, true},
		{"old material can't open rewrapped", oldM, aad, nwd, false},
		{"old material still opens original", oldM, aad, wd, true},
		{"rewrapped keeps aad binding", newM, []byte("uid/app/prod/other"), nwd, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Open(tc.material, tc.aad, ct, tc.wd)
			if tc.ok && (err != nil || !bytes.Equal(got, pt)) {
				t.Fatalf("got %q, %v", got, err)
			}
			if !tc.ok && !errors.Is(err, ErrDecrypt) {
				t.Fatalf("err = %v, want ErrDecrypt", err)
			}
		})
	}

	failures := []struct {
		name string
		old  []byte
		aad  []byte
		wd   []byte
	}{
		{"wrong old material", otherM, aad, wd},
		{"wrong aad", oldM, []byte("uid/else"), wd},
		{"tampered dek", oldM, aad, flip(wd, 30)},
		{"empty dek", oldM, aad, nil},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := RewrapDEK(tc.old, newM, tc.aad, tc.wd); !errors.Is(err, ErrDecrypt) || got != nil {
				t.Fatalf("err = %v, want ErrDecrypt", err)
			}
		})
	}
}

func TestMaterialCache(t *testing.T) {
	root := mustRoot(t, seqKey(0))
	m1, m2 := mustMaterial(t), mustMaterial(t)
	w1, _ := root.WrapKeyMaterial("default", 1, m1)
	w2, _ := root.WrapKeyMaterial("default", 2, m2)
	wp, _ := root.WrapKeyMaterial("payments", 1, m2)
	c := NewMaterialCache(root)

	if c.Root() != root {
		t.Fatal("Root() is not the root given")
	}
	steps := []struct {
		name    string
		key     string
		version uint32
		wrapped []byte
		want    []byte // nil: want ErrDecrypt
		wantLen int    // cache entries afterwards
	}{
		{"miss default/1", "default", 1, w1, m1, 1},
		{"hit default/1", "default", 1, w1, m1, 1},
		{"miss default/2", "default", 2, w2, m2, 2},
		{"miss payments/1", "payments", 1, wp, m2, 3},
		{"hit payments/1", "payments", 1, wp, m2, 3},
		{"tampered blob is not served from cache", "default", 1, flip(w1, 30), nil, 3},
		{"blob bound to another version", "default", 2, w1, nil, 3},
		{"still hit after failures", "default", 1, w1, m1, 3},
	}
	for _, s := range steps {
		got, err := c.Get(s.key, s.version, s.wrapped)
		if s.want == nil {
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("%s: err = %v, want ErrDecrypt", s.name, err)
			}
		} else if err != nil || !bytes.Equal(got, s.want) {
			t.Fatalf("%s: got %d bytes, %v", s.name, len(got), err)
		}
		if c.Len() != s.wantLen {
			t.Fatalf("%s: Len = %d, want %d", s.name, c.Len(), s.wantLen)
		}
	}

	// A hit is served from the cache: with the cached entry's material
	// replaced, Get returns the replacement without unwrapping.
	c.mu.Lock()
	e := c.st.entries[cacheKey{"default", 1}]
	saved := bytes.Clone(e.material)
	copy(e.material, bytes.Repeat([]byte{0xAA}, KeySize))
	c.mu.Unlock()
	if got, _ := c.Get("default", 1, w1); !bytes.Equal(got, bytes.Repeat([]byte{0xAA}, KeySize)) {
		t.Fatal("second Get did not come from the cache")
	}
	c.mu.Lock()
	copy(e.material, saved)
	c.mu.Unlock()

	// Callers clearing their copy must not corrupt the cache.
	got, _ := c.Get("default", 1, w1)
	clear(got)
	if got, _ := c.Get("default", 1, w1); !bytes.Equal(got, m1) {
		t.Fatal("clearing a returned slice corrupted the cache")
	}

	// The cache keeps its own copy of the blob: a caller reusing its slice
	// neither poisons the entry nor turns a different blob into a hit.
	buf := bytes.Clone(w1)
	if _, err := c.Get("default", 1, buf); err != nil {
		t.Fatal(err)
	}
	buf[30] ^= 1
	if _, err := c.Get("default", 1, buf); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("modified caller buffer: err = %v, want ErrDecrypt", err)
	}
	if got, err := c.Get("default", 1, w1); err != nil || !bytes.Equal(got, m1) {
		t.Fatalf("after modified caller buffer: %v", err)
	}

	// A re-wrapped blob for the same version replaces the entry.
	w1b, _ := root.WrapKeyMaterial("default", 1, m1)
	if got, err := c.Get("default", 1, w1b); err != nil || !bytes.Equal(got, m1) {
		t.Fatalf("rewrapped blob: %v", err)
	}
	if c.Len() != 3 {
		t.Fatalf("Len after rewrap = %d, want 3 (one entry per key version)", c.Len())
	}

	// Forget drops only the named key.
	c.Forget("default")
	if c.Len() != 1 {
		t.Fatalf("Len after Forget = %d, want 1", c.Len())
	}
	if got, err := c.Get("payments", 1, wp); err != nil || !bytes.Equal(got, m2) {
		t.Fatalf("payments after Forget(default): %v", err)
	}

	// SetRoot clears: with a root that can't unwrap, even a previously cached
	// version fails.
	other := mustRoot(t, seqKey(99))
	c.SetRoot(other)
	if c.Len() != 0 {
		t.Fatalf("Len after SetRoot = %d", c.Len())
	}
	if c.Root() != other {
		t.Fatal("Root() not updated")
	}
	if _, err := c.Get("payments", 1, wp); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("cached entry survived SetRoot: %v", err)
	}
	// A rotated root that still holds the old key reads old blobs again.
	c.SetRoot(mustRoot(t, seqKey(0), seqKey(99)))
	if got, err := c.Get("payments", 1, wp); err != nil || !bytes.Equal(got, m2) {
		t.Fatalf("after SetRoot(rotated): %v", err)
	}

	c.SetRoot(nil)
	if _, err := c.Get("payments", 1, wp); !errors.Is(err, ErrNoRootKey) {
		t.Fatalf("nil root: err = %v, want ErrNoRootKey", err)
	}
}

func TestMaterialCacheKEK(t *testing.T) {
	root := mustRoot(t, seqKey(0))
	m := mustMaterial(t)
	w, _ := root.WrapKeyMaterial("default", 1, m)
	c := NewMaterialCache(root)
	aad := []byte("uid/app/db")

	kek, err := c.KEK("default", 1, w)
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 1 {
		t.Fatalf("Len = %d after a KEK miss, want 1", c.Len())
	}
	// A cached KEK is the key version's: what it seals opens with the
	// material, and the other way round.
	ct, wd, err := kek.Seal(aad, []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Open(m, aad, ct, wd); err != nil || string(got) != "v1" {
		t.Fatalf("Open(material) of a KEK seal: %q, %v", got, err)
	}
	ct2, wd2, _ := Seal(m, aad, []byte("v2"))
	if got, err := kek.Open(aad, ct2, wd2); err != nil || string(got) != "v2" {
		t.Fatalf("KEK.Open of a material seal: %q, %v", got, err)
	}
	if _, err := kek.Open([]byte("other"), ct2, wd2); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("wrong aad: err = %v, want ErrDecrypt", err)
	}

	// A hit returns the cached KEK; a Get miss also fills it.
	if again, _ := c.KEK("default", 1, w); again != kek {
		t.Fatal("second KEK call built a new KEK")
	}
	if _, err := c.KEK("default", 1, flip(w, 30)); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("tampered blob: err = %v, want ErrDecrypt", err)
	}
	c.Forget("default")
	fresh, err := c.KEK("default", 1, w)
	if err != nil || fresh == kek {
		t.Fatalf("after Forget: same KEK %v, err %v", fresh == kek, err)
	}
	c.SetRoot(mustRoot(t, seqKey(99)))
	if _, err := c.KEK("default", 1, w); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("KEK survived SetRoot: err = %v", err)
	}
	c.SetRoot(nil)
	if _, err := c.KEK("default", 1, w); !errors.Is(err, ErrNoRootKey) {
		t.Fatalf("nil root: err = %v, want ErrNoRootKey", err)
	}
	// An evicted KEK still works for a caller holding it.
	if got, err := kek.Open(aad, ct, wd); err != nil || string(got) != "v1" {
		t.Fatalf("evicted KEK: %q, %v", got, err)
	}
	if _, err := NewKEK(m[:31]); err == nil {
		t.Fatal("NewKEK accepted 31 bytes")
	}
}

func TestMaterialCacheConcurrent(t *testing.T) {
	root := mustRoot(t, seqKey(0))
	const versions = 8
	mats := make([][]byte, versions)
	blobs := make([][]byte, versions)
	for i := range mats {
		mats[i] = mustMaterial(t)
		blobs[i], _ = root.WrapKeyMaterial("default", uint32(i+1), mats[i])
	}
	c := NewMaterialCache(root)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				v := (g + i) % versions
				got, err := c.Get("default", uint32(v+1), blobs[v])
				if err != nil || !bytes.Equal(got, mats[v]) {
					errs <- fmt.Errorf("version %d: %v", v+1, err)
					return
				}
				clear(got)
				// KEKs are shared between goroutines: the race detector
				// checks that Seal and Open keep them read-only.
				kek, err := c.KEK("default", uint32(v+1), blobs[v])
				if err != nil {
					errs <- fmt.Errorf("KEK version %d: %v", v+1, err)
					return
				}
				ct, wd, err := kek.Seal([]byte("aad"), []byte("value"))
				if err == nil {
					_, err = Open(mats[v], []byte("aad"), ct, wd)
				}
				if err != nil {
					errs <- fmt.Errorf("KEK version %d round trip: %v", v+1, err)
					return
				}
				switch {
				case g == 0 && i%50 == 0:
					c.SetRoot(root)
				case g == 1 && i%70 == 0:
					c.Forget("default")
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestNoKeyMaterialInErrorsOrOutput triggers every error path it can while key
// bytes are in play and checks no key, in any common encoding, appears in an
// error message or in the printed form of RootKeys and MaterialCache.
func TestNoKeyMaterialInErrorsOrOutput(t *testing.T) {
	k1, k2 := seqKey(0x21), seqKey(0x41) // printable bytes, so a raw leak shows as text
	root := mustRoot(t, k1, k2)
	m := []byte("MATERIALMATERIALMATERIALMATERIAL") // 32 printable bytes
	secrets := [][]byte{k1, k2, m}

	w, err := root.WrapKeyMaterial("default", 1, m)
	if err != nil {
		t.Fatal(err)
	}
	ct, wd, err := Seal(m, []byte("aad"), []byte("the-secret-value"))
	if err != nil {
		t.Fatal(err)
	}
	cache := NewMaterialCache(root)
	if _, err := cache.Get("default", 1, w); err != nil {
		t.Fatal(err)
	}
	kek, err := cache.KEK("default", 1, w) // its key schedule starts with m
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	badFile := filepath.Join(dir, "bad.key")
	os.WriteFile(badFile, []byte(b64(k1)+"\n"+b64(k2)[:40]+"\n"), 0o600)
	badFile2 := filepath.Join(dir, "bad2.key")
	os.WriteFile(badFile2, []byte(b64(k1)+"\n"+b64(k2)+"AAAA\n"), 0o600)

	var errs []error
	add := func(err error) {
		if err == nil {
			t.Errorf("expected an error (case %d)", len(errs))
			return
		}
		errs = append(errs, err)
	}
	_, err = ParseRootKeys([]byte(b64(k1) + "\n" + b64(k2)[:40] + "\n"))
	add(err)
	_, err = ParseRootKeys([]byte(b64(k1) + "\n" + b64(k2) + "AAAA\n"))
	add(err)
	_, err = ParseRootKeys([]byte(b64(k1) + "!\n"))
	add(err)
	_, err = ParseRootKeys([]byte(hex.EncodeToString(k1) + "\n"))
	add(err)
	_, err = ParseRootKeys([]byte(string(k1) + "\n"))
	add(err)
	_, err = LoadRootKeyFile(badFile)
	add(err)
	_, err = LoadRootKeyFile(badFile2)
	add(err)
	_, err = NewRootKeys(k1, k2[:31])
	add(err)
	_, err = root.UnwrapKeyMaterial("default", 2, w)
	add(err)
	_, err = root.UnwrapKeyMaterial("default", 1, flip(w, 40))
	add(err)
	_, err = root.WrapKeyMaterial("default", 1, m[:31])
	add(err)
	_, err = cache.Get("default", 1, flip(w, 40))
	add(err)
	_, err = Open(m, []byte("wrong"), ct, wd)
	add(err)
	_, err = Open(k1, []byte("aad"), ct, wd)
	add(err)
	_, err = Open(m, []byte("aad"), flip(ct, 20), wd)
	add(err)
	_, err = Open(m[:31], []byte("aad"), ct, wd)
	add(err)
	_, _, err = Seal(k1[:31], nil, m)
	add(err)
	_, err = RewrapDEK(k1, k2, []byte("aad"), wd)
	add(err)

	var texts []string
	for _, e := range errs {
		texts = append(texts, e.Error(), fmt.Sprintf("%+v", e), fmt.Sprintf("%#v", e))
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		texts = append(texts, fmt.Sprintf(verb, root), fmt.Sprintf(verb, cache), fmt.Sprintf(verb, *root), fmt.Sprintf(verb, kek), fmt.Sprintf(verb, *kek))
	}
	texts = append(texts, fmt.Sprintf("%+v", struct{ K *KEK }{kek}), fmt.Sprintf("%+v", struct{ K KEK }{*kek}))
	texts = append(texts, fmt.Sprintf("%+v", cache.st.entries), fmt.Sprintf("%#v", cache.st.entries), fmt.Sprintf("%+v", struct{ c *MaterialCache }{cache}), fmt.Sprintf("%+v", root.list()), fmt.Sprintf("%s", root.list()), fmt.Sprintf("%x", root.list()), fmt.Sprintf("%+v", *root.set), fmt.Sprintf("%+v", struct{ r RootKeys }{*root}))
	texts = append(texts, root.String(), root.GoString(), fmt.Sprint([]*RootKeys{root}), fmt.Sprintf("%+v", struct{ R *RootKeys }{root}))

	for _, s := range secrets {
		forms := map[string]string{
			"raw":          string(s),
			"base64":       b64(s),
			"base64 raw":   base64.RawStdEncoding.EncodeToString(s),
			"base64 url":   base64.URLEncoding.EncodeToString(s),
			"base64 head":  b64(s)[:16],
			"hex":          hex.EncodeToString(s),
			"hex upper":    strings.ToUpper(hex.EncodeToString(s)),
			"hex head":     hex.EncodeToString(s[:8]),
			"decimal list": strings.Trim(fmt.Sprint(s[:8]), "[]"),
			"raw head":     string(s[:12]),
		}
		for _, txt := range texts {
			for form, f := range forms {
				if strings.Contains(txt, f) {
					t.Errorf("%s form of a key appears in %q", form, txt)
				}
			}
		}
	}
	// The redacted form is still useful.
	if s := fmt.Sprint(root); !strings.Contains(s, root.Fingerprint()) || !strings.Contains(s, "count: 2") {
		t.Errorf("redacted form %q lacks count or fingerprint", s)
	}
}

func BenchmarkSeal256(b *testing.B) {
	m := mustMaterial(b)
	aad := []byte("0123456789abcdef0123456789abcdef/app/prod/svc/name")
	pt := make([]byte, 256)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Seal(m, aad, pt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen256(b *testing.B) {
	m := mustMaterial(b)
	aad := []byte("0123456789abcdef0123456789abcdef/app/prod/svc/name")
	pt := make([]byte, 256)
	ct, wd, err := Seal(m, aad, pt)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Open(m, aad, ct, wd); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCachedOpen256 is a read's decryption as the API does it: the
// KEK from the cache, then Open (compare BenchmarkOpen256, which expands
// the key material every time).
func BenchmarkCachedOpen256(b *testing.B) {
	root := mustRoot(b, seqKey(0))
	m := mustMaterial(b)
	w, err := root.WrapKeyMaterial("default", 1, m)
	if err != nil {
		b.Fatal(err)
	}
	aad := []byte("0123456789abcdef0123456789abcdef/app/prod/svc/name")
	ct, wd, err := Seal(m, aad, make([]byte, 256))
	if err != nil {
		b.Fatal(err)
	}
	c := NewMaterialCache(root)
	b.SetBytes(256)
	b.ReportAllocs()
	for b.Loop() {
		kek, err := c.KEK("default", 1, w)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := kek.Open(aad, ct, wd); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCacheGet(b *testing.B) {
	root := mustRoot(b, seqKey(0))
	w, err := root.WrapKeyMaterial("default", 1, mustMaterial(b))
	if err != nil {
		b.Fatal(err)
	}
	c := NewMaterialCache(root)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Get("default", 1, w); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkUnwrapKeyMaterial(b *testing.B) {
	root := mustRoot(b, seqKey(0))
	w, err := root.WrapKeyMaterial("default", 1, mustMaterial(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := root.UnwrapKeyMaterial("default", 1, w); err != nil {
			b.Fatal(err)
		}
	}
}

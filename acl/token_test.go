package acl

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

func TestNewToken(t *testing.T) {
	seen := make(map[string]bool)
	for range 100 {
		tok, acc, err := NewToken()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(tok, "cfr_") || len(tok) != 47 {
			t.Fatalf("token %q: want cfr_ + 43 chars", tok)
		}
		raw, err := base64.RawURLEncoding.DecodeString(tok[4:])
		if err != nil || len(raw) != 32 {
			t.Fatalf("token body %q: %d bytes, err %v; want 32 bytes of base64url", tok[4:], len(raw), err)
		}
		if !LooksLikeToken(tok) {
			t.Fatalf("LooksLikeToken(%q) = false for a fresh token", tok)
		}
		if b, err := hex.DecodeString(acc); err != nil || len(b) != 16 || len(acc) != 32 || strings.ToLower(acc) != acc {
			t.Fatalf("accessor %q: want 32 lowercase hex chars", acc)
		}
		if LooksLikeToken(acc) {
			t.Fatalf("accessor %q looks like a token", acc)
		}
		if seen[tok] || seen[acc] {
			t.Fatal("NewToken repeated a value")
		}
		seen[tok], seen[acc] = true, true
	}
}

func TestHashToken(t *testing.T) {
	// SHA-256 test vector of FIPS 180-2.
	if got, want := HashToken("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("HashToken(abc) = %s, want %s", got, want)
	}
	tok, _, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	h := HashToken(tok)
	if len(h) != 64 || strings.Contains(h, tok[4:]) {
		t.Errorf("HashToken(%q) = %q: want 64 hex chars that don't contain the token", tok, h)
	}
	if HashToken(tok) != h {
		t.Error("HashToken is not deterministic")
	}
	if HashToken(tok+"x") == h {
		t.Error("different tokens hash the same")
	}
}

func TestLooksLikeToken(t *testing.T) {
	body := strings.Repeat("aZ9-_", 8) + "abc" // 43 chars
	tests := []struct {
		in   string
		want bool
	}{
		{"cfr_" + body, true},
		{"cfr_" + strings.Repeat("A", 43), true},
		{"", false},
		{"cfr_", false},
		{"cfr_" + body[:42], false},
		{"cfr_" + body + "A", false},
		{"CFR_" + body, false},
		{"cfx_" + body, false},
		{"cfr_" + body[:42] + "+", false}, // standard alphabet, not URL
		{"cfr_" + body[:42] + "/", false},
		{"cfr_" + body[:42] + "=", false},
		{"cfr_" + body[:42] + " ", false},
		{"Bearer cfr_" + body[:36], false},
		{strings.Repeat("0", 32), false}, // an accessor
	}
	for _, tt := range tests {
		if got := LooksLikeToken(tt.in); got != tt.want {
			t.Errorf("LooksLikeToken(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

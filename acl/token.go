package acl

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// TokenPrefix starts every token, so a leaked token is recognisable by
// secret scanners and can't be confused with an accessor.
const TokenPrefix = "cfr_"

const (
	tokenRandomBytes    = 32
	accessorRandomBytes = 16
	// tokenLen is len(TokenPrefix) + unpadded base64 of 32 bytes (43 chars).
	tokenLen = len(TokenPrefix) + (tokenRandomBytes*8+5)/6
)

// NewToken returns a fresh bearer token ("cfr_" + base64url of 32 random
// bytes) and its accessor (32 hex chars from 16 random bytes). The accessor is
// independent of the token: it is public (audit, revocation), so it must not
// let anyone derive the token.
func NewToken() (token, accessor string, err error) {
	var buf [tokenRandomBytes + accessorRandomBytes]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return "", "", fmt.Errorf("new token: %w", err)
	}
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(buf[:tokenRandomBytes])
	accessor = hex.EncodeToString(buf[tokenRandomBytes:])
	return token, accessor, nil
}

// HashToken returns the hex SHA-256 of token. Only the hash is stored: a
// token has 256 bits of entropy, so an unsalted fast hash is enough to make a
// leaked state or snapshot useless for authentication.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// LooksLikeToken reports whether s has the shape of a token ("cfr_" followed
// by 43 base64url characters). It lets the auth middleware reject garbage
// before hashing and looking it up, and lets callers spot a token pasted
// where it doesn't belong.
func LooksLikeToken(s string) bool {
	if len(s) != tokenLen || s[:len(TokenPrefix)] != TokenPrefix {
		return false
	}
	for i := len(TokenPrefix); i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

package api

import (
	"crypto/rand"
	"encoding/hex"
	"math/big"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
)

const (
	alphanumeric = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	symbols      = "!#$%&()*+,-./:;<=>?@[]^_{|}~"
)

// generate returns length random bytes or characters from crypto/rand, on
// the node that serves the request, before anything enters the log.
func generate(length int, charset string) ([]byte, error) {
	switch charset {
	case apitypes.CharsetBytes:
		b := make([]byte, length)
		if _, err := rand.Read(b); err != nil {
			return nil, errs.New(errs.Internal, "random source failed")
		}
		return b, nil
	case apitypes.CharsetHex:
		b := make([]byte, (length+1)/2)
		if _, err := rand.Read(b); err != nil {
			return nil, errs.New(errs.Internal, "random source failed")
		}
		out := make([]byte, hex.EncodedLen(len(b)))
		hex.Encode(out, b)
		clear(b)
		return out[:length], nil
	case apitypes.CharsetAlphanumeric:
		return pick(length, alphanumeric, nil)
	case apitypes.CharsetPassword:
		// At least one of each class when there is room, so the result
		// passes common password rules.
		var classes []string
		if length >= 4 {
			classes = []string{"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz", "0123456789", symbols}
		}
		return pick(length, alphanumeric+symbols, classes)
	}
	return nil, invalid("charset must be one of bytes, alphanumeric, password, hex")
}

// pick draws characters uniformly (rand.Int has no modulo bias); each class
// then gets one guaranteed character at a random position.
func pick(length int, alphabet string, classes []string) ([]byte, error) {
	out := make([]byte, length)
	for i := range out {
		c, err := randomChar(alphabet)
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	perm, err := randomPerm(length)
	if err != nil {
		return nil, err
	}
	for i, class := range classes {
		c, err := randomChar(class)
		if err != nil {
			return nil, err
		}
		out[perm[i]] = c
	}
	return out, nil
}

func randomChar(alphabet string) (byte, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
	if err != nil {
		return 0, errs.New(errs.Internal, "random source failed")
	}
	return alphabet[n.Int64()], nil
}

// randomPerm is a Fisher–Yates shuffle of 0..n-1 driven by crypto/rand.
func randomPerm(n int) ([]int, error) {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		if err != nil {
			return nil, errs.New(errs.Internal, "random source failed")
		}
		p[i], p[j.Int64()] = p[j.Int64()], p[i]
	}
	return p, nil
}

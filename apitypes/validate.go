package apitypes

import (
	"fmt"
	"strings"
)

// ValidatePath checks a secret path against SPEC §1: "/" followed by 1–16
// segments of 1–128 of [A-Za-z0-9._-], not "." or "..", at most 512 bytes, no
// trailing "/". The error text names the rule that failed.
func ValidatePath(p string) error {
	if p == "" {
		return fmt.Errorf("path is required")
	}
	if len(p) > MaxPathBytes {
		return fmt.Errorf("path is %d bytes, at most %d allowed", len(p), MaxPathBytes)
	}
	if p[0] != '/' {
		return fmt.Errorf("path must start with /")
	}
	if strings.HasSuffix(p, "/") {
		return fmt.Errorf("path must not end with / (and must have at least one segment)")
	}
	segs := strings.Split(p[1:], "/")
	if len(segs) > MaxPathSegments {
		return fmt.Errorf("path has %d segments, at most %d allowed", len(segs), MaxPathSegments)
	}
	for i, s := range segs {
		if err := validateSegment(s); err != nil {
			return fmt.Errorf("path segment %d: %w", i+1, err)
		}
	}
	return nil
}

// ValidatePrefix checks a listing prefix: "/" or a folder ending in "/".
func ValidatePrefix(p string) error {
	if p == "/" {
		return nil
	}
	if p == "" {
		return fmt.Errorf("prefix is required (\"/\" lists the root)")
	}
	if !strings.HasSuffix(p, "/") {
		return fmt.Errorf("prefix must be \"/\" or a folder ending in \"/\"")
	}
	if err := ValidatePath(p[:len(p)-1]); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	return nil
}

func validateSegment(s string) error {
	if s == "" {
		return fmt.Errorf("empty segment (double /)")
	}
	if len(s) > MaxSegmentBytes {
		return fmt.Errorf("segment is %d bytes, at most %d allowed", len(s), MaxSegmentBytes)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("segment %q is not allowed", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("character %q at offset %d is not allowed (use A-Z a-z 0-9 . _ -)", c, i)
		}
	}
	return nil
}

// ValidateKeyName checks a KMS key name: 1–64 of [a-z0-9_-].
func ValidateKeyName(n string) error {
	if n == "" || len(n) > 64 {
		return fmt.Errorf("key name must be 1-64 characters")
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("key name: character %q is not allowed (use a-z 0-9 _ -)", c)
		}
	}
	return nil
}

// ValidateLabels checks label count and sizes.
func ValidateLabels(l map[string]string) error {
	if len(l) > MaxLabels {
		return fmt.Errorf("%d labels, at most %d allowed", len(l), MaxLabels)
	}
	for k, v := range l {
		if k == "" || len(k) > MaxLabelKeyBytes {
			return fmt.Errorf("label key must be 1-%d bytes", MaxLabelKeyBytes)
		}
		if len(v) > MaxLabelValBytes {
			return fmt.Errorf("label %q: value is %d bytes, at most %d allowed", k, len(v), MaxLabelValBytes)
		}
	}
	return nil
}

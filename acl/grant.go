package acl

import (
	"fmt"
	"net/netip"
)

// Token limits of createToken (SPEC §6).
const (
	MaxTokenNameLen = 128
)

// ValidateTokenPolicies checks the policy names a new token is to carry:
// 1–MaxTokenPolicies well-formed names, none twice. It says nothing of
// whether they exist: that depends on state, and is checked where the token
// is created (at apply), after the caller is authorized.
func ValidateTokenPolicies(names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("policies is required (at least one policy name)")
	}
	if len(names) > MaxTokenPolicies {
		return fmt.Errorf("policies has %d entries, at most %d allowed", len(names), MaxTokenPolicies)
	}
	for i, n := range names {
		if err := ValidatePolicyName(n); err != nil {
			return fmt.Errorf("policies[%d]: %w", i, err)
		}
		if holds(names[:i], n) {
			return fmt.Errorf("policies[%d]: %q is listed twice", i, n)
		}
	}
	return nil
}

// Grant is a token a caller asks to create, as CheckGrant sees it.
type Grant struct {
	Policies    []string
	ExpiresAt   int64 // unix nanoseconds; 0 = never
	SourceCIDRs []string
}

// CheckGrant enforces that a token holder can't widen its rights by minting
// a token (SPEC §6): the new token may carry only policies the caller holds
// (a caller with admin may grant any), can't outlive the caller (a caller
// with an expiry can't mint one without), and may be used only from inside
// the caller's source_cidrs (a caller with source_cidrs can't mint one
// without). It is pure: the API calls it with the caller's token at its
// state, Apply again with the token at the leader's state. The error is
// meant as PermissionDenied; it names nothing the caller doesn't hold.
func CheckGrant(caller *TokenInfo, g Grant) error {
	if caller == nil {
		return fmt.Errorf("no valid token")
	}
	if !HasAdmin(caller.Policies) {
		for i, p := range g.Policies {
			if !holds(caller.Policies, p) {
				return fmt.Errorf("policies[%d]: a token can only grant policies it holds itself (or any, with admin)", i)
			}
		}
	}
	if caller.ExpiresAt != 0 && (g.ExpiresAt == 0 || g.ExpiresAt > caller.ExpiresAt) {
		return fmt.Errorf("ttl: the new token can't outlive the calling token, which expires in less time")
	}
	if len(caller.SourceCIDRs) > 0 {
		if len(g.SourceCIDRs) == 0 {
			return fmt.Errorf("source_cidrs: the calling token is limited to source_cidrs, so the new token must be too (within them)")
		}
		for i, c := range g.SourceCIDRs {
			if !prefixWithin(c, caller.SourceCIDRs) {
				return fmt.Errorf("source_cidrs[%d]: %q is not inside the calling token's source_cidrs", i, c)
			}
		}
	}
	return nil
}

// prefixWithin reports whether the network c lies wholly inside one of
// outer. Entries that don't parse never contain or are contained.
func prefixWithin(c string, outer []string) bool {
	p, err := parseCIDR(c)
	if err != nil {
		return false
	}
	for _, o := range outer {
		q, err := parseCIDR(o)
		if err != nil {
			continue
		}
		if sameFamily(p.Addr(), q.Addr()) && q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func sameFamily(a, b netip.Addr) bool { return a.Is4() == b.Is4() }

package acl

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/cofferhq/coffer/apitypes"
)

// TokenInfo is what authorization needs of a token, as the state being
// decided on holds it.
type TokenInfo struct {
	Policies    []string
	ExpiresAt   int64 // unix nanoseconds; 0 = never
	SourceCIDRs []string
}

// Expired reports whether the token has expired at now (unix nanoseconds).
func (t *TokenInfo) Expired(now int64) bool { return t.ExpiresAt != 0 && now >= t.ExpiresAt }

// AuthzRequest is one authorization question: may this token do Action on
// Path, from Source, at Now? Token and Policy must come from the same state
// (the one the request is answered from, or the one a command is applied to).
type AuthzRequest struct {
	Token *TokenInfo // nil: no (valid) token
	// Policy resolves a policy name in that state (built-in or custom); a
	// name that doesn't resolve grants nothing.
	Policy func(name string) (*Policy, bool)
	Action string
	Path   string // "" for actions without a path
	Source netip.Addr
	// Now is the request's time: the receiving node's clock at the API, the
	// leader's timestamp carried by the command at apply. Authorize never
	// reads a clock, so Apply stays deterministic.
	Now time.Time
	// AccessPolicy is the access policy of the secret at Path, nil if none.
	AccessPolicy *apitypes.AccessPolicy
}

// AuthzDecision is Authorize's answer. When not allowed, Unauthenticated
// says whether the token itself is unusable (expired, wrong source: 401)
// rather than lacking the right (403); Reason is human text that never
// holds a token or a value.
type AuthzDecision struct {
	Allowed         bool
	Unauthenticated bool
	Reason          string
}

// Authorize is the one authorization decision of Coffer: the API calls it
// before acting and Apply calls it again on the leader's state with the
// leader's time. In order: the token must be present and not expired, the
// source inside the token's source_cidrs, admin-only actions need the admin
// policy by name, the caller's policies must allow the action on the path
// (deny wins), and the secret's access policy must hold for actions it
// restricts. Self actions (whoami) need only a valid token.
func Authorize(req AuthzRequest) AuthzDecision {
	tok := req.Token
	if d := CheckToken(tok, req.Source, req.Now); !d.Allowed {
		return d
	}
	act, known := byName[req.Action]
	if known && act.Self {
		return AuthzDecision{Allowed: true, Reason: "any valid token may call " + req.Action}
	}
	if len(tok.Policies) > MaxTokenPolicies {
		// Only state from before the limit can hold such a token: refuse
		// rather than pay for evaluating it.
		return AuthzDecision{Reason: fmt.Sprintf("token names %d policies, at most %d allowed", len(tok.Policies), MaxTokenPolicies)}
	}
	if known && act.Admin && !holds(tok.Policies, PolicyAdmin) {
		return AuthzDecision{Reason: req.Action + " needs the admin policy"}
	}
	// Resolved into a stack buffer: no allocation on the hot path. A name
	// that doesn't resolve grants nothing (a deleted policy).
	var buf [MaxTokenPolicies]*Policy
	pols := buf[:0]
	if req.Policy != nil {
		for _, n := range tok.Policies {
			if p, ok := req.Policy(n); ok {
				pols = append(pols, p)
			}
		}
	}
	d := evaluate(pols, Request{Action: req.Action, Path: req.Path, Source: req.Source, Time: req.Now})
	if !d.Allowed {
		return AuthzDecision{Reason: d.Reason}
	}
	if req.AccessPolicy != nil && (!known || act.AccessPolicy) {
		if ok, why := CheckAccessPolicy(req.AccessPolicy, req.Source, req.Now); !ok {
			return AuthzDecision{Reason: why}
		}
	}
	return AuthzDecision{Allowed: true, Reason: d.Reason}
}

// CheckToken is the first step of Authorize, alone: is the token usable at
// now from source (present, not expired, source inside its source_cidrs)?
// Authentication calls it before any action runs.
func CheckToken(tok *TokenInfo, source netip.Addr, now time.Time) AuthzDecision {
	if tok == nil {
		return AuthzDecision{Unauthenticated: true, Reason: "invalid or revoked token"}
	}
	if tok.Expired(now.UnixNano()) {
		return AuthzDecision{Unauthenticated: true, Reason: "token has expired"}
	}
	if len(tok.SourceCIDRs) > 0 && !InCIDRs(tok.SourceCIDRs, source) {
		return AuthzDecision{Unauthenticated: true, Reason: "token may not be used from " + describeSource(source)}
	}
	return AuthzDecision{Allowed: true}
}

// holds reports whether names contains name.
func holds(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// HasAdmin reports whether a token's policies include admin.
func HasAdmin(policies []string) bool { return holds(policies, PolicyAdmin) }

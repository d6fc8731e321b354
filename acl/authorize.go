package acl

import (
	"net/netip"
	"strconv"
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
	// Policies are the token's policies as that state holds them (see
	// ResolvePolicies); a name that didn't resolve grants nothing.
	Policies []*Policy
	// Policy, if Policies is nil, resolves the token's policy names instead
	// (convenient off the hot path; it allocates).
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
	if req.Policies == nil && req.Policy != nil {
		req.Policies = ResolvePolicies(nil, tok.Policies, req.Policy)
	}
	act, known := byName[req.Action]
	if known && act.Self {
		return AuthzDecision{Allowed: true, Reason: "any valid token may call " + req.Action}
	}
	if len(tok.Policies) > MaxTokenPolicies {
		// Only state from before the limit can hold such a token: refuse
		// rather than pay for evaluating it.
		return AuthzDecision{Reason: "token names " + strconv.Itoa(len(tok.Policies)) + " policies, at most " + strconv.Itoa(MaxTokenPolicies) + " allowed"}
	}
	if known && act.Admin && !holds(tok.Policies, PolicyAdmin) {
		return AuthzDecision{Reason: req.Action + " needs the admin policy"}
	}
	d := evaluate(req.Policies, Request{Action: req.Action, Path: req.Path, Source: req.Source, Time: req.Now})
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

// ResolvePolicies appends to dst the policies names resolve to with get,
// skipping names that don't resolve (a deleted policy grants nothing). With
// dst a buffer of MaxTokenPolicies it doesn't grow; a token over the limit
// resolves to nothing, as Authorize refuses it anyway. Hot paths inline this
// loop with a direct call (a func value makes its receiver escape).
func ResolvePolicies(dst []*Policy, names []string, get func(string) (*Policy, bool)) []*Policy {
	if len(names) > MaxTokenPolicies {
		return dst
	}
	for _, n := range names {
		if p, ok := get(n); ok && p != nil {
			dst = append(dst, p)
		}
	}
	return dst
}

// HasAdmin reports whether a token's policies include admin.
func HasAdmin(policies []string) bool { return holds(policies, PolicyAdmin) }

package fsm

import (
	"net/netip"

	"github.com/cofferhq/coffer/acl"
	"github.com/cofferhq/coffer/errs"
)

// PutPolicy creates or replaces a custom policy.
type PutPolicy struct {
	Policy acl.Policy `msgpack:"p"`
}

// DeletePolicy removes a custom policy.
type DeletePolicy struct {
	Name string `msgpack:"n"`
}

// builtinPolicies is built once: evaluation only reads policies, and
// BuiltinPolicies makes fresh copies on every call.
var builtinPolicies = acl.BuiltinPolicies()

// Policy returns a policy by name: built-in or custom.
func (s *State) Policy(name string) (*acl.Policy, bool) {
	if p, ok := builtinPolicies[name]; ok {
		return p, true
	}
	return s.Policies.Get([]byte(name))
}

func (t *txn) policy(name string) (*acl.Policy, bool) {
	if p, ok := builtinPolicies[name]; ok {
		return p, true
	}
	return t.pols.Get([]byte(name))
}

// AuthzInfo is what acl.Authorize needs of the token.
func (t *Token) AuthzInfo() acl.TokenInfo {
	return acl.TokenInfo{Policies: t.Policies, ExpiresAt: t.ExpiresAt, SourceCIDRs: t.SourceCIDRs}
}

// authorize re-checks, at apply time, the command's action on its path
// (see authorizeAs).
func (t *txn) authorize(env *Envelope) *errs.Error {
	if env == nil || env.Caller == "" {
		return nil
	}
	if env.Action == "" {
		// No action to check: the token must still be valid.
		if tok, ok := t.tokens.Get([]byte(env.Caller)); !ok || tok.Expired(t.now) {
			return errs.New(errs.Unauthenticated, "token was revoked or has expired")
		}
		return nil
	}
	return t.authorizeOn(env, env.Action, env.Path)
}

// authorizeAs is authorizeOn for the command's own path (generateSecret
// with create: true also needs createSecret there).
func (t *txn) authorizeAs(env *Envelope, action string) *errs.Error {
	return t.authorizeOn(env, action, env.Path)
}

// authorizeOn decides, with acl.Authorize on the state being applied and the
// leader's timestamp, whether the command's caller may do action on path:
// the same decision the API made before submitting, now on the
// authoritative state, so a token revoked or a policy changed in between
// (or a follower's older state) can't let a command through. An envelope
// with no caller is the system's own (init, key timers).
func (t *txn) authorizeOn(env *Envelope, action, path string) *errs.Error {
	if env == nil || env.Caller == "" {
		return nil
	}
	tok, ok := t.tokens.Get([]byte(env.Caller))
	if !ok {
		return errs.New(errs.Unauthenticated, "token was revoked or has expired")
	}
	src, _ := netip.ParseAddr(env.Source)
	info := tok.AuthzInfo()
	var buf [acl.MaxTokenPolicies]*acl.Policy
	pols := buf[:0]
	if len(tok.Policies) <= acl.MaxTokenPolicies {
		for _, n := range tok.Policies {
			if p, ok := t.policy(n); ok {
				pols = append(pols, p)
			}
		}
	}
	req := acl.AuthzRequest{Token: &info, Policies: pols, Action: action, Path: path, Source: src, Now: FromNanos(t.now)}
	if path != "" {
		if sec, ok := t.getSecret(path); ok {
			req.AccessPolicy = sec.AccessPolicy
		}
	}
	d := acl.Authorize(req)
	switch {
	case d.Allowed:
		return nil
	case d.Unauthenticated:
		if tok.Expired(t.now) {
			return errs.New(errs.Unauthenticated, "token was revoked or has expired")
		}
		return errs.New(errs.Unauthenticated, "%s", d.Reason)
	}
	return errs.New(errs.PermissionDenied, "%s", d.Reason)
}

// authorizeCommand checks the caller's right to the action a command
// implies when the envelope named another one: the command type, not the
// sender's label, decides what is checked for access-control commands.
func (t *txn) authorizeCommand(action string) *errs.Error {
	if t.cur == nil || t.cur.Caller == "" || t.cur.Action == action {
		return nil // the system's own command, or already checked by authorize
	}
	return t.authorizeOn(t.cur, action, "")
}

func (t *txn) putPolicy(c *PutPolicy) Result {
	if err := t.authorizeCommand("putPolicy"); err != nil {
		return Result{Err: err}
	}
	if acl.IsBuiltin(c.Policy.Name) {
		return Result{Err: errs.New(errs.FailedPrecondition, "policy %q is built in and can't be changed", c.Policy.Name)}
	}
	p := c.Policy
	p.BuiltIn = false
	// The size limits are checked again here, on every node: a policy that
	// passed an older or hostile sender must not make evaluation expensive.
	if err := acl.CheckPolicyLimits(&p); err != nil {
		return Result{Err: errs.New(errs.InvalidArgument, "%v", err)}
	}
	t.pols.Insert([]byte(p.Name), &p)
	return Result{}
}

func (t *txn) deletePolicy(c *DeletePolicy) Result {
	if err := t.authorizeCommand("deletePolicy"); err != nil {
		return Result{Err: err}
	}
	if acl.IsBuiltin(c.Name) {
		return Result{Err: errs.New(errs.FailedPrecondition, "policy %q is built in and can't be deleted", c.Name)}
	}
	if _, ok := t.pols.Delete([]byte(c.Name)); !ok {
		return Result{Err: errs.New(errs.NotFound, "policy %q not found", c.Name)}
	}
	return Result{}
}

package fsm

import (
	"net/netip"

	"github.com/cofferhq/coffer/acl"
	"github.com/cofferhq/coffer/errs"
)

// PutPolicy creates or replaces a custom policy (validated by the sender).
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

// ResolvePolicies returns the policies a token names that exist; a deleted
// policy simply grants nothing.
func ResolvePolicies(get func(string) (*acl.Policy, bool), names []string) []*acl.Policy {
	out := make([]*acl.Policy, 0, len(names))
	for _, n := range names {
		if p, ok := get(n); ok {
			out = append(out, p)
		}
	}
	return out
}

func (t *txn) policy(name string) (*acl.Policy, bool) {
	if p, ok := builtinPolicies[name]; ok {
		return p, true
	}
	return t.pols.Get([]byte(name))
}

// RequiresAdmin reports whether an action is a cluster action, which needs
// the admin policy by name whatever other policies say.
func RequiresAdmin(action string) bool { return len(action) > 4 && action[:4] == "sys." }

// IgnoresAccessPolicy lists the actions a secret's access policy does not
// restrict (metadata listing and description).
func IgnoresAccessPolicy(action string) bool {
	return action == "describeSecret" || action == "listSecrets"
}

// authorize re-checks, at apply time, that the caller's token is still valid
// and that its policies (and the secret's access policy) still allow the
// command, using the leader's timestamp.
func (t *txn) authorize(env *Envelope) *errs.Error {
	return t.authorizeAs(env, env.Action)
}

// authorizeAs is authorize for an action the command implies besides its
// own (generateSecret with create: true also needs createSecret).
func (t *txn) authorizeAs(env *Envelope, action string) *errs.Error {
	if env == nil || env.Caller == "" {
		return nil
	}
	tok, ok := t.tokens.Get([]byte(env.Caller))
	if !ok || tok.Expired(t.now) {
		return errs.New(errs.Unauthenticated, "token was revoked or has expired")
	}
	if action == "" {
		return nil
	}
	src, _ := netip.ParseAddr(env.Source)
	if len(tok.SourceCIDRs) > 0 && !acl.InCIDRs(tok.SourceCIDRs, src) {
		return errs.New(errs.Unauthenticated, "token may not be used from %s", env.Source)
	}
	if RequiresAdmin(action) && !hasAdmin(tok.Policies) {
		return errs.New(errs.PermissionDenied, "%s needs the admin policy", action)
	}
	now := FromNanos(t.now)
	d := acl.Evaluate(ResolvePolicies(t.policy, tok.Policies), acl.Request{Action: action, Path: env.Path, Source: src, Time: now})
	if !d.Allowed {
		return errs.New(errs.PermissionDenied, "%s", d.Reason)
	}
	if env.Path != "" && !IgnoresAccessPolicy(action) {
		if sec, ok := t.getSecret(env.Path); ok && sec.AccessPolicy != nil {
			if ok, why := acl.CheckAccessPolicy(sec.AccessPolicy, src, now); !ok {
				return errs.New(errs.PermissionDenied, "%s", why)
			}
		}
	}
	return nil
}

func hasAdmin(policies []string) bool {
	for _, p := range policies {
		if p == acl.PolicyAdmin {
			return true
		}
	}
	return false
}

func (t *txn) putPolicy(c *PutPolicy) Result {
	if acl.IsBuiltin(c.Policy.Name) {
		return Result{Err: errs.New(errs.FailedPrecondition, "policy %q is built in and can't be changed", c.Policy.Name)}
	}
	p := c.Policy
	p.BuiltIn = false
	t.pols.Insert([]byte(p.Name), &p)
	return Result{}
}

func (t *txn) deletePolicy(c *DeletePolicy) Result {
	if acl.IsBuiltin(c.Name) {
		return Result{Err: errs.New(errs.FailedPrecondition, "policy %q is built in and can't be deleted", c.Name)}
	}
	if _, ok := t.pols.Delete([]byte(c.Name)); !ok {
		return Result{Err: errs.New(errs.NotFound, "policy %q not found", c.Name)}
	}
	return Result{}
}

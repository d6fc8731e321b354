package fsm

import (
	"github.com/cofferhq/coffer/acl"
	"github.com/cofferhq/coffer/errs"
)

// AdminPolicy is the built-in policy that allows everything.
const AdminPolicy = acl.PolicyAdmin

func (t *txn) initCluster(c *InitCluster) Result {
	if t.meta.ClusterID != "" {
		return Result{Err: errs.New(errs.AlreadyExists, "cluster already has an id")}
	}
	t.meta.ClusterID = c.ClusterID
	t.meta.RootFingerprint = c.RootFingerprint
	t.keys.Insert([]byte("default"), &Key{
		Name: "default", Description: "created at cluster init", State: KeyEnabled, CreatedAt: t.now,
		Versions: []*KeyVersion{{Version: 1, Wrapped: c.DefaultKey, CreatedAt: t.now}},
	})
	return Result{}
}

func (t *txn) initRoot(c *InitRoot) Result {
	if t.meta.Initialized {
		return Result{Err: errs.New(errs.AlreadyExists, "cluster is already initialized")}
	}
	if t.meta.ClusterID == "" {
		return Result{Err: errs.New(errs.Unavailable, "cluster is still forming; retry")}
	}
	t.meta.Initialized = true
	return t.createToken(&CreateToken{Accessor: c.Accessor, Hash: c.Hash, Name: "root", Policies: []string{AdminPolicy}})
}

func (t *txn) createToken(c *CreateToken) Result {
	if _, ok := t.tokens.Get([]byte(c.Accessor)); ok {
		return Result{Err: errs.New(errs.AlreadyExists, "token accessor already exists")}
	}
	if _, ok := t.hashes.Get([]byte(c.Hash)); ok {
		return Result{Err: errs.New(errs.AlreadyExists, "token already exists")}
	}
	// Accessor and hash are random values of the API, not names a caller
	// chooses: checking them first reveals nothing.
	if err := t.checkGrant(c); err != nil {
		return Result{Err: err}
	}
	t.tokens.Insert([]byte(c.Accessor), &Token{
		Accessor: c.Accessor, Hash: c.Hash, Name: c.Name, Policies: c.Policies,
		CreatedAt: t.now, ExpiresAt: c.ExpiresAt, SourceCIDRs: c.SourceCIDRs,
	})
	t.hashes.Insert([]byte(c.Hash), c.Accessor)
	return Result{}
}

// checkGrant is the authoritative check of the rights rules of createToken
// (SPEC §6), on the leader's state: the caller may create tokens, the new
// token is within the caller's rights (acl.CheckGrant), and every policy it
// names exists here — so a createToken sent to a follower right after a
// putPolicy succeeds, and a caller learns whether a policy exists only once
// it is authorized to create a token with it. The system's own tokens (the
// root token at init) have no caller.
func (t *txn) checkGrant(c *CreateToken) *errs.Error {
	if t.cur == nil || t.cur.Caller == "" {
		return nil
	}
	if err := t.authorizeCommand("createToken"); err != nil {
		return err
	}
	if len(c.Name) == 0 || len(c.Name) > acl.MaxTokenNameLen {
		return errs.New(errs.InvalidArgument, "name is required (1-%d bytes)", acl.MaxTokenNameLen)
	}
	if err := acl.ValidateTokenPolicies(c.Policies); err != nil {
		return errs.New(errs.InvalidArgument, "%v", err)
	}
	caller, ok := t.tokens.Get([]byte(t.cur.Caller))
	if !ok {
		return errs.New(errs.Unauthenticated, "token was revoked or has expired")
	}
	info := caller.AuthzInfo()
	if err := acl.CheckGrant(&info, acl.Grant{Policies: c.Policies, ExpiresAt: c.ExpiresAt, SourceCIDRs: c.SourceCIDRs}); err != nil {
		return errs.New(errs.PermissionDenied, "%v", err)
	}
	for i, p := range c.Policies {
		if _, ok := t.policy(p); !ok {
			return errs.New(errs.InvalidArgument, "policies[%d]: policy %q does not exist", i, p)
		}
	}
	if c.ExpiresAt != 0 && c.ExpiresAt <= t.now {
		return errs.New(errs.InvalidArgument, "ttl: the token would already have expired when created")
	}
	return nil
}

func (t *txn) revokeToken(c *RevokeToken) Result {
	if t.cur != nil && t.cur.Caller != "" {
		if err := t.authorizeCommand("revokeToken"); err != nil {
			return Result{Err: err}
		}
	}
	tok, ok := t.tokens.Delete([]byte(c.Accessor))
	if !ok {
		return Result{Err: errs.New(errs.NotFound, "token %s not found", c.Accessor)}
	}
	t.hashes.Delete([]byte(tok.Hash))
	return Result{}
}

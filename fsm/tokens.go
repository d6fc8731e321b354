package fsm

import (
	"github.com/cofferhq/coffer/errs"
)

// AdminPolicy is the built-in policy that allows everything.
const AdminPolicy = "admin"

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
	t.tokens.Insert([]byte(c.Accessor), &Token{
		Accessor: c.Accessor, Hash: c.Hash, Name: c.Name, Policies: c.Policies,
		CreatedAt: t.now, ExpiresAt: c.ExpiresAt, SourceCIDRs: c.SourceCIDRs,
	})
	t.hashes.Insert([]byte(c.Hash), c.Accessor)
	return Result{}
}

func (t *txn) revokeToken(c *RevokeToken) Result {
	tok, ok := t.tokens.Delete([]byte(c.Accessor))
	if !ok {
		return Result{Err: errs.New(errs.NotFound, "token %s not found", c.Accessor)}
	}
	t.hashes.Delete([]byte(tok.Hash))
	return Result{}
}

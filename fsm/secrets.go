package fsm

import (
	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"unique"
)

func (t *txn) getSecret(path string) (*Secret, bool) { return t.secrets.Get(path) }

// usableKey checks that a key exists and is enabled: reading or writing a
// secret whose key is not enabled is FailedPrecondition naming the key.
func (t *txn) usableKey(name string) (*Key, *errs.Error) {
	k, ok := t.keys.Get([]byte(name))
	if !ok {
		return nil, errs.New(errs.NotFound, "kms key %q not found", name)
	}
	if k.State != KeyEnabled {
		return nil, errs.New(errs.FailedPrecondition, "kms key %q is %s", name, k.State)
	}
	return k, nil
}

func (t *txn) checkSealed(k *Key, v *SealedValue) *errs.Error {
	if v.KMSKey != k.Name {
		return errs.New(errs.FailedPrecondition, "secret's kms key changed while the value was encrypted; retry")
	}
	kv := k.KeyVersion(v.KMSKeyVersion)
	if kv == nil || kv.Wrapped == nil {
		return errs.New(errs.FailedPrecondition, "kms key %q version %d is not usable; retry", k.Name, v.KMSKeyVersion)
	}
	return nil
}

func (t *txn) newVersion(n uint64, v *SealedValue, origin, by string) *Version {
	return &Version{
		Version: n, CreatedAt: t.now, CreatedBy: intern(by), Origin: intern(origin), Size: v.Size,
		KMSKey: intern(v.KMSKey), KMSKeyVersion: v.KMSKeyVersion, Ciphertext: v.Ciphertext, WrappedDEK: v.WrappedDEK,
	}
}

// intern returns one shared copy of strings that repeat across millions of
// secrets and versions (accessors, key names, origins): each decoded command
// would otherwise keep its own copy.
func intern(s string) string { return unique.Make(s).Value() }

func (t *txn) putSecret(s *Secret) { t.secrets.insert(s) }

func (t *txn) createSecret(c *CreateSecret) Result {
	if _, ok := t.getSecret(c.Path); ok {
		return Result{Err: errs.New(errs.AlreadyExists, "secret %s already exists", c.Path)}
	}
	k, err := t.usableKey(c.KMSKey)
	if err != nil {
		return Result{Err: err}
	}
	s := &Secret{
		Path: c.Path, UID: c.UID, KMSKey: intern(c.KMSKey), Description: c.Description, Labels: c.Labels,
		AccessPolicy: c.AccessPolicy, CreatedAt: t.now, CreatedBy: intern(c.CreatedBy), UpdatedAt: t.now,
	}
	var res Result
	if c.Value != nil {
		if err := t.checkSealed(k, c.Value); err != nil {
			return Result{Err: err}
		}
		origin := c.Origin
		if origin == "" {
			origin = apitypes.OriginPut
		}
		s.Versions = []*Version{t.newVersion(1, c.Value, origin, c.CreatedBy)}
		res.Version = 1
		t.meta.VersionCount++
	}
	t.putSecret(s)
	t.bind(s.KMSKey, s.Path)
	m := s.Meta(false)
	res.Secret = &m
	return res
}

func (t *txn) putValue(c *PutValue) Result {
	s, ok := t.getSecret(c.Path)
	if !ok {
		if !c.Create {
			return Result{Err: errs.New(errs.NotFound, "secret %s not found", c.Path)}
		}
		if err := t.authorizeAs(t.cur, "createSecret"); err != nil {
			return Result{Err: err}
		}
		return t.createSecret(&CreateSecret{Path: c.Path, UID: c.UID, KMSKey: c.Value.KMSKey, Value: &c.Value, Origin: c.Origin, CreatedBy: c.CreatedBy})
	}
	if s.UID != c.UID {
		return Result{Err: errs.New(errs.FailedPrecondition, "secret %s was deleted and created again while the value was encrypted; retry", c.Path)}
	}
	k, err := t.usableKey(s.KMSKey)
	if err != nil {
		return Result{Err: err}
	}
	if err := t.checkSealed(k, &c.Value); err != nil {
		return Result{Err: err}
	}
	cur := s.CurrentVersion()
	if c.ExpectedVersion != nil && *c.ExpectedVersion != cur {
		return Result{Err: errs.New(errs.VersionMismatch, "expected version %d but current version of %s is %d", *c.ExpectedVersion, c.Path, cur)}
	}
	n := uint64(len(s.Versions)) + 1
	s = s.withVersion(t.newVersion(n, &c.Value, c.Origin, c.CreatedBy))
	s.UpdatedAt = t.now
	t.putSecret(s)
	t.meta.VersionCount++
	return Result{Version: n}
}

func (t *txn) updateSecret(c *UpdateSecret) Result {
	s, ok := t.getSecret(c.Path)
	if !ok {
		return Result{Err: errs.New(errs.NotFound, "secret %s not found", c.Path)}
	}
	s = s.withMeta()
	if c.Description != nil {
		s.Description = *c.Description
	}
	if c.Labels != nil {
		s.Labels = *c.Labels
	}
	if c.AccessPolicy != nil {
		if len(c.AccessPolicy.SourceCIDRs) == 0 && len(c.AccessPolicy.TimeWindows) == 0 {
			s.AccessPolicy = nil // an empty policy clears it
		} else {
			s.AccessPolicy = c.AccessPolicy
		}
	}
	s.UpdatedAt = t.now
	t.putSecret(s)
	m := s.Meta(false)
	return Result{Secret: &m}
}

func (t *txn) destroyVersion(c *DestroyVersion) Result {
	s, ok := t.getSecret(c.Path)
	if !ok {
		return Result{Err: errs.New(errs.NotFound, "secret %s not found", c.Path)}
	}
	v := s.Version(c.Version)
	if v == nil {
		return Result{Err: errs.New(errs.NotFound, "version %d of %s not found", c.Version, c.Path)}
	}
	if v.Destroyed {
		return Result{Version: c.Version} // idempotent
	}
	nv := *v
	nv.Destroyed, nv.Ciphertext, nv.WrappedDEK = true, nil, nil
	s = s.clone()
	s.Versions[c.Version-1] = &nv
	s.UpdatedAt = t.now
	t.putSecret(s)
	return Result{Version: c.Version}
}

func (t *txn) deleteSecret(c *DeleteSecret) Result {
	s, ok := t.secrets.delete(c.Path)
	if !ok {
		return Result{Err: errs.New(errs.NotFound, "secret %s not found", c.Path)}
	}
	t.meta.VersionCount -= len(s.Versions)
	t.unbind(s.KMSKey, s.Path)
	return Result{}
}

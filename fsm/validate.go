package fsm

import (
	"fmt"

	"github.com/cofferhq/coffer/acl"
	"github.com/cofferhq/coffer/apitypes"
)

// Limits a restored state is held to, besides those of apitypes and acl.
const (
	// maxVersionSize bounds a version's recorded plaintext size: the
	// largest value putSecretValue accepts.
	maxVersionSize = apitypes.MaxValueBytes
)

// ValidateState checks every record of st for the invariants that Apply and
// the read paths rely on, so that no state a restore brings can make a later
// command panic or misbehave (a nil version made every later put of that
// secret panic on every node, at every replay). A snapshot is validated
// before it touches the state: by the node that receives it, and again at
// apply (RestoreState), where it must be deterministic: it looks at nothing
// but st. Errors name the record (a path, key, accessor or policy name),
// never a value, key material or hash.
func ValidateState(st *State) error {
	if st == nil || st.Secrets == nil || st.Keys == nil || st.Tokens == nil || st.TokenHashes == nil || st.Policies == nil {
		return fmt.Errorf("state is incomplete")
	}
	var err error
	st.Keys.Root().Walk(func(name []byte, k *Key) bool {
		if k == nil || string(name) != k.Name {
			err = fmt.Errorf("kms key record %q is malformed", name)
		} else if e := validateKey(k); e != nil {
			err = fmt.Errorf("kms key %q: %w", k.Name, e)
		}
		return err != nil
	})
	if err != nil {
		return err
	}
	versions := 0
	keys := keyLookup{st: st}
	st.Secrets.Ascend("", func(s *Secret) bool {
		if s == nil {
			err = fmt.Errorf("a secret record is empty")
			return false
		}
		if e := validateSecret(s, &keys); e != nil {
			err = fmt.Errorf("secret %q: %w", s.Path, e)
			return false
		}
		versions += len(s.Versions)
		return true
	})
	if err != nil {
		return err
	}
	if versions != st.VersionCount {
		return fmt.Errorf("the header counts %d secret versions, the records hold %d", st.VersionCount, versions)
	}
	if err := validateTokens(st); err != nil {
		return err
	}
	st.Policies.Root().Walk(func(name []byte, p *acl.Policy) bool {
		switch {
		case p == nil || string(name) != p.Name:
			err = fmt.Errorf("policy record %q is malformed", name)
		case p.BuiltIn || acl.IsBuiltin(p.Name):
			err = fmt.Errorf("policy %q: a built-in policy is never stored", p.Name)
		default:
			if e := acl.ValidatePolicy(p); e != nil {
				err = fmt.Errorf("policy %q: %w", p.Name, e)
			}
		}
		return err != nil
	})
	return err
}

// validateKey checks a key's name, state, deletion date and versions:
// numbered 1..N, never nil, with material unless the key was destroyed
// (destroyKey erases every version's, and nothing else erases any).
func validateKey(k *Key) error {
	if err := apitypes.ValidateKeyName(k.Name); err != nil {
		return err
	}
	if len(k.Description) > apitypes.MaxDescription {
		return fmt.Errorf("description is %d bytes, at most %d allowed", len(k.Description), apitypes.MaxDescription)
	}
	switch k.State {
	case KeyEnabled, KeyDisabled:
		if k.DeletionDate != 0 {
			return fmt.Errorf("state %s with a deletion date", k.State)
		}
	case KeyPendingDeletion:
		if k.DeletionDate <= 0 {
			return fmt.Errorf("state %s without a deletion date", k.State)
		}
	case KeyDestroyed:
		if k.DeletionDate < 0 {
			return fmt.Errorf("negative deletion date")
		}
	default:
		return fmt.Errorf("unknown state %q", k.State)
	}
	if k.Name == DefaultKeyName && k.State != KeyEnabled && k.State != KeyDisabled {
		return fmt.Errorf("the default key can't be %s", k.State)
	}
	if len(k.Versions) == 0 {
		return fmt.Errorf("no versions")
	}
	for i, v := range k.Versions {
		switch {
		case v == nil:
			return fmt.Errorf("version %d is missing", i+1)
		case uint64(v.Version) != uint64(i)+1:
			return fmt.Errorf("version %d is numbered %d", i+1, v.Version)
		case k.State == KeyDestroyed && v.Wrapped != nil:
			return fmt.Errorf("version %d of a destroyed key has material", v.Version)
		case k.State != KeyDestroyed && len(v.Wrapped) == 0:
			return fmt.Errorf("version %d has no material", v.Version)
		}
	}
	return nil
}

// keyLookup finds the keys that versions name; consecutive versions mostly
// name the same key, so the last one found is kept.
type keyLookup struct {
	st   *State
	last *Key
}

func (l *keyLookup) get(name string) *Key {
	if l.last != nil && l.last.Name == name {
		return l.last
	}
	k, ok := l.st.Key(name)
	if !ok {
		return nil
	}
	l.last = k
	return k
}

// validateSecret checks a secret's path, uid, key, metadata bounds and
// versions: numbered 1..N, never nil; an enabled version holds ciphertext
// and a wrapped data key under an existing version of the secret's key (a
// rebind moves every enabled version); a destroyed one holds neither.
func validateSecret(s *Secret, keys *keyLookup) error {
	if err := apitypes.ValidatePath(s.Path); err != nil {
		return err
	}
	if !isLowerHex(s.UID, 32) {
		return fmt.Errorf("uid is not 32 lowercase hex digits")
	}
	if keys.get(s.KMSKey) == nil {
		return fmt.Errorf("bound to kms key %q, which is not in the snapshot", s.KMSKey)
	}
	if len(s.Description) > apitypes.MaxDescription {
		return fmt.Errorf("description is %d bytes, at most %d allowed", len(s.Description), apitypes.MaxDescription)
	}
	if err := apitypes.ValidateLabels(s.Labels); err != nil {
		return err
	}
	if err := acl.ValidateAccessPolicy(s.AccessPolicy); err != nil {
		return fmt.Errorf("access policy: %w", err)
	}
	for i, v := range s.Versions {
		if v == nil {
			return fmt.Errorf("version %d is missing", i+1)
		}
		if v.Version != uint64(i)+1 {
			return fmt.Errorf("version %d is numbered %d", i+1, v.Version)
		}
		if v.Size < 0 || v.Size > maxVersionSize {
			return fmt.Errorf("version %d: size %d is out of range", v.Version, v.Size)
		}
		if v.Destroyed {
			if len(v.Ciphertext) != 0 || len(v.WrappedDEK) != 0 {
				return fmt.Errorf("version %d is destroyed but holds ciphertext", v.Version)
			}
			continue
		}
		if len(v.Ciphertext) == 0 || len(v.WrappedDEK) == 0 {
			return fmt.Errorf("version %d is enabled but has no ciphertext or no wrapped data key", v.Version)
		}
		if v.KMSKey != s.KMSKey {
			return fmt.Errorf("version %d is encrypted under kms key %q, the secret is bound to %q", v.Version, v.KMSKey, s.KMSKey)
		}
		if k := keys.get(v.KMSKey); k.KeyVersion(v.KMSKeyVersion) == nil {
			return fmt.Errorf("version %d is encrypted under kms key %q version %d, which is not in the snapshot", v.Version, v.KMSKey, v.KMSKeyVersion)
		}
	}
	return nil
}

// validateTokens checks each token's accessor, hash, name, policies and
// source CIDRs, and that the hash index maps every hash, once, to its token.
func validateTokens(st *State) error {
	if st.TokenHashes.Len() != st.Tokens.Len() {
		return fmt.Errorf("%d tokens but %d token hashes: two tokens share a hash", st.Tokens.Len(), st.TokenHashes.Len())
	}
	var err error
	st.Tokens.Root().Walk(func(acc []byte, t *Token) bool {
		if t == nil || string(acc) != t.Accessor || !isLowerHex(t.Accessor, 32) {
			err = fmt.Errorf("token record %q: accessor is not 32 lowercase hex digits", truncate(string(acc), 40))
			return true
		}
		if e := validateToken(t); e != nil {
			err = fmt.Errorf("token %s: %w", t.Accessor, e)
			return true
		}
		if a, ok := st.TokenHashes.Get([]byte(t.Hash)); !ok || a != t.Accessor {
			err = fmt.Errorf("token %s: its hash is indexed for another token", t.Accessor)
			return true
		}
		return false
	})
	return err
}

func validateToken(t *Token) error {
	if !isLowerHex(t.Hash, 64) {
		return fmt.Errorf("hash is not a hex SHA-256")
	}
	if t.Name == "" || len(t.Name) > acl.MaxTokenNameLen {
		return fmt.Errorf("name must be 1-%d bytes", acl.MaxTokenNameLen)
	}
	if err := acl.ValidateTokenPolicies(t.Policies); err != nil {
		return err
	}
	if t.ExpiresAt < 0 {
		return fmt.Errorf("negative expiry")
	}
	if len(t.SourceCIDRs) > 0 {
		if err := acl.ValidateAccessPolicy(&apitypes.AccessPolicy{SourceCIDRs: t.SourceCIDRs}); err != nil {
			return fmt.Errorf("source_cidrs: %w", err)
		}
	}
	return nil
}

// isLowerHex reports whether s is n lowercase hex digits (accessors, uids
// and token hashes are made so).
func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

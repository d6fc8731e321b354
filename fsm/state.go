package fsm

import (
	"time"

	"github.com/cofferhq/coffer/acl"
	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/audit"
	iradix "github.com/hashicorp/go-immutable-radix/v2"
)

// Secret is the stored form of a secret. Values in the trees are never
// mutated after insertion: Apply clones before changing (copy-on-write), so
// a loaded State is a consistent, lock-free snapshot.
type Secret struct {
	Path         string                 `msgpack:"p"`
	UID          string                 `msgpack:"u"`
	KMSKey       string                 `msgpack:"k"`
	Description  string                 `msgpack:"d,omitempty"`
	Labels       map[string]string      `msgpack:"l,omitempty"`
	AccessPolicy *apitypes.AccessPolicy `msgpack:"ap,omitempty"`
	CreatedAt    int64                  `msgpack:"ca"`
	CreatedBy    string                 `msgpack:"cb"`
	UpdatedAt    int64                  `msgpack:"ua"`
	Versions     []*Version             `msgpack:"vs"` // Versions[i].Version == i+1
}

// Version is one stored secret version; a destroyed version keeps its
// metadata and loses its ciphertext and wrapped DEK.
type Version struct {
	Version       uint64 `msgpack:"n"`
	Destroyed     bool   `msgpack:"x,omitempty"`
	CreatedAt     int64  `msgpack:"ca"`
	CreatedBy     string `msgpack:"cb"`
	Origin        string `msgpack:"o"`
	Size          int    `msgpack:"sz"`
	KMSKey        string `msgpack:"k"`
	KMSKeyVersion uint32 `msgpack:"kv"`
	Ciphertext    []byte `msgpack:"ct,omitempty"`
	WrappedDEK    []byte `msgpack:"dek,omitempty"`
}

// CurrentVersion is the highest enabled version, 0 if none.
func (s *Secret) CurrentVersion() uint64 {
	for i := len(s.Versions) - 1; i >= 0; i-- {
		if !s.Versions[i].Destroyed {
			return s.Versions[i].Version
		}
	}
	return 0
}

// Version returns version n or nil.
func (s *Secret) Version(n uint64) *Version {
	if n == 0 || n > uint64(len(s.Versions)) {
		return nil
	}
	return s.Versions[n-1]
}

func (s *Secret) clone() *Secret {
	c := *s
	c.Versions = append([]*Version(nil), s.Versions...)
	return &c
}

// withVersion returns a copy of s with v appended, in O(1): the copy shares
// the versions' backing array. That is safe because versions are only ever
// appended by the one apply goroutine, each Secret reads only its own prefix
// of the array, and changing an existing version goes through clone.
// Copying the whole list on every put made a put O(versions).
func (s *Secret) withVersion(v *Version) *Secret {
	c := *s
	c.Versions = append(s.Versions, v)
	return &c
}

// withMeta returns a copy of s for changes that leave the versions alone.
func (s *Secret) withMeta() *Secret {
	c := *s
	return &c
}

// Meta returns the API form of the secret, with versions if asked.
func (s *Secret) Meta(withVersions bool) apitypes.Secret {
	m := apitypes.Secret{
		Path: s.Path, UID: s.UID, KMSKey: s.KMSKey, Description: s.Description,
		Labels: s.Labels, AccessPolicy: s.AccessPolicy,
		CreatedAt: FromNanos(s.CreatedAt), CreatedBy: s.CreatedBy, UpdatedAt: FromNanos(s.UpdatedAt),
		CurrentVersion: s.CurrentVersion(),
	}
	if m.Labels == nil {
		m.Labels = map[string]string{}
	}
	if withVersions {
		m.Versions = make([]apitypes.Version, 0, len(s.Versions))
		for _, v := range s.Versions {
			st := apitypes.StateEnabled
			if v.Destroyed {
				st = apitypes.StateDestroyed
			}
			m.Versions = append(m.Versions, apitypes.Version{
				Version: v.Version, State: st, CreatedAt: FromNanos(v.CreatedAt), CreatedBy: v.CreatedBy,
				Origin: v.Origin, Size: v.Size, KMSKey: v.KMSKey, KMSKeyVersion: v.KMSKeyVersion,
			})
		}
	}
	return m
}

// Key states.
const (
	KeyEnabled         = "enabled"
	KeyDisabled        = "disabled"
	KeyPendingDeletion = "pending_deletion"
	KeyDestroyed       = "destroyed"
)

// Key is a KMS key; its material exists only wrapped by the root key.
type Key struct {
	Name         string        `msgpack:"n"`
	Description  string        `msgpack:"d,omitempty"`
	State        string        `msgpack:"s"`
	CreatedAt    int64         `msgpack:"ca"`
	DeletionDate int64         `msgpack:"dd,omitempty"`
	Versions     []*KeyVersion `msgpack:"vs"` // Versions[i].Version == i+1
	// Bound counts the secrets bound to the key. It is derived (kept with
	// the bindings index, rebuilt after a snapshot restore), not stored.
	Bound int `msgpack:"-"`
}

// KeyVersion is one version of a key's material, wrapped by the root key.
type KeyVersion struct {
	Version   uint32 `msgpack:"n"`
	Wrapped   []byte `msgpack:"w,omitempty"`
	CreatedAt int64  `msgpack:"ca"`
}

// Current returns the key's newest version.
func (k *Key) Current() *KeyVersion {
	if len(k.Versions) == 0 {
		return nil
	}
	return k.Versions[len(k.Versions)-1]
}

// KeyVersion returns version n or nil.
func (k *Key) KeyVersion(n uint32) *KeyVersion {
	if n == 0 || int(n) > len(k.Versions) {
		return nil
	}
	return k.Versions[n-1]
}

// Token is a stored token: its hash, never the token.
type Token struct {
	Accessor    string   `msgpack:"a"`
	Hash        string   `msgpack:"h"`
	Name        string   `msgpack:"n"`
	Policies    []string `msgpack:"p"`
	CreatedAt   int64    `msgpack:"ca"`
	ExpiresAt   int64    `msgpack:"x,omitempty"`
	SourceCIDRs []string `msgpack:"cidr,omitempty"`
}

// Expired reports whether the token has expired at time now (unix nanos).
func (t *Token) Expired(now int64) bool { return t.ExpiresAt != 0 && now >= t.ExpiresAt }

// Meta returns the API form of the token.
func (t *Token) Meta() apitypes.Token {
	m := apitypes.Token{Accessor: t.Accessor, Name: t.Name, Policies: t.Policies,
		CreatedAt: FromNanos(t.CreatedAt), SourceCIDRs: t.SourceCIDRs}
	if t.ExpiresAt != 0 {
		x := FromNanos(t.ExpiresAt)
		m.ExpiresAt = &x
	}
	return m
}

// State is one immutable version of the replicated state.
type State struct {
	Index           uint64 // last applied log index
	ClusterID       string
	RootFingerprint string
	Initialized     bool // root token created
	Secrets         *SecretTree
	Keys            *iradix.Tree[*Key]
	Tokens          *iradix.Tree[*Token] // by accessor
	TokenHashes     *iradix.Tree[string] // hash -> accessor
	Policies        *iradix.Tree[*acl.Policy]
	AuditHead       audit.Head
	VersionCount    int // stored versions (enabled or destroyed), for metrics
}

func emptyState() *State {
	return &State{
		Secrets:     newSecretTree(),
		Keys:        iradix.New[*Key](),
		Tokens:      iradix.New[*Token](),
		TokenHashes: iradix.New[string](),
		Policies:    iradix.New[*acl.Policy](),
	}
}

// Secret returns the secret at path.
func (s *State) Secret(path string) (*Secret, bool) { return s.Secrets.Get(path) }

// Key returns the named key.
func (s *State) Key(name string) (*Key, bool) { return s.Keys.Get([]byte(name)) }

// Token returns a token by accessor.
func (s *State) Token(accessor string) (*Token, bool) { return s.Tokens.Get([]byte(accessor)) }

// TokenByHash returns a token by the hash of its secret.
func (s *State) TokenByHash(hash string) (*Token, bool) {
	acc, ok := s.TokenHashes.Get([]byte(hash))
	if !ok {
		return nil, false
	}
	return s.Token(acc)
}

// FromNanos turns the state's unix-nanosecond times into UTC times (zero
// stays zero).
func FromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

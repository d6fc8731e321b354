package fsm

import (
	"encoding/base64"
	"strings"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
)

// The KMS key lifecycle (SPEC §2 "KMS"). Apply never sees plaintext key
// material: every command carries material already wrapped by the root key
// on the node that received the request, and rebinding carries data keys
// already re-wrapped there.
//
// Key states and the commands that move between them:
//
//	enabled  --DisableKey-->  disabled  --EnableKey--> enabled
//	enabled|disabled --ScheduleKeyDeletion--> pending_deletion
//	pending_deletion --CancelKeyDeletion--> disabled  (as AWS KMS does)
//	pending_deletion --DestroyKey (leader, after the date)--> destroyed
//
// destroyed is final: the material of every version is erased from the
// state (so from every later snapshot); the metadata stays.

// DefaultKeyName is the key created at cluster init; it can't be deleted.
const DefaultKeyName = "default"

const dayNanos = int64(24 * time.Hour)

// CreateKey creates a key with its first version.
type CreateKey struct {
	Name        string `msgpack:"n"`
	Description string `msgpack:"d,omitempty"`
	Wrapped     []byte `msgpack:"w"` // version 1, wrapped by the root key
}

// RotateKey adds a version. Version is the number the material was wrapped
// for (the wrapping binds it), so it must be the next one at apply time.
type RotateKey struct {
	Name    string `msgpack:"n"`
	Version uint32 `msgpack:"v"`
	Wrapped []byte `msgpack:"w"`
}

// DisableKey makes a key unusable until EnableKey.
type DisableKey struct {
	Name string `msgpack:"n"`
}

// EnableKey makes a disabled key usable again.
type EnableKey struct {
	Name string `msgpack:"n"`
}

// ScheduleKeyDeletion puts a key in pending_deletion until batch time +
// PendingDays. It is refused while secrets are bound, unless Force.
type ScheduleKeyDeletion struct {
	Name        string `msgpack:"n"`
	PendingDays int    `msgpack:"days"`
	Force       bool   `msgpack:"f,omitempty"`
}

// CancelKeyDeletion moves a pending key back to disabled.
type CancelKeyDeletion struct {
	Name string `msgpack:"n"`
}

// DestroyKey erases a pending key's material once its deletion date has
// passed at apply time; the leader issues it.
type DestroyKey struct {
	Name string `msgpack:"n"`
}

// RebindSecretKey moves a secret to another key: every enabled version's DEK
// was re-wrapped under ToKey version ToKeyVersion on the receiving node.
type RebindSecretKey struct {
	Path         string         `msgpack:"p"`
	UID          string         `msgpack:"u"`
	FromKey      string         `msgpack:"fk"`
	ToKey        string         `msgpack:"tk"`
	ToKeyVersion uint32         `msgpack:"tv"`
	Versions     []RewrappedDEK `msgpack:"vs"` // every enabled version, ascending
}

// RewrappedDEK is one version's data key re-wrapped for a rebind. FromKey and
// FromKeyVersion are what the version was wrapped under when the request was
// prepared; Apply refuses if that changed meanwhile.
type RewrappedDEK struct {
	Version        uint64 `msgpack:"n"`
	FromKey        string `msgpack:"fk"`
	FromKeyVersion uint32 `msgpack:"fv"`
	WrappedDEK     []byte `msgpack:"dek"`
}

// RewrapRootKey re-wraps all key material under the root key with
// Fingerprint, in one change. Keys lists every key in the state with the
// re-wrapped blob of each version (nil where the material was destroyed).
type RewrapRootKey struct {
	Fingerprint string         `msgpack:"fp"`
	Keys        []RewrappedKey `msgpack:"k"`
}

// RewrappedKey is one key's re-wrapped versions, Wrapped[i] for version i+1.
type RewrappedKey struct {
	Name    string   `msgpack:"n"`
	Wrapped [][]byte `msgpack:"w"`
}

// Meta returns the API form of the key.
func (k *Key) Meta() apitypes.Key {
	m := apitypes.Key{
		Name: k.Name, Description: k.Description, State: k.State, CreatedAt: FromNanos(k.CreatedAt),
		Versions: make([]apitypes.KeyVersion, 0, len(k.Versions)), BoundSecrets: k.Bound,
	}
	if k.DeletionDate != 0 {
		d := FromNanos(k.DeletionDate)
		m.DeletionDate = &d
	}
	if cur := k.Current(); cur != nil {
		m.CurrentVersion = cur.Version
	}
	for _, v := range k.Versions {
		st := apitypes.StateEnabled
		if v.Wrapped == nil {
			st = apitypes.StateDestroyed
		}
		m.Versions = append(m.Versions, apitypes.KeyVersion{Version: v.Version, CreatedAt: FromNanos(v.CreatedAt), State: st})
	}
	return m
}

func (k *Key) clone() *Key {
	c := *k
	c.Versions = append([]*KeyVersion(nil), k.Versions...)
	return &c
}

// InactiveBound returns the number of secrets bound to keys that are not
// enabled. It walks the keys, not the secrets: keys are few.
func (s *State) InactiveBound() int {
	n := 0
	s.Keys.Root().Walk(func(_ []byte, k *Key) bool {
		if k.State != KeyEnabled {
			n += k.Bound
		}
		return false
	})
	return n
}

// KeyBindings returns up to pageSize paths bound to the key, in path order,
// from the page token on, and the token of the next page ("" at the end).
// It walks the secrets: an index of bindings cost as much memory as the
// secrets tree itself, for an operator action that is rare.
func (s *State) KeyBindings(keyName string, pageSize int, pageToken string) ([]string, string, error) {
	start := "/"
	if pageToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(pageToken)
		if err != nil || !strings.HasPrefix(string(b), "/") {
			return nil, "", errs.New(errs.InvalidArgument, "invalid page_token")
		}
		start = string(b)
	}
	paths := []string{}
	next := ""
	s.Secrets.Ascend(start, func(sec *Secret) bool {
		if sec.KMSKey != keyName {
			return true
		}
		if len(paths) >= pageSize {
			next = base64.RawURLEncoding.EncodeToString([]byte(sec.Path))
			return false
		}
		paths = append(paths, sec.Path)
		return true
	})
	return paths, next, nil
}

// rebuildBindings derives the keys' bound counts from the secrets (after a
// snapshot restore: counts are not in the snapshot).
func (s *State) rebuildBindings() {
	counts := map[string]int{}
	s.Secrets.Ascend("", func(sec *Secret) bool {
		counts[sec.KMSKey]++
		return true
	})
	keys := s.Keys.Txn()
	s.Keys.Root().Walk(func(name []byte, k *Key) bool {
		if k.Bound != counts[k.Name] {
			c := k.clone()
			c.Bound = counts[k.Name]
			keys.Insert(name, c)
		}
		return false
	})
	s.Keys = keys.CommitOnly()
}

// bind records that a secret is bound to keyName.
func (t *txn) bind(keyName, path string) { t.addBound(keyName, 1) }

// unbind removes a binding recorded by bind.
func (t *txn) unbind(keyName, path string) { t.addBound(keyName, -1) }

func (t *txn) addBound(keyName string, d int) {
	k, ok := t.keys.Get([]byte(keyName))
	if !ok {
		return
	}
	c := k.clone()
	c.Bound += d
	t.keys.Insert([]byte(keyName), c)
}

func (t *txn) getKey(name string) (*Key, *errs.Error) {
	k, ok := t.keys.Get([]byte(name))
	if !ok {
		return nil, errs.New(errs.NotFound, "kms key %q not found", name)
	}
	return k, nil
}

func keyResult(k *Key) Result {
	m := k.Meta()
	return Result{Key: &m}
}

func notInState(k *Key, action, want string) Result {
	return Result{Err: errs.New(errs.FailedPrecondition, "kms key %q is %s; %s needs a key that is %s", k.Name, k.State, action, want)}
}

func (t *txn) createKey(c *CreateKey) Result {
	if _, ok := t.keys.Get([]byte(c.Name)); ok {
		return Result{Err: errs.New(errs.AlreadyExists, "kms key %q already exists", c.Name)}
	}
	if len(c.Wrapped) == 0 {
		panic("fsm: createKey without material")
	}
	k := &Key{
		Name: c.Name, Description: c.Description, State: KeyEnabled, CreatedAt: t.now,
		Versions: []*KeyVersion{{Version: 1, Wrapped: c.Wrapped, CreatedAt: t.now}},
	}
	t.keys.Insert([]byte(k.Name), k)
	return keyResult(k)
}

func (t *txn) rotateKey(c *RotateKey) Result {
	k, err := t.getKey(c.Name)
	if err != nil {
		return Result{Err: err}
	}
	if k.State != KeyEnabled {
		return notInState(k, "rotateKey", KeyEnabled)
	}
	if next := uint32(len(k.Versions)) + 1; c.Version != next {
		return Result{Err: errs.New(errs.FailedPrecondition, "kms key %q was rotated concurrently (next version is %d, not %d); retry", k.Name, next, c.Version)}
	}
	k = k.clone()
	k.Versions = append(k.Versions, &KeyVersion{Version: c.Version, Wrapped: c.Wrapped, CreatedAt: t.now})
	t.keys.Insert([]byte(k.Name), k)
	return keyResult(k)
}

func (t *txn) disableKey(c *DisableKey) Result {
	k, err := t.getKey(c.Name)
	if err != nil {
		return Result{Err: err}
	}
	switch k.State {
	case KeyDisabled:
		return keyResult(k) // idempotent
	case KeyEnabled:
	default:
		return notInState(k, "disableKey", KeyEnabled)
	}
	k = k.clone()
	k.State = KeyDisabled
	t.keys.Insert([]byte(k.Name), k)
	return keyResult(k)
}

func (t *txn) enableKey(c *EnableKey) Result {
	k, err := t.getKey(c.Name)
	if err != nil {
		return Result{Err: err}
	}
	switch k.State {
	case KeyEnabled:
		return keyResult(k) // idempotent
	case KeyDisabled:
	case KeyPendingDeletion:
		return Result{Err: errs.New(errs.FailedPrecondition, "kms key %q is pending_deletion; cancel the deletion first (it then becomes disabled)", k.Name)}
	default:
		return notInState(k, "enableKey", KeyDisabled)
	}
	k = k.clone()
	k.State = KeyEnabled
	t.keys.Insert([]byte(k.Name), k)
	return keyResult(k)
}

func (t *txn) scheduleKeyDeletion(c *ScheduleKeyDeletion) Result {
	if c.PendingDays < apitypes.MinPendingDays || c.PendingDays > apitypes.MaxPendingDays {
		return Result{Err: errs.New(errs.InvalidArgument, "pending_days must be %d-%d", apitypes.MinPendingDays, apitypes.MaxPendingDays)}
	}
	k, err := t.getKey(c.Name)
	if err != nil {
		return Result{Err: err}
	}
	if k.Name == DefaultKeyName {
		return Result{Err: errs.New(errs.FailedPrecondition, "the default kms key can't be deleted")}
	}
	if k.State != KeyEnabled && k.State != KeyDisabled {
		return notInState(k, "scheduleKeyDeletion", "enabled or disabled")
	}
	if k.Bound > 0 && !c.Force {
		return Result{Err: errs.New(errs.FailedPrecondition,
			"kms key %q is still bound to %d secret(s): rebind them first (coffer kms bindings %s), or set force to make them unreadable once the key is destroyed",
			k.Name, k.Bound, k.Name)}
	}
	k = k.clone()
	k.State = KeyPendingDeletion
	k.DeletionDate = t.now + int64(c.PendingDays)*dayNanos
	t.keys.Insert([]byte(k.Name), k)
	return keyResult(k)
}

func (t *txn) cancelKeyDeletion(c *CancelKeyDeletion) Result {
	k, err := t.getKey(c.Name)
	if err != nil {
		return Result{Err: err}
	}
	if k.State != KeyPendingDeletion {
		return notInState(k, "cancelKeyDeletion", KeyPendingDeletion)
	}
	k = k.clone()
	k.State = KeyDisabled
	k.DeletionDate = 0
	t.keys.Insert([]byte(k.Name), k)
	return keyResult(k)
}

func (t *txn) destroyKey(c *DestroyKey) Result {
	k, err := t.getKey(c.Name)
	if err != nil {
		return Result{Err: err}
	}
	if k.State != KeyPendingDeletion {
		return notInState(k, "destroyKey", KeyPendingDeletion)
	}
	if t.now < k.DeletionDate {
		return Result{Err: errs.New(errs.FailedPrecondition, "kms key %q is not due for destruction before %s", k.Name, FromNanos(k.DeletionDate).Format(time.RFC3339))}
	}
	k = k.clone()
	for i, v := range k.Versions {
		nv := *v
		nv.Wrapped = nil
		k.Versions[i] = &nv
	}
	k.State = KeyDestroyed
	t.keys.Insert([]byte(k.Name), k)
	return keyResult(k)
}

func (t *txn) rebindSecretKey(c *RebindSecretKey) Result {
	s, ok := t.getSecret(c.Path)
	if !ok {
		return Result{Err: errs.New(errs.NotFound, "secret %s not found", c.Path)}
	}
	if s.UID != c.UID {
		return Result{Err: errs.New(errs.FailedPrecondition, "secret %s was deleted and created again while its data keys were re-wrapped; retry", c.Path)}
	}
	if s.KMSKey != c.FromKey {
		return Result{Err: errs.New(errs.FailedPrecondition, "secret %s was rebound concurrently; retry", c.Path)}
	}
	if _, err := t.usableKey(c.FromKey); err != nil {
		return Result{Err: err}
	}
	to, err := t.usableKey(c.ToKey)
	if err != nil {
		return Result{Err: err}
	}
	if kv := to.KeyVersion(c.ToKeyVersion); kv == nil || kv.Wrapped == nil {
		return Result{Err: errs.New(errs.FailedPrecondition, "kms key %q version %d is not usable; retry", to.Name, c.ToKeyVersion)}
	}
	// The set of enabled versions, and what each is wrapped under, must be
	// what the receiving node re-wrapped: a version added or destroyed
	// meanwhile would otherwise be left on the old key or resurrected.
	i := 0
	for _, v := range s.Versions {
		if v.Destroyed {
			continue
		}
		if i >= len(c.Versions) || c.Versions[i].Version != v.Version ||
			c.Versions[i].FromKey != v.KMSKey || c.Versions[i].FromKeyVersion != v.KMSKeyVersion {
			return Result{Err: errs.New(errs.FailedPrecondition, "secret %s changed while its data keys were re-wrapped; retry", c.Path)}
		}
		i++
	}
	if i != len(c.Versions) {
		return Result{Err: errs.New(errs.FailedPrecondition, "secret %s changed while its data keys were re-wrapped; retry", c.Path)}
	}
	s = s.clone()
	for _, rw := range c.Versions {
		nv := *s.Versions[rw.Version-1]
		nv.KMSKey, nv.KMSKeyVersion, nv.WrappedDEK = c.ToKey, c.ToKeyVersion, rw.WrappedDEK
		s.Versions[rw.Version-1] = &nv
	}
	if s.KMSKey != c.ToKey {
		t.unbind(s.KMSKey, s.Path)
		t.bind(c.ToKey, s.Path)
		s.KMSKey = c.ToKey
	}
	s.UpdatedAt = t.now
	t.putSecret(s)
	m := s.Meta(false)
	return Result{Secret: &m}
}

func (t *txn) rewrapRootKey(c *RewrapRootKey) Result {
	retry := func(format string, args ...any) Result {
		return Result{Err: errs.New(errs.FailedPrecondition, format+"; retry", args...)}
	}
	n := 0
	t.keys.Root().Walk(func([]byte, *Key) bool { n++; return false })
	if n != len(c.Keys) {
		return retry("kms keys were created while the key material was re-wrapped")
	}
	for _, rk := range c.Keys {
		k, ok := t.keys.Get([]byte(rk.Name))
		if !ok {
			return retry("kms key %q is not in the state", rk.Name)
		}
		if len(k.Versions) != len(rk.Wrapped) {
			return retry("kms key %q was rotated while the key material was re-wrapped", rk.Name)
		}
		for i, v := range k.Versions {
			if v.Wrapped != nil && rk.Wrapped[i] == nil {
				return retry("kms key %q version %d has no re-wrapped material", rk.Name, v.Version)
			}
		}
	}
	for _, rk := range c.Keys {
		k, _ := t.keys.Get([]byte(rk.Name))
		k = k.clone()
		for i, v := range k.Versions {
			if v.Wrapped == nil {
				continue // destroyed: never resurrect material
			}
			nv := *v
			nv.Wrapped = rk.Wrapped[i]
			k.Versions[i] = &nv
		}
		t.keys.Insert([]byte(k.Name), k)
	}
	t.meta.RootFingerprint = c.Fingerprint
	return Result{}
}

package kms

import (
	"bytes"
	"fmt"
	"sync"
)

// MaterialCache caches unwrapped KMS key material so hot paths don't unwrap
// on every request. It is safe for concurrent use. Create it with
// NewMaterialCache; a zero MaterialCache works but has no root keys.
//
// An entry is keyed by key name and version and remembers the wrapped blob it
// came from: a hit needs the identical blob (compared in full, which is
// cheaper than hashing 69 bytes and leaves no collision question), so a
// re-wrapped or replaced blob is unwrapped again, and authenticated, instead
// of being served from a stale entry.
// Keeping one entry per (name, version) bounds the cache by the number of key
// versions, however often blobs are re-wrapped.
type MaterialCache struct {
	mu sync.RWMutex
	// Behind a pointer so that printing a MaterialCache value by reflection
	// shows an address, never cached material.
	st *cacheState
}

type cacheState struct {
	root    *RootKeys
	gen     uint64 // bumped by SetRoot and Forget so in-flight unwraps don't repopulate
	entries map[cacheKey]cacheEntry
}

type cacheKey struct {
	name    string
	version uint32
}

type cacheEntry struct {
	wrapped  []byte // a private copy: callers may reuse their slice
	material []byte
	kek      *KEK // material, expanded once for every Seal and Open under it
}

// Format keeps material out of prints of internal values (fmt reads
// unexported fields by reflection).
func (e cacheEntry) Format(f fmt.State, _ rune) { fmt.Fprint(f, "cacheEntry{[redacted]}") }

// NewMaterialCache returns an empty cache that unwraps with root. root may be
// nil (e.g. a sealed node); Get then fails with ErrNoRootKey until SetRoot.
func NewMaterialCache(root *RootKeys) *MaterialCache {
	return &MaterialCache{st: &cacheState{root: root, entries: make(map[cacheKey]cacheEntry)}}
}

// state returns the cache state, creating it for a zero MaterialCache.
// Callers hold c.mu for writing.
func (c *MaterialCache) state() *cacheState {
	if c.st == nil {
		c.st = &cacheState{entries: make(map[cacheKey]cacheEntry)}
	}
	return c.st
}

// Get returns the unwrapped material for a key version, unwrapping and caching
// it on a miss. Each call returns a fresh copy, so a caller that modifies or
// clears it cannot corrupt the cache. Failures are not cached.
func (c *MaterialCache) Get(keyName string, version uint32, wrapped []byte) ([]byte, error) {
	var out []byte
	err := c.with(keyName, version, wrapped, func(e cacheEntry) { out = bytes.Clone(e.material) })
	return out, err
}

// KEK returns a key version's KEK for Seal and Open, cached with its
// material (same check of the wrapped blob, same eviction by SetRoot and
// Forget): building one for each request was 4 % of a follower's CPU
// under reads. A KEK evicted while a caller holds it stays usable by that
// caller.
func (c *MaterialCache) KEK(keyName string, version uint32, wrapped []byte) (*KEK, error) {
	var kek *KEK
	err := c.with(keyName, version, wrapped, func(e cacheEntry) { kek = e.kek })
	return kek, err
}

// with calls use with the entry of a key version, unwrapping the blob and
// caching the entry on a miss. use must not keep e.material.
func (c *MaterialCache) with(keyName string, version uint32, wrapped []byte, use func(e cacheEntry)) error {
	k := cacheKey{keyName, version}

	var root *RootKeys
	var gen uint64
	c.mu.RLock()
	if st := c.st; st != nil {
		if e, ok := st.entries[k]; ok && bytes.Equal(e.wrapped, wrapped) {
			use(e)
			c.mu.RUnlock()
			return nil
		}
		root, gen = st.root, st.gen
	}
	c.mu.RUnlock()

	if root == nil {
		return ErrNoRootKey
	}
	// Unwrap outside the lock: concurrent misses may unwrap twice, which is
	// cheaper than serialising every reader behind one AES-GCM operation.
	material, err := root.UnwrapKeyMaterial(keyName, version, wrapped)
	if err != nil {
		return err
	}
	kek, err := NewKEK(material)
	if err != nil {
		clear(material)
		return err
	}
	e := cacheEntry{wrapped: bytes.Clone(wrapped), material: material, kek: kek}
	use(e)

	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state()
	if st.gen != gen {
		// SetRoot or Forget ran meanwhile: the result is still correct for
		// this caller, but must not resurrect a cleared entry.
		clear(material)
		return nil
	}
	if old, ok := st.entries[k]; ok {
		clear(old.material)
	}
	st.entries[k] = e
	return nil
}

// SetRoot replaces the root keys and clears the cache, so nothing unwrapped
// under the previous root keys is served after them. The material is wiped;
// a KEK's AES key schedule (which holds the key) can't be, as Go's AES
// offers no way to: it is dropped for the garbage collector, as the
// schedules built per request were before KEKs were cached.
func (c *MaterialCache) SetRoot(root *RootKeys) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state()
	st.root = root
	st.gen++
	for k, e := range st.entries {
		clear(e.material)
		delete(st.entries, k)
	}
}

// Root returns the current root keys (possibly nil).
func (c *MaterialCache) Root() *RootKeys {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.st == nil {
		return nil
	}
	return c.st.root
}

// Forget drops every cached version of a key, e.g. when it is destroyed:
// its material is wiped, its KEKs dropped (see SetRoot).
func (c *MaterialCache) Forget(keyName string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state()
	st.gen++
	for k, e := range st.entries {
		if k.name == keyName {
			clear(e.material)
			delete(st.entries, k)
		}
	}
}

// Len returns the number of cached key versions.
func (c *MaterialCache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.st == nil {
		return 0
	}
	return len(c.st.entries)
}

// Format prints a redacted summary under every verb, never cached material.
func (c *MaterialCache) Format(f fmt.State, _ rune) {
	if c == nil {
		fmt.Fprint(f, "<nil>")
		return
	}
	fmt.Fprintf(f, "kms.MaterialCache{entries: %d, root: %v}", c.Len(), c.Root())
}

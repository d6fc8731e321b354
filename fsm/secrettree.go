package fsm

import "github.com/google/btree"

// SecretTree is the secrets table: a copy-on-write B-tree of secrets ordered
// by path (byte order). A published State's tree is never modified: a log
// entry's transaction works on a lazy clone, which copies only the nodes it
// changes. It costs about 45 bytes per secret where an immutable radix tree
// cost about 360 (TestMemoryPerSecret), and the table dominates memory.
type SecretTree struct{ t *btree.BTreeG[secretItem] }

// secretItem keeps the path beside the pointer so comparisons don't chase
// the pointer and a lookup needs no Secret.
type secretItem struct {
	path string
	s    *Secret
}

// secretTreeDegree: nodes of up to 63 items keep the tree shallow (4 levels
// at a million secrets) and a copied node ~1.5 KB.
const secretTreeDegree = 32

func lessSecretItem(a, b secretItem) bool { return a.path < b.path }

func newSecretTree() *SecretTree {
	return &SecretTree{t: btree.NewG(secretTreeDegree, lessSecretItem)}
}

// Len is the number of secrets.
func (t *SecretTree) Len() int { return t.t.Len() }

// Get returns the secret at path.
func (t *SecretTree) Get(path string) (*Secret, bool) {
	it, ok := t.t.Get(secretItem{path: path})
	return it.s, ok
}

// Ascend calls fn for each secret with a path >= from, in path order, until
// fn returns false.
func (t *SecretTree) Ascend(from string, fn func(*Secret) bool) {
	t.t.AscendGreaterOrEqual(secretItem{path: from}, func(it secretItem) bool { return fn(it.s) })
}

// clone returns a tree a transaction may modify; t stays as it is. Only the
// apply goroutine clones (btree's Clone must not run concurrently with
// itself); readers of t are unaffected.
func (t *SecretTree) clone() *SecretTree { return &SecretTree{t: t.t.Clone()} }

// insert adds or replaces s (only on a tree from clone or newSecretTree).
func (t *SecretTree) insert(s *Secret) { t.t.ReplaceOrInsert(secretItem{path: s.Path, s: s}) }

// delete removes the secret at path (only on a tree from clone).
func (t *SecretTree) delete(path string) (*Secret, bool) {
	it, ok := t.t.Delete(secretItem{path: path})
	return it.s, ok
}

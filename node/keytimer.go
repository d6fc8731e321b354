package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/fsm"
	"github.com/cofferhq/coffer/kms"
	"github.com/hashicorp/raft"
)

// Audit event of a key destruction committed by the leader's timer.
const evDestroyKey = "kms.destroy_key"

// SystemPrincipal is the principal of changes the cluster makes by itself
// (the leader's key destruction timer).
var SystemPrincipal = apitypes.Principal{Accessor: "system", Name: "system"}

// keyDuties is the state of kmsDutiesOnce.
type keyDuties struct {
	mu        sync.Mutex
	seenFP    string          // root fingerprint of the state at the last look (at start: the restored snapshot's)
	forgotten map[string]bool // destroyed keys already dropped from the material cache
}

// kmsDutiesOnce runs the KMS duties of a node (every ReconcileInterval):
//   - on the leader, commit the destruction of pending keys whose deletion
//     date has passed (by the injectable clock, Config.Now);
//   - on every node, drop destroyed keys' material from the cache;
//   - on every node, take a snapshot once a root key re-wrap has been
//     applied, so that no snapshot on disk still needs the old root key.
func (n *Node) kmsDutiesOnce() {
	st := n.fsm.State()
	if n.IsLeader() {
		n.destroyDueKeys(st)
	}
	n.forgetDestroyedKeys(st)
	n.persistRewrap(st)
}

func (n *Node) forgetDestroyedKeys(st *fsm.State) {
	d := &n.kmsDuties
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.forgotten == nil {
		d.forgotten = map[string]bool{}
	}
	st.Keys.Root().Walk(func(_ []byte, k *fsm.Key) bool {
		if k.State == fsm.KeyDestroyed && !d.forgotten[k.Name] {
			n.keys.Forget(k.Name)
			d.forgotten[k.Name] = true
		}
		return false
	})
}

// destroyDueKeys proposes DestroyKey for every pending key whose deletion
// date has passed. Apply re-checks the date against the entry's timestamp,
// so a cancellation that commits first wins.
func (n *Node) destroyDueKeys(st *fsm.State) {
	now := n.cfg.Now().UnixNano()
	var due []string
	st.Keys.Root().Walk(func(_ []byte, k *fsm.Key) bool {
		if k.State == fsm.KeyPendingDeletion && k.DeletionDate <= now {
			due = append(due, k.Name)
		}
		return false
	})
	for _, name := range due {
		if err := n.destroyKey(name); err != nil {
			n.logger.Warn("kms key destruction failed; will retry", "key", name, "error", err)
			continue
		}
		n.logger.Info("kms key destroyed: its deletion date passed", "key", name)
	}
}

func (n *Node) destroyKey(name string) error {
	entry := apitypes.AuditEntry{
		Node: n.cfg.NodeID, RequestID: RandomID(), Action: evDestroyKey, Principal: SystemPrincipal, KMSKey: name,
	}
	env, err := fsm.NewEnvelope(fsm.CmdDestroyKey, &fsm.DestroyKey{Name: name}, "", []apitypes.AuditEntry{entry})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	res, err := n.Propose(ctx, env)
	if err != nil {
		return err
	}
	if res.Err != nil {
		return res.Err
	}
	n.keys.Forget(name)
	return nil
}

// persistRewrap snapshots the state once a root key re-wrap (which changes
// the state's root fingerprint) has been applied. Without it, a node whose
// latest snapshot predates the re-wrap would restore key material wrapped
// by the old root key at its next start, and refuse to start once the old
// key is gone from --root-key-file. A node without any snapshot needs none:
// replaying the log never unwraps.
func (n *Node) persistRewrap(st *fsm.State) {
	d := &n.kmsDuties
	d.mu.Lock()
	seen := d.seenFP
	d.mu.Unlock()
	if st.RootFingerprint == seen {
		return
	}
	// Only kmsDutiesOnce writes seenFP, so the snapshot runs without the lock
	// (Health reads it).
	if seen != "" || n.LastSnapshotIndex() != 0 {
		if err := n.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			n.logger.Warn("snapshot after root key re-wrap failed; will retry", "error", err)
			return
		}
		n.logger.Info("took a snapshot after a root key change", "root_key", st.RootFingerprint)
	}
	d.mu.Lock()
	d.seenFP = st.RootFingerprint
	d.mu.Unlock()
}

// rewrapPersisted reports whether the state's root fingerprint is known to
// be in this node's latest snapshot (or no snapshot needs it).
func (n *Node) rewrapPersisted(st *fsm.State) bool {
	d := &n.kmsDuties
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seenFP == "" || d.seenFP == st.RootFingerprint
}

// kmsWarnings are the health warnings of the KMS: secrets bound to keys that
// are not enabled, and key material still wrapped by an older root key.
func (n *Node) kmsWarnings(st *fsm.State) []string {
	var w []string
	if c := st.InactiveBound(); c > 0 {
		w = append(w, fmt.Sprintf("%d secrets are bound to keys that are not enabled (list them with `coffer secret list --inactive-key --recursive`)", c))
	}
	old := 0
	root := n.keys.Root()
	st.Keys.Root().Walk(func(_ []byte, k *fsm.Key) bool {
		for _, v := range k.Versions {
			if v.Wrapped != nil && !root.WrappedByNewest(v.Wrapped) {
				old++
			}
		}
		return false
	})
	if old > 0 {
		w = append(w, fmt.Sprintf("%d KMS key versions are wrapped by an older root key: run `coffer operator rewrap` before removing it from --root-key-file", old))
	} else if !n.rewrapPersisted(st) {
		w = append(w, "the root key re-wrap is not yet in this node's snapshot: keep the old root key in --root-key-file until this warning clears")
	}
	return w
}

// RewrapRootKey re-wraps every key version's material under the newest root
// key of this node, as one command, and returns the command to submit and
// the number of versions re-wrapped. Destroyed versions stay erased.
func (n *Node) RewrapRootKey(st *fsm.State) (*fsm.RewrapRootKey, int, error) {
	root := n.keys.Root()
	cmd := &fsm.RewrapRootKey{Fingerprint: root.Fingerprint()}
	count := 0
	var err error
	st.Keys.Root().Walk(func(_ []byte, k *fsm.Key) bool {
		rk := fsm.RewrappedKey{Name: k.Name, Wrapped: make([][]byte, len(k.Versions))}
		for i, v := range k.Versions {
			if v.Wrapped == nil {
				continue
			}
			var material []byte
			material, err = root.UnwrapKeyMaterial(k.Name, v.Version, v.Wrapped)
			if err != nil {
				err = errs.New(errs.FailedPrecondition, "kms key %q version %d can't be unwrapped by this node's root keys (it is wrapped by root key %s): %s",
					k.Name, v.Version, kms.WrappingFingerprint(v.Wrapped), loadedKeys(root))
				return true
			}
			rk.Wrapped[i], err = root.WrapKeyMaterial(k.Name, v.Version, material)
			clear(material)
			if err != nil {
				return true
			}
			count++
		}
		cmd.Keys = append(cmd.Keys, rk)
		return false
	})
	if err != nil {
		return nil, 0, err
	}
	return cmd, count, nil
}

// checkKeyMaterial verifies that the root keys unwrap every key version's
// material in st, and says precisely which root key is missing otherwise.
// what names the state in the message ("this data dir's").
func (n *Node) checkKeyMaterial(st *fsm.State, what string) error {
	root := n.keys.Root()
	var err error
	st.Keys.Root().Walk(func(_ []byte, k *fsm.Key) bool {
		for _, v := range k.Versions {
			if v.Wrapped == nil {
				continue
			}
			m, uerr := root.UnwrapKeyMaterial(k.Name, v.Version, v.Wrapped)
			clear(m)
			if uerr != nil {
				err = fmt.Errorf("the root key file can't unwrap %s key material: kms key %q version %d is wrapped by root key %s, but --root-key-file holds %s. "+
					"Use this cluster's root key file; after a root key rotation keep the old key in the file (newest last) until `coffer operator rewrap` has run "+
					"and /v1/sys/health on every node shows no root key warning",
					what, k.Name, v.Version, kms.WrappingFingerprint(v.Wrapped), loadedKeys(root))
				return true
			}
		}
		return false
	})
	return err
}

func loadedKeys(root *kms.RootKeys) string {
	fps := root.Fingerprints()
	if len(fps) == 1 {
		return "only root key " + fps[0]
	}
	return "root keys " + strings.Join(fps, ", ") + " (newest last)"
}

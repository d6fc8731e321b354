package fsm

import (
	"bytes"

	"github.com/cofferhq/coffer/errs"
)

// RestoreState replaces the cluster's data with a snapshot's. It travels
// through the log like any change, so every node swaps its state at the same
// index, and the audit chain goes on from its current head (the restore is
// itself audited) instead of rewinding to the snapshot's.
type RestoreState struct {
	State []byte `msgpack:"s"` // a state stream (WriteState)
}

// restoreState keeps the cluster's identity (id, root fingerprint) and audit
// head; secrets, keys, tokens and policies come from the snapshot.
func (t *txn) restoreState(c *RestoreState) Result {
	st, err := ReadState(bytes.NewReader(c.State))
	if err != nil {
		return Result{Err: errs.New(errs.InvalidArgument, "snapshot state is corrupt: %v", err)}
	}
	// The receiving node validated it too; checking again here keeps a
	// state no command can work with out of the log whatever sent it.
	if err := ValidateState(st); err != nil {
		return Result{Err: errs.New(errs.InvalidArgument, "snapshot state is invalid: %v", err)}
	}
	t.secrets, t.keys, t.tokens, t.hashes = st.Secrets.clone(), st.Keys.Txn(), st.Tokens.Txn(), st.TokenHashes.Txn()
	t.pols = st.Policies.Txn()
	t.meta.VersionCount = st.VersionCount
	t.meta.Initialized = t.meta.Initialized || st.Initialized
	return Result{}
}

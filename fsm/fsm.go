package fsm

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cofferhq/coffer/acl"
	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/audit"
	"github.com/cofferhq/coffer/errs"
	"github.com/hashicorp/go-hclog"
	iradix "github.com/hashicorp/go-immutable-radix/v2"
	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"
)

// FSM implements raft.FSM over Coffer's state.
type FSM struct {
	state   atomic.Pointer[State]
	store   audit.Store
	onAudit func([]apitypes.AuditEntry)
	logger  hclog.Logger

	applyMu sync.Mutex // serializes Apply and Restore

	// applied counts the commands applied since start; snapshotAt is its
	// value when the state was last captured or restored (a restarted node
	// replays what came after, so the node snapshots by this, see node).
	applied    atomic.Uint64
	snapshotAt atomic.Uint64

	// auditErr is the last error of the local audit store, nil once an
	// append succeeds again: the replicated trail (the Raft log) is intact,
	// but this node's queries and verification miss what it failed to store.
	auditErr atomic.Pointer[string]

	waitMu sync.Mutex
	waitCh chan struct{} // closed and replaced whenever the index advances
}

// New returns an FSM that appends audit entries to store and hands every
// committed entry to onAudit (the audit file sink; may be nil).
func New(store audit.Store, onAudit func([]apitypes.AuditEntry), logger hclog.Logger) *FSM {
	f := &FSM{store: store, onAudit: onAudit, logger: logger.Named("fsm"), waitCh: make(chan struct{})}
	f.state.Store(emptyState())
	return f
}

// State returns the current state; it is immutable and safe to read
// without locks.
func (f *FSM) State() *State { return f.state.Load() }

// CommandsSinceSnapshot is how many commands were applied since the state
// was last captured for a snapshot or restored from one: what a restart
// would replay.
func (f *FSM) CommandsSinceSnapshot() uint64 { return f.applied.Load() - f.snapshotAt.Load() }

// AuditStoreError is the local audit store's last append error ("" while
// it works).
func (f *FSM) AuditStoreError() string {
	if e := f.auditErr.Load(); e != nil {
		return *e
	}
	return ""
}

// AuditStore returns the node-local audit store.
func (f *FSM) AuditStore() audit.Store { return f.store }

// WaitIndex blocks until the state has applied at least index, or ctx ends.
func (f *FSM) WaitIndex(ctx context.Context, index uint64) error {
	for {
		f.waitMu.Lock()
		ch := f.waitCh
		f.waitMu.Unlock()
		if f.State().Index >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *FSM) publish(st *State) {
	f.state.Store(st)
	f.waitMu.Lock()
	close(f.waitCh)
	f.waitCh = make(chan struct{})
	f.waitMu.Unlock()
}

// Apply applies one committed log entry and returns []Result, one per
// command. A malformed entry is a bug and panics: a node must crash rather
// than diverge.
func (f *FSM) Apply(l *raft.Log) any {
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	if len(l.Data) > 0 && l.Data[0]&skippable != 0 && l.Data[0] != EntryBatch {
		f.logger.Warn("skipping unknown optional log entry", "type", l.Data[0], "index", l.Index)
		f.bumpIndex(l.Index)
		return nil
	}
	b, err := DecodeBatch(l.Data)
	if err != nil {
		panic(fmt.Sprintf("fsm: log entry %d: %v", l.Index, err))
	}
	f.applied.Add(uint64(len(b.Cmds)))
	tx := newTxn(f.State(), b.Time)
	n := 0
	for i := range b.Cmds {
		n += len(b.Cmds[i].Audit)
	}
	tx.entries = make([]apitypes.AuditEntry, 0, n)
	results := make([]Result, len(b.Cmds))
	for i := range b.Cmds {
		results[i] = tx.applyEnvelope(&b.Cmds[i])
		results[i].Index = l.Index
	}
	st := tx.commit(l.Index)
	if len(tx.entries) > 0 {
		if err := f.store.Append(tx.entries); err != nil {
			f.logger.Error("audit store append failed", "index", l.Index, "error", err)
			msg := fmt.Sprintf("entry %d: %v", l.Index, err)
			f.auditErr.Store(&msg)
		} else if f.auditErr.Load() != nil {
			f.auditErr.Store(nil)
		}
		if f.onAudit != nil {
			f.onAudit(tx.entries)
		}
	}
	f.publish(st)
	return results
}

func (f *FSM) bumpIndex(index uint64) {
	st := *f.State()
	st.Index = index
	f.publish(&st)
}

// txn accumulates one log entry's changes over immutable trees.
type txn struct {
	base    *State
	now     int64
	secrets *SecretTree // a clone of the base state's
	keys    *iradix.Txn[*Key]
	tokens  *iradix.Txn[*Token]
	hashes  *iradix.Txn[string]
	pols    *iradix.Txn[*acl.Policy]
	meta    State     // scalar fields (cluster id, head, counters)
	cur     *Envelope // the command being applied
	entries []apitypes.AuditEntry
}

func newTxn(base *State, now int64) *txn {
	return &txn{
		base: base, now: now,
		secrets: base.Secrets.clone(), keys: base.Keys.Txn(), tokens: base.Tokens.Txn(), hashes: base.TokenHashes.Txn(),
		pols: base.Policies.Txn(), meta: *base,
	}
}

func (t *txn) commit(index uint64) *State {
	st := t.meta
	st.Index = index
	st.Secrets = t.secrets
	st.Keys = t.keys.CommitOnly()
	st.Tokens = t.tokens.CommitOnly()
	st.TokenHashes = t.hashes.CommitOnly()
	st.Policies = t.pols.CommitOnly()
	return &st
}

func (t *txn) applyEnvelope(env *Envelope) Result {
	t.cur = env
	res := Result{Err: t.authorize(env)}
	if res.Err == nil {
		res = t.dispatch(env)
	}
	t.audit(env, &res)
	return res
}

func (t *txn) dispatch(env *Envelope) Result {
	switch env.Type {
	case CmdInitCluster:
		return run(env, t.initCluster)
	case CmdInitRoot:
		return run(env, t.initRoot)
	case CmdCreateSecret:
		return run(env, t.createSecret)
	case CmdPutValue:
		return run(env, t.putValue)
	case CmdUpdateSecret:
		return run(env, t.updateSecret)
	case CmdDestroyVersion:
		return run(env, t.destroyVersion)
	case CmdDeleteSecret:
		return run(env, t.deleteSecret)
	case CmdAuditOnly:
		return Result{}
	case CmdCreateToken:
		return run(env, t.createToken)
	case CmdRevokeToken:
		return run(env, t.revokeToken)
	case CmdPutPolicy:
		return run(env, t.putPolicy)
	case CmdDeletePolicy:
		return run(env, t.deletePolicy)
	case CmdRestoreState:
		return run(env, t.restoreState)
	case CmdCreateKey:
		return run(env, t.createKey)
	case CmdRotateKey:
		return run(env, t.rotateKey)
	case CmdDisableKey:
		return run(env, t.disableKey)
	case CmdEnableKey:
		return run(env, t.enableKey)
	case CmdScheduleKeyDeletion:
		return run(env, t.scheduleKeyDeletion)
	case CmdCancelKeyDeletion:
		return run(env, t.cancelKeyDeletion)
	case CmdDestroyKey:
		return run(env, t.destroyKey)
	case CmdRebindSecretKey:
		return run(env, t.rebindSecretKey)
	case CmdRewrapRootKey:
		return run(env, t.rewrapRootKey)
	}
	panic(fmt.Sprintf("fsm: unknown command type %d", env.Type))
}

// run decodes the body into C and calls fn.
func run[C any](env *Envelope, fn func(*C) Result) Result {
	var c C
	if err := msgpack.Unmarshal(env.Body, &c); err != nil {
		panic(fmt.Sprintf("fsm: decode command %d: %v", env.Type, err))
	}
	return fn(&c)
}

// audit completes the command's audit entries with the outcome and chains
// them. AuditOnly entries keep the result their node recorded.
func (t *txn) audit(env *Envelope, res *Result) {
	for _, e := range env.Audit {
		e.Time = FromNanos(t.now)
		if env.Type != CmdAuditOnly || res.Err != nil {
			switch {
			case res.Err == nil:
				e.Result = apitypes.ResultOK
			case res.Err.Code == errs.PermissionDenied:
				e.Result, e.ErrorCode, e.Reason = apitypes.ResultDenied, string(res.Err.Code), res.Err.Message
			default:
				e.Result, e.ErrorCode = apitypes.ResultError, string(res.Err.Code)
			}
			if e.Version == 0 && e.Path != "" {
				e.Version = res.Version
			}
		}
		t.meta.AuditHead = t.meta.AuditHead.Append(&e)
		t.entries = append(t.entries, e)
	}
}

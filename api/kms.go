package api

import (
	"context"
	"encoding/json"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/fsm"
	"github.com/cofferhq/coffer/kms"
)

// Audit events of the KMS actions (SPEC §2 "KMS": kms.<action> in snake
// case). kms.destroy_key is the leader's (node/keytimer.go).
const (
	evCreateKey      = "kms.create_key"
	evDescribeKey    = "kms.describe_key"
	evListKeys       = "kms.list_keys"
	evRotateKey      = "kms.rotate_key"
	evDisableKey     = "kms.disable_key"
	evEnableKey      = "kms.enable_key"
	evScheduleDelete = "kms.schedule_key_deletion"
	evCancelDelete   = "kms.cancel_key_deletion"
	evListBindings   = "kms.list_key_bindings"
	evRebindKey      = "secrets.rebind_key"
	evRewrap         = "sys.rewrap"
)

func checkKeyName(field, name string) error {
	if err := apitypes.ValidateKeyName(name); err != nil {
		return invalid("%s: %v", field, err)
	}
	return nil
}

// keyEntry is an audit entry of a KMS action on key name.
func (s *Server) keyEntry(rc *reqCtx, event, name string, version uint32) apitypes.AuditEntry {
	e := s.entry(rc, event, "")
	e.KMSKey, e.KMSKeyVersion = name, version
	return e
}

// failedKey audits a KMS action that failed before its command was
// submitted (like failed, with the key named) and returns err.
func (s *Server) failedKey(ctx context.Context, rc *reqCtx, event, name string, err error) error {
	e := s.keyEntry(rc, event, name, 0)
	e.Result, e.ErrorCode = apitypes.ResultError, string(errs.CodeOf(err))
	if aerr := s.auditNow(ctx, rc, e); aerr != nil && errs.CodeOf(err) != errs.Unavailable {
		return aerr
	}
	return err
}

// writeState is the state a write that depends on exact key or version
// numbers is prepared from: the leader's, so that a lagging follower does not
// prepare a change that Apply must refuse. It falls back to the local state.
func (s *Server) writeState(ctx context.Context) *fsm.State {
	if st, err := s.n.ReadState(ctx, apitypes.ReadOptions{Consistency: apitypes.ConsistencyLeader}); err == nil {
		return st
	}
	return s.n.State()
}

func notEnabled(k *fsm.Key) error {
	return errs.New(errs.FailedPrecondition, "kms key %q is %s", k.Name, k.State)
}

// keyMaterial unwraps a key version's material on this node.
func (s *Server) keyMaterial(k *fsm.Key, version uint32) ([]byte, error) {
	kv := k.KeyVersion(version)
	if kv == nil || kv.Wrapped == nil {
		return nil, errs.New(errs.FailedPrecondition, "kms key %q version %d is destroyed", k.Name, version)
	}
	m, err := s.n.Keys().Get(k.Name, kv.Version, kv.Wrapped)
	if err != nil {
		return nil, errs.New(errs.Internal, "kms key %q version %d can't be unwrapped by this node's root key", k.Name, kv.Version)
	}
	return m, nil
}

// newWrappedMaterial generates key material for version of key name and
// returns it wrapped by this node's newest root key; the plaintext never
// leaves this function.
func (s *Server) newWrappedMaterial(name string, version uint32) ([]byte, error) {
	material, err := kms.NewKeyMaterial()
	if err != nil {
		return nil, errs.New(errs.Internal, "%v", err)
	}
	defer clear(material)
	wrapped, err := s.n.Keys().Root().WrapKeyMaterial(name, version, material)
	if err != nil {
		return nil, errs.New(errs.Internal, "wrap key material: %v", err)
	}
	return wrapped, nil
}

// settle waits (briefly) until this node has applied a change it just
// committed, so that the caller's next request to the same node sees it: a
// secret created right after its key, a write right after a disable.
func (s *Server) settle(ctx context.Context, index uint64) {
	_ = s.n.WaitApplied(ctx, index) // best effort: the change is committed either way
}

func keyAnswer(res fsm.Result) *apitypes.KeyResponse {
	out := &apitypes.KeyResponse{Index: res.Index}
	if res.Key != nil {
		out.Key = *res.Key
	}
	return out
}

func (s *Server) createKey(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.CreateKeyRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	if err := checkKeyName("name", req.Name); err != nil {
		return nil, err
	}
	if len(req.Description) > apitypes.MaxDescription {
		return nil, invalid("description is %d bytes, at most %d allowed", len(req.Description), apitypes.MaxDescription)
	}
	st := s.n.State()
	if err := s.authorize(ctx, rc, st, evCreateKey, "", nil); err != nil {
		return nil, err
	}
	if _, ok := st.Key(req.Name); ok {
		return nil, s.failedKey(ctx, rc, evCreateKey, req.Name, errs.New(errs.AlreadyExists, "kms key %q already exists", req.Name))
	}
	wrapped, err := s.newWrappedMaterial(req.Name, 1)
	if err != nil {
		return nil, s.failedKey(ctx, rc, evCreateKey, req.Name, err)
	}
	cmd := &fsm.CreateKey{Name: req.Name, Description: req.Description, Wrapped: wrapped}
	res, err := s.submit(ctx, rc, fsm.CmdCreateKey, cmd, s.keyEntry(rc, evCreateKey, req.Name, 1))
	if err != nil {
		return nil, err
	}
	s.settle(ctx, res.Index)
	return keyAnswer(res), nil
}

func (s *Server) describeKey(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.DescribeKeyRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	if err := checkKeyName("name", req.Name); err != nil {
		return nil, err
	}
	st, err := s.n.ReadState(ctx, req.ReadOptions)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, rc, st, evDescribeKey, "", nil); err != nil {
		return nil, err
	}
	k, ok := st.Key(req.Name)
	if !ok {
		return nil, s.failedKey(ctx, rc, evDescribeKey, req.Name, errs.New(errs.NotFound, "kms key %q not found", req.Name))
	}
	e := s.keyEntry(rc, evDescribeKey, req.Name, 0)
	e.Result = apitypes.ResultOK
	if err := s.auditNow(ctx, rc, e); err != nil {
		return nil, err
	}
	return &apitypes.DescribeKeyResponse{Key: k.Meta(), Index: st.Index}, nil
}

func (s *Server) listKeys(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.ListKeysRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	st, err := s.n.ReadState(ctx, req.ReadOptions)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, rc, st, evListKeys, "", nil); err != nil {
		return nil, err
	}
	if err := s.auditNow(ctx, rc, s.ok(rc, evListKeys, "")); err != nil {
		return nil, err
	}
	resp := &apitypes.ListKeysResponse{Keys: []apitypes.Key{}, Index: st.Index}
	st.Keys.Root().Walk(func(_ []byte, k *fsm.Key) bool {
		resp.Keys = append(resp.Keys, k.Meta())
		return false
	})
	return resp, nil
}

func (s *Server) rotateKey(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.RotateKeyRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	if err := checkKeyName("name", req.Name); err != nil {
		return nil, err
	}
	st := s.writeState(ctx)
	if err := s.authorize(ctx, rc, st, evRotateKey, "", nil); err != nil {
		return nil, err
	}
	k, ok := st.Key(req.Name)
	if !ok {
		return nil, s.failedKey(ctx, rc, evRotateKey, req.Name, errs.New(errs.NotFound, "kms key %q not found", req.Name))
	}
	if k.State != fsm.KeyEnabled {
		return nil, s.failedKey(ctx, rc, evRotateKey, req.Name, notEnabled(k))
	}
	next := uint32(len(k.Versions)) + 1
	wrapped, err := s.newWrappedMaterial(k.Name, next)
	if err != nil {
		return nil, s.failedKey(ctx, rc, evRotateKey, req.Name, err)
	}
	cmd := &fsm.RotateKey{Name: k.Name, Version: next, Wrapped: wrapped}
	res, err := s.submit(ctx, rc, fsm.CmdRotateKey, cmd, s.keyEntry(rc, evRotateKey, k.Name, next))
	if err != nil {
		return nil, err
	}
	s.settle(ctx, res.Index)
	return keyAnswer(res), nil
}

// keyStateChange runs a key action whose command carries only the name.
func (s *Server) keyStateChange(ctx context.Context, rc *reqCtx, raw []byte, event string, t fsm.CmdType, mk func(string) any) (any, error) {
	var req struct {
		Name string `json:"name"`
	}
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	if err := checkKeyName("name", req.Name); err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, rc, s.n.State(), event, "", nil); err != nil {
		return nil, err
	}
	res, err := s.submit(ctx, rc, t, mk(req.Name), s.keyEntry(rc, event, req.Name, 0))
	if err != nil {
		return nil, err
	}
	s.settle(ctx, res.Index)
	return keyAnswer(res), nil
}

func (s *Server) disableKey(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	return s.keyStateChange(ctx, rc, raw, evDisableKey, fsm.CmdDisableKey, func(n string) any { return &fsm.DisableKey{Name: n} })
}

func (s *Server) enableKey(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	return s.keyStateChange(ctx, rc, raw, evEnableKey, fsm.CmdEnableKey, func(n string) any { return &fsm.EnableKey{Name: n} })
}

func (s *Server) cancelKeyDeletion(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	return s.keyStateChange(ctx, rc, raw, evCancelDelete, fsm.CmdCancelKeyDeletion, func(n string) any { return &fsm.CancelKeyDeletion{Name: n} })
}

func (s *Server) scheduleKeyDeletion(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.ScheduleKeyDeletionRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	if err := checkKeyName("name", req.Name); err != nil {
		return nil, err
	}
	if req.PendingDays < apitypes.MinPendingDays || req.PendingDays > apitypes.MaxPendingDays {
		return nil, invalid("pending_days must be %d-%d", apitypes.MinPendingDays, apitypes.MaxPendingDays)
	}
	if err := s.authorize(ctx, rc, s.n.State(), evScheduleDelete, "", nil); err != nil {
		return nil, err
	}
	// Apply decides on the bound-secret count: it is exact only there.
	cmd := &fsm.ScheduleKeyDeletion{Name: req.Name, PendingDays: req.PendingDays, Force: req.Force}
	res, err := s.submit(ctx, rc, fsm.CmdScheduleKeyDeletion, cmd, s.keyEntry(rc, evScheduleDelete, req.Name, 0))
	if err != nil {
		return nil, err
	}
	s.settle(ctx, res.Index)
	return keyAnswer(res), nil
}

func (s *Server) listKeyBindings(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.ListKeyBindingsRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	if err := checkKeyName("name", req.Name); err != nil {
		return nil, err
	}
	// page_size absent means the default; an explicit 0 is an error (as in
	// listSecrets).
	var given struct {
		PageSize *int `json:"page_size"`
	}
	_ = json.Unmarshal(raw, &given)
	if given.PageSize == nil {
		req.PageSize = apitypes.DefaultPageSize
	}
	if req.PageSize < 1 || req.PageSize > apitypes.MaxPageSize {
		return nil, invalid("page_size must be 1-%d", apitypes.MaxPageSize)
	}
	st, err := s.n.ReadState(ctx, req.ReadOptions)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, rc, st, evListBindings, "", nil); err != nil {
		return nil, err
	}
	if _, ok := st.Key(req.Name); !ok {
		return nil, s.failedKey(ctx, rc, evListBindings, req.Name, errs.New(errs.NotFound, "kms key %q not found", req.Name))
	}
	paths, next, err := st.KeyBindings(req.Name, req.PageSize, req.PageToken)
	if err != nil {
		return nil, s.failedKey(ctx, rc, evListBindings, req.Name, err)
	}
	e := s.keyEntry(rc, evListBindings, req.Name, 0)
	e.Result = apitypes.ResultOK
	if err := s.auditNow(ctx, rc, e); err != nil {
		return nil, err
	}
	return &apitypes.ListKeyBindingsResponse{Paths: paths, NextPageToken: next, Index: st.Index}, nil
}

// rebindSecretKey re-wraps every enabled version's data key under the
// target key's current version, on this node: each DEK is unwrapped and
// wrapped again in memory; no value is decrypted.
func (s *Server) rebindSecretKey(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.RebindSecretKeyRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	if err := checkPath(req.Path); err != nil {
		return nil, err
	}
	if err := checkKeyName("kms_key", req.KMSKey); err != nil {
		return nil, err
	}
	st := s.writeState(ctx)
	sec, ok := st.Secret(req.Path)
	if err := s.authorize(ctx, rc, st, evRebindKey, req.Path, sec); err != nil {
		return nil, err
	}
	fail := func(err error) (any, error) {
		e := s.entry(rc, evRebindKey, req.Path)
		e.KMSKey = req.KMSKey
		e.Result, e.ErrorCode = apitypes.ResultError, string(errs.CodeOf(err))
		if aerr := s.auditNow(ctx, rc, e); aerr != nil && errs.CodeOf(err) != errs.Unavailable {
			return nil, aerr
		}
		return nil, err
	}
	if !ok {
		return fail(errs.New(errs.NotFound, "secret %s not found", req.Path))
	}
	usable := func(name string) (*fsm.Key, error) {
		k, ok := st.Key(name)
		if !ok {
			return nil, errs.New(errs.NotFound, "kms key %q not found", name)
		}
		if k.State != fsm.KeyEnabled {
			return nil, notEnabled(k)
		}
		return k, nil
	}
	from, err := usable(sec.KMSKey)
	if err != nil {
		return fail(err)
	}
	to, err := usable(req.KMSKey)
	if err != nil {
		return fail(err)
	}
	toVer := to.Current().Version
	cmd, err := s.rewrapDEKs(st, sec, to, toVer)
	if err != nil {
		return fail(err)
	}
	cmd.FromKey = from.Name

	rebind := s.entry(rc, evRebindKey, req.Path)
	rebind.KMSKey, rebind.KMSKeyVersion = to.Name, toVer
	dec := s.entry(rc, evDecrypt, req.Path)
	dec.KMSKey = from.Name
	enc := s.entry(rc, evEncrypt, req.Path)
	enc.KMSKey, enc.KMSKeyVersion = to.Name, toVer
	res, err := s.submit(ctx, rc, fsm.CmdRebindSecretKey, cmd, rebind, dec, enc)
	if err != nil {
		return nil, err
	}
	s.settle(ctx, res.Index)
	return &apitypes.RebindSecretKeyResponse{Secret: *res.Secret, Index: res.Index}, nil
}

// rewrapDEKs builds the rebind command: every enabled version's DEK moved
// from the key version it is wrapped under to to's version toVer.
func (s *Server) rewrapDEKs(st *fsm.State, sec *fsm.Secret, to *fsm.Key, toVer uint32) (*fsm.RebindSecretKey, error) {
	newMat, err := s.keyMaterial(to, toVer)
	if err != nil {
		return nil, err
	}
	defer clear(newMat)
	type kv struct {
		name string
		ver  uint32
	}
	old := map[kv][]byte{}
	defer func() {
		for _, m := range old {
			clear(m)
		}
	}()
	aad := secretAAD(sec.UID, sec.Path)
	cmd := &fsm.RebindSecretKey{Path: sec.Path, UID: sec.UID, ToKey: to.Name, ToKeyVersion: toVer}
	for _, v := range sec.Versions {
		if v.Destroyed {
			continue
		}
		id := kv{v.KMSKey, v.KMSKeyVersion}
		m, ok := old[id]
		if !ok {
			k, found := st.Key(v.KMSKey)
			if !found {
				return nil, errs.New(errs.FailedPrecondition, "kms key %q no longer exists", v.KMSKey)
			}
			if k.State != fsm.KeyEnabled {
				return nil, notEnabled(k)
			}
			if m, err = s.keyMaterial(k, v.KMSKeyVersion); err != nil {
				return nil, err
			}
			old[id] = m
		}
		dek, err := kms.RewrapDEK(m, newMat, aad, v.WrappedDEK)
		if err != nil {
			return nil, errs.New(errs.Internal, "version %d of %s failed its integrity check", v.Version, sec.Path)
		}
		cmd.Versions = append(cmd.Versions, fsm.RewrappedDEK{
			Version: v.Version, FromKey: v.KMSKey, FromKeyVersion: v.KMSKeyVersion, WrappedDEK: dek,
		})
	}
	return cmd, nil
}

// rewrap (POST /v1/sys/rewrap, admin) re-wraps all key material under this
// node's newest root key in one committed change; afterwards older root keys
// can be removed from --root-key-file.
func (s *Server) rewrap(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.RewrapRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	st := s.writeState(ctx)
	if err := s.authorize(ctx, rc, st, evRewrap, "", nil); err != nil {
		return nil, err
	}
	cmd, count, err := s.n.RewrapRootKey(st)
	if err != nil {
		return nil, s.failed(ctx, rc, evRewrap, "", err)
	}
	res, err := s.submit(ctx, rc, fsm.CmdRewrapRootKey, cmd, s.entry(rc, evRewrap, ""))
	if err != nil {
		return nil, err
	}
	s.settle(ctx, res.Index)
	return &apitypes.RewrapResponse{RootKeyFingerprint: cmd.Fingerprint, Rewrapped: count, Index: res.Index}, nil
}

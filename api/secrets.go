package api

import (
	"context"

	"github.com/cofferhq/coffer/acl"
	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/fsm"
	"github.com/cofferhq/coffer/node"
)

// Audit event names of the secret actions (SPEC §2).
const (
	evCreate      = "secrets.create"
	evDescribe    = "secrets.describe"
	evList        = "secrets.list"
	evGetValue    = "secrets.get_value"
	evPutValue    = "secrets.put_value"
	evGenerate    = "secrets.generate"
	evUpdate      = "secrets.update"
	evDestroy     = "secrets.destroy_version"
	evDelete      = "secrets.delete"
	evEncrypt     = "kms.encrypt"
	evDecrypt     = "kms.decrypt"
	defaultKMSKey = "default"
)

// secretAAD binds a value's ciphertext to its secret: a ciphertext moved to
// another secret, or to a re-created path, does not open.
func secretAAD(uid, path string) []byte { return []byte("coffer-secret\x00" + uid + "\x00" + path) }

func invalid(format string, args ...any) error {
	return errs.New(errs.InvalidArgument, format, args...)
}

func checkPath(p string) error {
	if err := apitypes.ValidatePath(p); err != nil {
		return invalid("%v", err)
	}
	return nil
}

func checkValue(v []byte) error {
	switch {
	case v == nil || len(v) == 0:
		return invalid("value is required (1 byte to 64 KiB, base64)")
	case len(v) > apitypes.MaxValueBytes:
		return errs.New(errs.TooLarge, "value is %d bytes, at most %d allowed", len(v), apitypes.MaxValueBytes)
	}
	return nil
}

func checkMeta(description *string, labels map[string]string, ap *apitypes.AccessPolicy) error {
	if description != nil && len(*description) > apitypes.MaxDescription {
		return invalid("description is %d bytes, at most %d allowed", len(*description), apitypes.MaxDescription)
	}
	if err := apitypes.ValidateLabels(labels); err != nil {
		return invalid("%v", err)
	}
	if ap != nil {
		if err := acl.ValidateAccessPolicy(ap); err != nil {
			return invalid("access_policy: %v", err)
		}
	}
	return nil
}

// lookupForWrite finds a secret in the local state; if it is absent, the
// node catches up with the leader once (the secret may have just been
// created through another node).
func (s *Server) lookupForWrite(ctx context.Context, path string) (*fsm.State, *fsm.Secret, bool) {
	st := s.n.State()
	if sec, ok := st.Secret(path); ok {
		return st, sec, true
	}
	if st2, err := s.n.ReadState(ctx, apitypes.ReadOptions{Consistency: apitypes.ConsistencyLeader}); err == nil {
		st = st2
	}
	sec, ok := st.Secret(path)
	return st, sec, ok
}

// seal encrypts a value on this node under the key's current version.
func (s *Server) seal(st *fsm.State, keyName, uid, path string, value []byte) (*fsm.SealedValue, error) {
	k, ok := st.Key(keyName)
	if !ok {
		return nil, errs.New(errs.NotFound, "kms key %q not found", keyName)
	}
	if k.State != fsm.KeyEnabled {
		return nil, errs.New(errs.FailedPrecondition, "kms key %q is %s", keyName, k.State)
	}
	kv := k.Current()
	kek, err := s.n.Keys().KEK(k.Name, kv.Version, kv.Wrapped)
	if err != nil {
		return nil, errs.New(errs.Internal, "kms key %q version %d can't be unwrapped by this node's root key", k.Name, kv.Version)
	}
	ct, dek, err := kek.Seal(secretAAD(uid, path), value)
	if err != nil {
		return nil, errs.New(errs.Internal, "encrypt value: %v", err)
	}
	return &fsm.SealedValue{Ciphertext: ct, WrappedDEK: dek, Size: len(value), KMSKey: k.Name, KMSKeyVersion: kv.Version}, nil
}

// submit proposes a command carrying this request's audit entries and
// returns its result; a domain error becomes err.
func (s *Server) submit(ctx context.Context, rc *reqCtx, t fsm.CmdType, body any, entries ...apitypes.AuditEntry) (fsm.Result, error) {
	env, err := fsm.NewEnvelope(t, body, rc.caller(), entries)
	if err != nil {
		return fsm.Result{}, err
	}
	// Apply re-checks the caller's authorization for the request's action
	// on the path of its first audit entry (the secret it acts on).
	env.Action = rc.action
	if len(entries) > 0 {
		env.Path = entries[0].Path
	}
	if rc.source.IsValid() {
		env.Source = rc.source.String()
	}
	res, err := s.n.Propose(ctx, env)
	if err != nil {
		return res, err
	}
	rc.audited = true // committed, with its entries (whatever the outcome)
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}

func (s *Server) encryptEntries(rc *reqCtx, event, path string, sv *fsm.SealedValue) []apitypes.AuditEntry {
	put := s.entry(rc, event, path)
	put.KMSKey, put.KMSKeyVersion = sv.KMSKey, sv.KMSKeyVersion
	enc := put
	enc.Action = evEncrypt
	return []apitypes.AuditEntry{put, enc}
}

func (s *Server) createSecret(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.CreateSecretRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	defer clear(req.Value)
	if err := checkPath(req.Path); err != nil {
		return nil, err
	}
	if req.KMSKey == "" {
		req.KMSKey = defaultKMSKey
	} else if err := apitypes.ValidateKeyName(req.KMSKey); err != nil {
		return nil, invalid("kms_key: %v", err)
	}
	if err := checkMeta(&req.Description, req.Labels, req.AccessPolicy); err != nil {
		return nil, err
	}
	if req.Value != nil {
		if err := checkValue(req.Value); err != nil {
			return nil, err
		}
	}
	st := s.n.State()
	if err := s.authorize(ctx, rc, st, evCreate, req.Path, nil); err != nil {
		return nil, err
	}
	cmd := &fsm.CreateSecret{
		Path: req.Path, UID: node.RandomID(), KMSKey: req.KMSKey, Description: req.Description,
		Labels: req.Labels, AccessPolicy: req.AccessPolicy, CreatedBy: rc.principal.Accessor,
	}
	entries := []apitypes.AuditEntry{s.entry(rc, evCreate, req.Path)}
	entries[0].KMSKey = req.KMSKey
	if req.Value != nil {
		sv, err := s.seal(st, req.KMSKey, cmd.UID, req.Path, req.Value)
		if err != nil {
			return nil, s.failed(ctx, rc, evCreate, req.Path, err)
		}
		cmd.Value = sv
		entries = append(entries, s.encryptEntries(rc, evPutValue, req.Path, sv)...)
	}
	res, err := s.submit(ctx, rc, fsm.CmdCreateSecret, cmd, entries...)
	if err != nil {
		return nil, err
	}
	return &apitypes.CreateSecretResponse{Secret: *res.Secret, Version: res.Version, Index: res.Index}, nil
}

func (s *Server) putSecretValue(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.PutSecretValueRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	defer clear(req.Value)
	if err := checkPath(req.Path); err != nil {
		return nil, err
	}
	if err := checkValue(req.Value); err != nil {
		return nil, err
	}
	st, sec, ok := s.lookupForWrite(ctx, req.Path)
	if err := s.authorize(ctx, rc, st, evPutValue, req.Path, sec); err != nil {
		return nil, err
	}
	if !ok {
		return nil, s.failed(ctx, rc, evPutValue, req.Path, errs.New(errs.NotFound, "secret %s not found", req.Path))
	}
	sv, err := s.seal(st, sec.KMSKey, sec.UID, req.Path, req.Value)
	if err != nil {
		return nil, s.failed(ctx, rc, evPutValue, req.Path, err)
	}
	cmd := &fsm.PutValue{Path: req.Path, UID: sec.UID, ExpectedVersion: req.ExpectedVersion, Value: *sv, Origin: apitypes.OriginPut, CreatedBy: rc.principal.Accessor}
	res, err := s.submit(ctx, rc, fsm.CmdPutValue, cmd, s.encryptEntries(rc, evPutValue, req.Path, sv)...)
	if err != nil {
		return nil, err
	}
	return &apitypes.PutSecretValueResponse{Version: res.Version, Index: res.Index}, nil
}

func (s *Server) generateSecret(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.GenerateSecretRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	if err := checkPath(req.Path); err != nil {
		return nil, err
	}
	if !present(raw, "length") {
		req.Length = apitypes.DefaultGenLength
	}
	if req.Length < 1 || req.Length > apitypes.MaxGenerateLength {
		return nil, invalid("length must be 1-%d", apitypes.MaxGenerateLength)
	}
	if req.Charset == "" {
		req.Charset = apitypes.CharsetBytes
	}
	value, err := generate(req.Length, req.Charset)
	if err != nil {
		return nil, err
	}
	defer clear(value)
	st, sec, ok := s.lookupForWrite(ctx, req.Path)
	if err := s.authorize(ctx, rc, st, evGenerate, req.Path, sec); err != nil {
		return nil, err
	}
	cmd := &fsm.PutValue{Path: req.Path, Origin: apitypes.OriginGenerate, CreatedBy: rc.principal.Accessor}
	keyName := defaultKMSKey
	switch {
	case ok:
		cmd.UID, keyName = sec.UID, sec.KMSKey
	case req.Create:
		if err := s.authorizeAs(ctx, rc, st, "createSecret", evCreate, req.Path, nil); err != nil {
			return nil, err
		}
		cmd.UID, cmd.Create = node.RandomID(), true
	default:
		return nil, s.failed(ctx, rc, evGenerate, req.Path, errs.New(errs.NotFound, "secret %s not found (set create: true to create it)", req.Path))
	}
	sv, err := s.seal(st, keyName, cmd.UID, req.Path, value)
	if err != nil {
		return nil, s.failed(ctx, rc, evGenerate, req.Path, err)
	}
	cmd.Value = *sv
	entries := s.encryptEntries(rc, evGenerate, req.Path, sv)
	if cmd.Create {
		entries = append([]apitypes.AuditEntry{s.entry(rc, evCreate, req.Path)}, entries...)
	}
	res, err := s.submit(ctx, rc, fsm.CmdPutValue, cmd, entries...)
	if err != nil {
		return nil, err
	}
	return &apitypes.GenerateSecretResponse{Version: res.Version, Index: res.Index}, nil
}

func (s *Server) updateSecret(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.UpdateSecretRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	if err := checkPath(req.Path); err != nil {
		return nil, err
	}
	var labels map[string]string
	if req.Labels != nil {
		labels = *req.Labels
	}
	if err := checkMeta(req.Description, labels, req.AccessPolicy); err != nil {
		return nil, err
	}
	st, sec, ok := s.lookupForWrite(ctx, req.Path)
	if err := s.authorize(ctx, rc, st, evUpdate, req.Path, sec); err != nil {
		return nil, err
	}
	if !ok {
		return nil, s.failed(ctx, rc, evUpdate, req.Path, errs.New(errs.NotFound, "secret %s not found", req.Path))
	}
	cmd := &fsm.UpdateSecret{Path: req.Path, Description: req.Description, Labels: req.Labels, AccessPolicy: req.AccessPolicy}
	res, err := s.submit(ctx, rc, fsm.CmdUpdateSecret, cmd, s.entry(rc, evUpdate, req.Path))
	if err != nil {
		return nil, err
	}
	return &apitypes.UpdateSecretResponse{Secret: *res.Secret, Index: res.Index}, nil
}

func (s *Server) destroySecretVersion(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.DestroySecretVersionRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	if err := checkPath(req.Path); err != nil {
		return nil, err
	}
	if req.Version == 0 {
		return nil, invalid("version is required (a version number >= 1)")
	}
	st, sec, _ := s.lookupForWrite(ctx, req.Path)
	if err := s.authorize(ctx, rc, st, evDestroy, req.Path, sec); err != nil {
		return nil, err
	}
	e := s.entry(rc, evDestroy, req.Path)
	e.Version = req.Version
	res, err := s.submit(ctx, rc, fsm.CmdDestroyVersion, &fsm.DestroyVersion{Path: req.Path, Version: req.Version}, e)
	if err != nil {
		return nil, err
	}
	return &apitypes.IndexResponse{Index: res.Index}, nil
}

func (s *Server) deleteSecret(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.DeleteSecretRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	if err := checkPath(req.Path); err != nil {
		return nil, err
	}
	st, sec, _ := s.lookupForWrite(ctx, req.Path)
	if err := s.authorize(ctx, rc, st, evDelete, req.Path, sec); err != nil {
		return nil, err
	}
	res, err := s.submit(ctx, rc, fsm.CmdDeleteSecret, &fsm.DeleteSecret{Path: req.Path}, s.entry(rc, evDelete, req.Path))
	if err != nil {
		return nil, err
	}
	return &apitypes.IndexResponse{Index: res.Index}, nil
}

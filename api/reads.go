package api

import (
	"context"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/fsm"
)

func (s *Server) describeSecret(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.DescribeSecretRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	st, sec, err := s.readSecret(ctx, rc, req.Path, req.ReadOptions, evDescribe)
	if err != nil {
		return nil, err
	}
	if sec == nil {
		return nil, s.failed(ctx, rc, evDescribe, req.Path, errs.New(errs.NotFound, "secret %s not found", req.Path))
	}
	if err := s.auditNow(ctx, rc, s.ok(rc, evDescribe, req.Path)); err != nil {
		return nil, err
	}
	return &apitypes.DescribeSecretResponse{Secret: sec.Meta(true), Index: st.Index}, nil
}

// readSecret is the start of a read of one secret: check the path, get the
// state at the requested consistency, look the secret up (nil when absent)
// and authorize the caller on it (a denial is audited). A leader read on
// the leader is confirmed by the commit of the read's audit entry
// (auditNow), which every outcome of the read goes through before it is
// answered.
func (s *Server) readSecret(ctx context.Context, rc *reqCtx, path string, opts apitypes.ReadOptions, event string) (*fsm.State, *fsm.Secret, error) {
	if err := checkPath(path); err != nil {
		return nil, nil, err
	}
	st, lr, err := s.n.ReadStateConfirmLater(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	rc.leaderRead = lr
	sec, _ := st.Secret(path)
	if err := s.authorize(ctx, rc, st, event, path, sec); err != nil {
		return nil, nil, err
	}
	return st, sec, nil
}

func (s *Server) ok(rc *reqCtx, event, path string) apitypes.AuditEntry {
	e := s.entry(rc, event, path)
	e.Result = apitypes.ResultOK
	return e
}

func (s *Server) listSecrets(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.ListSecretsRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	if req.Prefix == "" {
		req.Prefix = "/"
	}
	if err := apitypes.ValidatePrefix(req.Prefix); err != nil {
		return nil, invalid("%v", err)
	}
	// page_size absent means the default; an explicit 0 is an error.
	if !present(raw, "page_size") {
		req.PageSize = apitypes.DefaultPageSize
	}
	if req.PageSize < 1 || req.PageSize > apitypes.MaxPageSize {
		return nil, invalid("page_size must be 1-%d", apitypes.MaxPageSize)
	}
	if req.KeyState != "" && req.KeyState != "inactive" {
		return nil, invalid(`key_state must be "inactive" or absent`)
	}
	st, lr, err := s.n.ReadStateConfirmLater(ctx, req.ReadOptions)
	if err != nil {
		return nil, err
	}
	rc.leaderRead = lr // confirmed by the listing's audit commit (auditNow)
	// A listing is allowed when the caller may list the folder itself or
	// what lies below it ("/app/*" covers "/app/" and "/app/x"); each
	// secret and folder returned must itself be listable.
	mayList := func(p string) bool { return s.decide(rc, st, rc.action, p, nil).Allowed }
	probe := req.Prefix
	if !mayList(probe) {
		probe = req.Prefix + "x"
	}
	if err := s.authorize(ctx, rc, st, evList, probe, nil); err != nil {
		return nil, err
	}
	keep := func(sec *fsm.Secret) bool { return mayList(sec.Path) }
	if req.KeyState == "inactive" {
		keep = func(sec *fsm.Secret) bool {
			k, ok := st.Key(sec.KMSKey)
			return (!ok || k.State != fsm.KeyEnabled) && mayList(sec.Path)
		}
	}
	page, err := st.List(req.Prefix, req.Recursive, req.PageSize, req.PageToken, keep)
	if err != nil {
		return nil, s.failed(ctx, rc, evList, req.Prefix, err)
	}
	if err := s.auditNow(ctx, rc, s.ok(rc, evList, req.Prefix)); err != nil {
		return nil, err
	}
	resp := &apitypes.ListSecretsResponse{Secrets: make([]apitypes.Secret, 0, len(page.Secrets)), NextPageToken: page.Next, Index: st.Index}
	resp.Folders = []string{}
	for _, f := range page.Folders {
		if mayList(f) || mayList(f+"x") {
			resp.Folders = append(resp.Folders, f)
		}
	}
	for _, sec := range page.Secrets {
		resp.Secrets = append(resp.Secrets, sec.Meta(false))
	}
	return resp, nil
}

// readValue decrypts one version of a secret on this node. It returns the
// audit entries to commit (ok or error) and, on success, the value.
func (s *Server) readValue(st *fsm.State, rc *reqCtx, path string, version uint64, withDecrypt bool) (*apitypes.SecretValue, []apitypes.AuditEntry, error) {
	e := s.entry(rc, evGetValue, path)
	e.Version = version
	fail := func(err error) (*apitypes.SecretValue, []apitypes.AuditEntry, error) {
		e.Result, e.ErrorCode = apitypes.ResultError, string(errs.CodeOf(err))
		return nil, []apitypes.AuditEntry{e}, err
	}
	sec, ok := st.Secret(path)
	if !ok {
		return fail(errs.New(errs.NotFound, "secret %s not found", path))
	}
	if version == 0 {
		version = sec.CurrentVersion()
		if version == 0 {
			return fail(errs.New(errs.NotFound, "secret %s has no enabled version", path))
		}
		e.Version = version
	}
	v := sec.Version(version)
	if v == nil {
		return fail(errs.New(errs.NotFound, "version %d of %s not found", version, path))
	}
	e.KMSKey, e.KMSKeyVersion = v.KMSKey, v.KMSKeyVersion
	if v.Destroyed {
		return fail(errs.New(errs.Gone, "version %d of %s was destroyed", version, path))
	}
	k, ok := st.Key(v.KMSKey)
	if !ok {
		return fail(errs.New(errs.FailedPrecondition, "kms key %q no longer exists", v.KMSKey))
	}
	if k.State != fsm.KeyEnabled {
		return fail(errs.New(errs.FailedPrecondition, "kms key %q is %s", k.Name, k.State))
	}
	kv := k.KeyVersion(v.KMSKeyVersion)
	if kv == nil || kv.Wrapped == nil {
		return fail(errs.New(errs.FailedPrecondition, "kms key %q version %d is destroyed", k.Name, v.KMSKeyVersion))
	}
	kek, err := s.n.Keys().KEK(k.Name, kv.Version, kv.Wrapped)
	if err != nil {
		return fail(errs.New(errs.Internal, "kms key %q version %d can't be unwrapped by this node's root key", k.Name, kv.Version))
	}
	value, err := kek.Open(secretAAD(sec.UID, sec.Path), v.Ciphertext, v.WrappedDEK)
	if err != nil {
		return fail(errs.New(errs.Internal, "version %d of %s failed its integrity check", version, path))
	}
	e.Result = apitypes.ResultOK
	entries := []apitypes.AuditEntry{e}
	if withDecrypt {
		d := e
		d.Action = evDecrypt
		entries = append(entries, d)
	}
	return &apitypes.SecretValue{Path: sec.Path, UID: sec.UID, Version: version, Value: value, CreatedAt: fsm.FromNanos(v.CreatedAt)}, entries, nil
}

func (s *Server) getSecretValue(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.GetSecretValueRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	st, _, err := s.readSecret(ctx, rc, req.Path, req.ReadOptions, evGetValue)
	if err != nil {
		return nil, err
	}
	val, entries, rerr := s.readValue(st, rc, req.Path, req.Version, true)
	// The read is audited before anything is returned (fail-closed).
	if err := s.auditNow(ctx, rc, entries...); err != nil {
		if val != nil {
			clear(val.Value)
		}
		return nil, err
	}
	if rerr != nil {
		return nil, rerr
	}
	return &apitypes.GetSecretValueResponse{SecretValue: *val, Index: st.Index}, nil
}

func (s *Server) batchGetSecretValue(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.BatchGetSecretValueRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	if len(req.Paths) == 0 {
		return nil, invalid("paths is required (1-%d paths)", apitypes.MaxBatchGetPaths)
	}
	if len(req.Paths) > apitypes.MaxBatchGetPaths {
		return nil, invalid("%d paths, at most %d allowed", len(req.Paths), apitypes.MaxBatchGetPaths)
	}
	seen := map[string]bool{}
	for i, p := range req.Paths {
		if err := apitypes.ValidatePath(p); err != nil {
			return nil, invalid("paths[%d]: %v", i, err)
		}
		if seen[p] {
			return nil, invalid("paths[%d]: %s is listed twice", i, p)
		}
		seen[p] = true
	}
	st, lr, err := s.n.ReadStateConfirmLater(ctx, req.ReadOptions)
	if err != nil {
		return nil, err
	}
	rc.leaderRead = lr // confirmed by the audit commit below, which every path reaches
	// The token is checked at the state the batch is answered from, like
	// every read: a token revoked at or before it reads nothing.
	if err := rc.stillValid(st); err != nil {
		return nil, err
	}
	resp := &apitypes.BatchGetSecretValueResponse{Values: []apitypes.SecretValue{}, Errors: map[string]apitypes.ErrorDetail{}, Index: st.Index}
	var entries []apitypes.AuditEntry
	for _, p := range req.Paths {
		sec, _ := st.Secret(p)
		if d := s.decide(rc, st, rc.action, p, sec); !d.Allowed {
			if d.Unauthenticated {
				return nil, errs.New(errs.Unauthenticated, "%s", d.Reason)
			}
			e := s.entry(rc, evGetValue, p)
			e.Result, e.ErrorCode, e.Reason = apitypes.ResultDenied, string(errs.PermissionDenied), d.Reason
			entries = append(entries, e)
			resp.Errors[p] = apitypes.ErrorDetail{Code: string(errs.PermissionDenied), Message: d.Reason}
			continue
		}
		val, es, err := s.readValue(st, rc, p, 0, false)
		entries = append(entries, es...)
		if err != nil {
			e := errs.As(err)
			resp.Errors[p] = apitypes.ErrorDetail{Code: string(e.Code), Message: e.Message}
			continue
		}
		resp.Values = append(resp.Values, *val)
	}
	if err := s.auditNow(ctx, rc, entries...); err != nil {
		for i := range resp.Values {
			clear(resp.Values[i].Value)
		}
		return nil, err
	}
	return resp, nil
}

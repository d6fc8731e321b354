package fsm

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/audit"
	"github.com/cofferhq/coffer/errs"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func ftU64(v uint64) *uint64 { return &v }

// TestApplyCommands applies every command type through real log entries and
// checks results, state and the audit trail they produce.
func TestApplyCommands(t *testing.T) {
	h := newFtHarness(t)
	// expect records, per command, the outcome its audit entries must carry.
	type expectation struct {
		action  string
		path    string
		result  string
		code    errs.Code
		version uint64
	}
	var want []expectation
	expect := func(r Result, env Envelope) {
		for _, e := range env.Audit {
			x := expectation{action: e.Action, path: e.Path, result: apitypes.ResultOK, version: e.Version}
			if r.Err != nil {
				x.result, x.code = apitypes.ResultError, r.Err.Code
				if r.Err.Code == errs.PermissionDenied {
					x.result = apitypes.ResultDenied
				}
			}
			if x.version == 0 && e.Path != "" {
				x.version = r.Version
			}
			want = append(want, x)
		}
	}
	run := func(env Envelope) Result {
		t.Helper()
		r := h.one(env)
		expect(r, env)
		return r
	}

	// --- InitRoot before the cluster exists; InitCluster twice; InitRoot twice.
	r := run(ftEnv(t, CmdInitRoot, &InitRoot{Accessor: ftRootAcc, Hash: ftRootHash}, "", ftEntry("sys.init", "")))
	ftWantCode(t, "InitRoot before InitCluster", r, errs.Unavailable)
	if h.f.State().Initialized || h.f.State().Tokens.Len() != 0 {
		t.Fatal("a refused InitRoot changed the state")
	}
	r = run(ftEnv(t, CmdInitCluster, &InitCluster{ClusterID: "cluster-1", DefaultKey: []byte("wrapped-1"), RootFingerprint: "fp-1"}, ""))
	ftWantCode(t, "InitCluster", r, "")
	st := h.f.State()
	k, ok := st.Key("default")
	if st.ClusterID != "cluster-1" || st.RootFingerprint != "fp-1" || !ok || k.State != KeyEnabled || len(k.Versions) != 1 ||
		string(k.Current().Wrapped) != "wrapped-1" || k.Current().Version != 1 || k.CreatedAt != h.now || k.Current().CreatedAt != h.now {
		t.Fatalf("after InitCluster: %+v key %+v", st, k)
	}
	r = run(ftEnv(t, CmdInitCluster, &InitCluster{ClusterID: "cluster-2", DefaultKey: []byte("wrapped-2"), RootFingerprint: "fp-2"}, ""))
	ftWantCode(t, "InitCluster again", r, errs.AlreadyExists)
	st = h.f.State()
	if k, _ := st.Key("default"); st.ClusterID != "cluster-1" || st.RootFingerprint != "fp-1" || string(k.Current().Wrapped) != "wrapped-1" {
		t.Fatal("a second InitCluster changed the cluster")
	}
	r = run(ftEnv(t, CmdInitRoot, &InitRoot{Accessor: ftRootAcc, Hash: ftRootHash}, "", ftEntry("sys.init", "")))
	ftWantCode(t, "InitRoot", r, "")
	st = h.f.State()
	tok, ok := st.TokenByHash(ftRootHash)
	if !st.Initialized || !ok || tok.Accessor != ftRootAcc || tok.Name != "root" || !reflect.DeepEqual(tok.Policies, []string{AdminPolicy}) || tok.ExpiresAt != 0 {
		t.Fatalf("root token: %+v", tok)
	}
	r = run(ftEnv(t, CmdInitRoot, &InitRoot{Accessor: "other", Hash: "otherhash"}, "", ftEntry("sys.init", "")))
	ftWantCode(t, "InitRoot again", r, errs.AlreadyExists)
	if h.f.State().Tokens.Len() != 1 {
		t.Fatal("a second InitRoot added a token")
	}

	// --- CreateSecret.
	cs := &CreateSecret{Path: "/app/a", UID: "uid-a", KMSKey: "default", Description: "d", Labels: map[string]string{"x": "1", "y": "2"}, CreatedBy: ftRootAcc}
	r = run(ftEnv(t, CmdCreateSecret, cs, ftRootAcc, ftEntry("secrets.create", "/app/a")))
	ftWantCode(t, "CreateSecret", r, "")
	if r.Version != 0 || r.Secret == nil || r.Secret.Path != "/app/a" || r.Secret.UID != "uid-a" || r.Secret.CurrentVersion != 0 ||
		!r.Secret.CreatedAt.Equal(time.Unix(0, h.now)) || !r.Secret.UpdatedAt.Equal(r.Secret.CreatedAt) || r.Secret.CreatedBy != ftRootAcc {
		t.Fatalf("CreateSecret result: %+v %+v", r, r.Secret)
	}
	if st := h.f.State(); st.VersionCount != 0 || st.Secrets.Len() != 1 {
		t.Fatalf("after CreateSecret: %d versions, %d secrets", st.VersionCount, st.Secrets.Len())
	}
	withValue := &CreateSecret{Path: "/app/b", UID: "uid-b", KMSKey: "default", Value: ftSealed(5), CreatedBy: ftRootAcc,
		AccessPolicy: &apitypes.AccessPolicy{SourceCIDRs: []string{"10.0.0.0/8"}}}
	r = run(ftEnv(t, CmdCreateSecret, withValue, ftRootAcc, ftEntry("secrets.create", "/app/b"), ftEntry("secrets.put_value", "/app/b"), ftEntry("kms.encrypt", "/app/b")))
	ftWantCode(t, "CreateSecret with value", r, "")
	sec, _ := h.f.State().Secret("/app/b")
	if r.Version != 1 || r.Secret.CurrentVersion != 1 || len(sec.Versions) != 1 || h.f.State().VersionCount != 1 {
		t.Fatalf("CreateSecret with value: %+v", r)
	}
	if v := sec.Versions[0]; v.Version != 1 || v.Origin != apitypes.OriginPut || v.Size != 5 || v.CreatedAt != h.now || v.CreatedBy != ftRootAcc ||
		string(v.Ciphertext) != string(ftSealed(5).Ciphertext) || string(v.WrappedDEK) != "wrapped-dek" || v.KMSKey != "default" || v.KMSKeyVersion != 1 || v.Destroyed {
		t.Fatalf("version 1: %+v", v)
	}
	r = run(ftEnv(t, CmdCreateSecret, &CreateSecret{Path: "/app/a", UID: "uid-a2", KMSKey: "default", CreatedBy: ftRootAcc}, ftRootAcc, ftEntry("secrets.create", "/app/a")))
	ftWantCode(t, "CreateSecret existing", r, errs.AlreadyExists)
	if sec, _ := h.f.State().Secret("/app/a"); sec.UID != "uid-a" {
		t.Fatal("a refused CreateSecret replaced the secret")
	}
	r = run(ftEnv(t, CmdCreateSecret, &CreateSecret{Path: "/app/c", UID: "uid-c", KMSKey: "nokey", CreatedBy: ftRootAcc}, ftRootAcc, ftEntry("secrets.create", "/app/c")))
	ftWantCode(t, "CreateSecret unknown key", r, errs.NotFound)
	other := ftSealed(3)
	other.KMSKey = "other"
	r = run(ftEnv(t, CmdCreateSecret, &CreateSecret{Path: "/app/c", UID: "uid-c", KMSKey: "default", Value: other, CreatedBy: ftRootAcc}, ftRootAcc, ftEntry("secrets.create", "/app/c")))
	ftWantCode(t, "CreateSecret value ftSealed under another key", r, errs.FailedPrecondition)
	v2 := ftSealed(3)
	v2.KMSKeyVersion = 2
	r = run(ftEnv(t, CmdCreateSecret, &CreateSecret{Path: "/app/c", UID: "uid-c", KMSKey: "default", Value: v2, CreatedBy: ftRootAcc}, ftRootAcc, ftEntry("secrets.create", "/app/c")))
	ftWantCode(t, "CreateSecret value under a missing key version", r, errs.FailedPrecondition)
	if _, ok := h.f.State().Secret("/app/c"); ok {
		t.Fatal("a refused CreateSecret created the secret")
	}

	// --- PutValue: CAS ok / mismatch, unconditional, UID mismatch, Create.
	put := func(path, uid string, expected *uint64, size int) Envelope {
		return ftEnv(t, CmdPutValue, &PutValue{Path: path, UID: uid, ExpectedVersion: expected, Value: *ftSealed(size), Origin: apitypes.OriginPut, CreatedBy: ftRootAcc},
			ftRootAcc, ftEntry("secrets.put_value", path), ftEntry("kms.encrypt", path))
	}
	r = run(put("/app/b", "uid-b", ftU64(1), 6))
	ftWantCode(t, "PutValue CAS ok", r, "")
	if r.Version != 2 {
		t.Fatalf("PutValue CAS ok: version %d", r.Version)
	}
	r = run(put("/app/b", "uid-b", ftU64(1), 7))
	ftWantCode(t, "PutValue CAS mismatch", r, errs.VersionMismatch)
	if sec, _ := h.f.State().Secret("/app/b"); len(sec.Versions) != 2 || h.f.State().VersionCount != 2 {
		t.Fatal("a refused PutValue added a version")
	}
	r = run(put("/app/a", "uid-a", ftU64(0), 1))
	ftWantCode(t, "PutValue CAS 0 on a secret without versions", r, "")
	if r.Version != 1 {
		t.Fatalf("first version: %d", r.Version)
	}
	r = run(put("/app/b", "uid-b", nil, 8))
	ftWantCode(t, "PutValue unconditional", r, "")
	if r.Version != 3 {
		t.Fatalf("PutValue unconditional: version %d", r.Version)
	}
	updatedBefore := func() int64 { s, _ := h.f.State().Secret("/app/b"); return s.UpdatedAt }()
	r = run(put("/app/b", "uid-stale", nil, 9))
	ftWantCode(t, "PutValue UID mismatch", r, errs.FailedPrecondition)
	if sec, _ := h.f.State().Secret("/app/b"); len(sec.Versions) != 3 || sec.UpdatedAt != updatedBefore {
		t.Fatal("a PutValue with a stale uid changed the secret")
	}
	r = run(put("/app/missing", "uid-m", nil, 1))
	ftWantCode(t, "PutValue missing", r, errs.NotFound)
	gen := &PutValue{Path: "/app/gen", UID: "uid-gen", Value: *ftSealed(32), Origin: apitypes.OriginGenerate, Create: true, CreatedBy: ftRootAcc}
	r = run(ftEnv(t, CmdPutValue, gen, ftRootAcc, ftEntry("secrets.create", "/app/gen"), ftEntry("secrets.generate", "/app/gen"), ftEntry("kms.encrypt", "/app/gen")))
	ftWantCode(t, "PutValue Create", r, "")
	sec, ok = h.f.State().Secret("/app/gen")
	if r.Version != 1 || !ok || sec.UID != "uid-gen" || sec.KMSKey != "default" || sec.Versions[0].Origin != apitypes.OriginGenerate || sec.CreatedBy != ftRootAcc {
		t.Fatalf("PutValue Create: %+v %+v", r, sec)
	}
	gen.UID = "uid-gen-2" // Create on an existing path adds a version only when the uid matches
	r = run(ftEnv(t, CmdPutValue, gen, ftRootAcc, ftEntry("secrets.generate", "/app/gen")))
	ftWantCode(t, "PutValue Create on existing path with another uid", r, errs.FailedPrecondition)

	// --- UpdateSecret.
	desc := "new description"
	r = run(ftEnv(t, CmdUpdateSecret, &UpdateSecret{Path: "/app/a", Description: &desc}, ftRootAcc, ftEntry("secrets.update", "/app/a")))
	ftWantCode(t, "UpdateSecret description", r, "")
	if r.Secret == nil || r.Secret.Description != desc || !reflect.DeepEqual(r.Secret.Labels, map[string]string{"x": "1", "y": "2"}) || !r.Secret.UpdatedAt.Equal(time.Unix(0, h.now)) || r.Secret.CreatedAt.Equal(r.Secret.UpdatedAt) {
		t.Fatalf("UpdateSecret: %+v", r.Secret)
	}
	labels := map[string]string{"z": "9"}
	ap := &apitypes.AccessPolicy{SourceCIDRs: []string{"192.168.0.0/16"}}
	r = run(ftEnv(t, CmdUpdateSecret, &UpdateSecret{Path: "/app/a", Labels: &labels, AccessPolicy: ap}, ftRootAcc, ftEntry("secrets.update", "/app/a")))
	ftWantCode(t, "UpdateSecret labels", r, "")
	sec, _ = h.f.State().Secret("/app/a")
	if sec.Description != desc || !reflect.DeepEqual(sec.Labels, labels) || sec.AccessPolicy == nil || sec.AccessPolicy.SourceCIDRs[0] != "192.168.0.0/16" {
		t.Fatalf("after UpdateSecret: %+v", sec)
	}
	r = run(ftEnv(t, CmdUpdateSecret, &UpdateSecret{Path: "/app/a", AccessPolicy: &apitypes.AccessPolicy{}}, ftRootAcc, ftEntry("secrets.update", "/app/a")))
	ftWantCode(t, "UpdateSecret clear access policy", r, "")
	if sec, _ := h.f.State().Secret("/app/a"); sec.AccessPolicy != nil || !reflect.DeepEqual(sec.Labels, labels) || len(sec.Versions) != 1 {
		t.Fatalf("clearing the access policy: %+v", sec)
	}
	r = run(ftEnv(t, CmdUpdateSecret, &UpdateSecret{Path: "/app/none", Description: &desc}, ftRootAcc, ftEntry("secrets.update", "/app/none")))
	ftWantCode(t, "UpdateSecret missing", r, errs.NotFound)

	// --- DestroyVersion: erases material, is idempotent, keeps metadata.
	destroy := func(path string, n uint64) Envelope {
		e := ftEntry("secrets.destroy_version", path)
		e.Version = n
		return ftEnv(t, CmdDestroyVersion, &DestroyVersion{Path: path, Version: n}, ftRootAcc, e)
	}
	r = run(destroy("/app/b", 3))
	ftWantCode(t, "DestroyVersion", r, "")
	sec, _ = h.f.State().Secret("/app/b")
	if v := sec.Versions[2]; r.Version != 3 || !v.Destroyed || v.Ciphertext != nil || v.WrappedDEK != nil || v.Size != 8 || v.Origin != apitypes.OriginPut || sec.CurrentVersion() != 2 {
		t.Fatalf("after DestroyVersion: %+v %+v", r, v)
	}
	if h.f.State().VersionCount != 5 {
		t.Fatalf("VersionCount %d, want 5 (destroyed versions are still stored)", h.f.State().VersionCount)
	}
	destroyedAt := sec.UpdatedAt
	r = run(destroy("/app/b", 3))
	ftWantCode(t, "DestroyVersion again", r, "")
	if sec, _ := h.f.State().Secret("/app/b"); r.Version != 3 || sec.UpdatedAt != destroyedAt {
		t.Fatalf("DestroyVersion is not idempotent: %+v", r)
	}
	r = run(destroy("/app/b", 1))
	ftWantCode(t, "DestroyVersion 1", r, "")
	if sec, _ := h.f.State().Secret("/app/b"); sec.CurrentVersion() != 2 || sec.Versions[1].Destroyed || sec.Versions[1].Ciphertext == nil {
		t.Fatal("destroying version 1 touched version 2")
	}
	r = run(destroy("/app/b", 99))
	ftWantCode(t, "DestroyVersion missing version", r, errs.NotFound)
	r = run(destroy("/app/b", 0))
	ftWantCode(t, "DestroyVersion 0", r, errs.NotFound)
	r = run(destroy("/app/none", 1))
	ftWantCode(t, "DestroyVersion missing secret", r, errs.NotFound)

	// --- DeleteSecret.
	r = run(ftEnv(t, CmdDeleteSecret, &DeleteSecret{Path: "/app/b"}, ftRootAcc, ftEntry("secrets.delete", "/app/b")))
	ftWantCode(t, "DeleteSecret", r, "")
	if _, ok := h.f.State().Secret("/app/b"); ok || h.f.State().VersionCount != 2 {
		t.Fatalf("after DeleteSecret: VersionCount %d, want 2", h.f.State().VersionCount)
	}
	r = run(ftEnv(t, CmdDeleteSecret, &DeleteSecret{Path: "/app/b"}, ftRootAcc, ftEntry("secrets.delete", "/app/b")))
	ftWantCode(t, "DeleteSecret again", r, errs.NotFound)
	r = run(ftEnv(t, CmdCreateSecret, &CreateSecret{Path: "/app/b", UID: "uid-b2", KMSKey: "default", Value: ftSealed(2), CreatedBy: ftRootAcc}, ftRootAcc, ftEntry("secrets.create", "/app/b")))
	ftWantCode(t, "CreateSecret after delete", r, "")
	if sec, _ := h.f.State().Secret("/app/b"); sec.UID != "uid-b2" || len(sec.Versions) != 1 || r.Version != 1 {
		t.Fatalf("re-created secret: %+v", sec)
	}

	// --- Tokens.
	ct := &CreateToken{Accessor: "acc-w", Hash: "hash-w", Name: "writer", Policies: []string{"secrets-writer"}, SourceCIDRs: []string{"10.0.0.0/8"}}
	r = run(ftEnv(t, CmdCreateToken, ct, ftRootAcc, ftEntry("auth.create_token", "")))
	ftWantCode(t, "CreateToken", r, "")
	tok, ok = h.f.State().TokenByHash("hash-w")
	if !ok || tok.Accessor != "acc-w" || tok.Name != "writer" || tok.CreatedAt != h.now || !reflect.DeepEqual(tok.SourceCIDRs, []string{"10.0.0.0/8"}) {
		t.Fatalf("token: %+v", tok)
	}
	r = run(ftEnv(t, CmdCreateToken, &CreateToken{Accessor: "acc-w", Hash: "hash-x", Name: "dup"}, ftRootAcc, ftEntry("auth.create_token", "")))
	ftWantCode(t, "CreateToken duplicate accessor", r, errs.AlreadyExists)
	r = run(ftEnv(t, CmdCreateToken, &CreateToken{Accessor: "acc-x", Hash: "hash-w", Name: "dup"}, ftRootAcc, ftEntry("auth.create_token", "")))
	ftWantCode(t, "CreateToken duplicate hash", r, errs.AlreadyExists)
	if h.f.State().Tokens.Len() != 2 || h.f.State().TokenHashes.Len() != 2 {
		t.Fatal("a refused CreateToken stored something")
	}
	// The writer may write (no policy check without an action).
	r = run(ftEnv(t, CmdCreateSecret, &CreateSecret{Path: "/w/1", UID: "uid-w1", KMSKey: "default", CreatedBy: "acc-w"}, "acc-w", ftEntry("secrets.create", "/w/1")))
	ftWantCode(t, "CreateSecret by a valid token", r, "")
	r = run(ftEnv(t, CmdRevokeToken, &RevokeToken{Accessor: "acc-w"}, ftRootAcc, ftEntry("auth.revoke_token", "")))
	ftWantCode(t, "RevokeToken", r, "")
	if _, ok := h.f.State().Token("acc-w"); ok {
		t.Fatal("revoked token still stored")
	}
	if _, ok := h.f.State().TokenByHash("hash-w"); ok {
		t.Fatal("revoked token still found by hash")
	}
	r = run(ftEnv(t, CmdRevokeToken, &RevokeToken{Accessor: "acc-w"}, ftRootAcc, ftEntry("auth.revoke_token", "")))
	ftWantCode(t, "RevokeToken again", r, errs.NotFound)

	// --- Apply-time authentication: a revoked or expired caller fails.
	r = run(ftEnv(t, CmdCreateSecret, &CreateSecret{Path: "/w/2", UID: "uid-w2", KMSKey: "default", CreatedBy: "acc-w"}, "acc-w", ftEntry("secrets.create", "/w/2")))
	ftWantCode(t, "CreateSecret by a revoked token", r, errs.Unauthenticated)
	r = run(ftEnv(t, CmdPutValue, &PutValue{Path: "/w/1", UID: "uid-w1", Value: *ftSealed(1), Origin: "put", CreatedBy: "acc-w"}, "acc-w", ftEntry("secrets.put_value", "/w/1")))
	ftWantCode(t, "PutValue by a revoked token", r, errs.Unauthenticated)
	r = run(ftEnv(t, CmdDeleteSecret, &DeleteSecret{Path: "/w/1"}, "acc-nobody", ftEntry("secrets.delete", "/w/1")))
	ftWantCode(t, "DeleteSecret by an unknown token", r, errs.Unauthenticated)
	// A token is valid before expires_at and expired from expires_at on
	// (batches are 1 s apart: create at T+1, update at T+2, expiry at T+3).
	r = run(ftEnv(t, CmdCreateToken, &CreateToken{Accessor: "acc-e", Hash: "hash-e", Name: "short", Policies: []string{"admin"}, ExpiresAt: h.now + 3*int64(time.Second)}, ftRootAcc, ftEntry("auth.create_token", "")))
	ftWantCode(t, "CreateToken with expiry", r, "")
	r = run(ftEnv(t, CmdUpdateSecret, &UpdateSecret{Path: "/w/1", Description: &desc}, "acc-e", ftEntry("secrets.update", "/w/1")))
	ftWantCode(t, "UpdateSecret by a token before expiry", r, "")
	r = run(ftEnv(t, CmdDestroyVersion, &DestroyVersion{Path: "/app/a", Version: 1}, "acc-e", ftEntry("secrets.destroy_version", "/app/a")))
	ftWantCode(t, "DestroyVersion by an expired token", r, errs.Unauthenticated)
	r = run(ftEnv(t, CmdRevokeToken, &RevokeToken{Accessor: ftRootAcc}, "acc-e", ftEntry("auth.revoke_token", "")))
	ftWantCode(t, "RevokeToken by an expired token", r, errs.Unauthenticated)
	if _, ok := h.f.State().Token(ftRootAcc); !ok {
		t.Fatal("an expired token revoked the root token")
	}
	if sec, _ := h.f.State().Secret("/app/a"); sec.Versions[0].Destroyed {
		t.Fatal("an expired token destroyed a version")
	}
	if _, ok := h.f.State().Secret("/w/2"); ok {
		t.Fatal("a revoked token created a secret")
	}

	// Revocation and use in the same batch: the later command sees it.
	res := h.apply(
		ftEnv(t, CmdCreateToken, &CreateToken{Accessor: "acc-s", Hash: "hash-s", Name: "same", Policies: []string{"admin"}}, ftRootAcc, ftEntry("auth.create_token", "")),
		ftEnv(t, CmdCreateSecret, &CreateSecret{Path: "/s/1", UID: "uid-s1", KMSKey: "default", CreatedBy: "acc-s"}, "acc-s", ftEntry("secrets.create", "/s/1")),
		ftEnv(t, CmdRevokeToken, &RevokeToken{Accessor: "acc-s"}, ftRootAcc, ftEntry("auth.revoke_token", "")),
		ftEnv(t, CmdCreateSecret, &CreateSecret{Path: "/s/2", UID: "uid-s2", KMSKey: "default", CreatedBy: "acc-s"}, "acc-s", ftEntry("secrets.create", "/s/2")),
	)
	ftWantCode(t, "batch: create token", res[0], "")
	ftWantCode(t, "batch: use token", res[1], "")
	ftWantCode(t, "batch: revoke token", res[2], "")
	ftWantCode(t, "batch: use revoked token", res[3], errs.Unauthenticated)
	for i, env := range []Envelope{
		ftEnv(t, CmdCreateToken, &CreateToken{}, "", ftEntry("auth.create_token", "")),
		ftEnv(t, CmdCreateSecret, &CreateSecret{}, "", ftEntry("secrets.create", "/s/1")),
		ftEnv(t, CmdRevokeToken, &RevokeToken{}, "", ftEntry("auth.revoke_token", "")),
		ftEnv(t, CmdCreateSecret, &CreateSecret{}, "", ftEntry("secrets.create", "/s/2")),
	} {
		expect(res[i], env)
	}

	// Apply-time authorization: a token whose policies don't allow the
	// action fails with PermissionDenied, audited as denied.
	r = run(ftEnv(t, CmdCreateToken, &CreateToken{Accessor: "acc-r", Hash: "hash-r", Name: "reader", Policies: []string{"secrets-reader"}}, ftRootAcc, ftEntry("auth.create_token", "")))
	ftWantCode(t, "CreateToken reader", r, "")
	denied := ftEnv(t, CmdDeleteSecret, &DeleteSecret{Path: "/app/a"}, "acc-r", ftEntry("secrets.delete", "/app/a"))
	denied.Action, denied.Path = "deleteSecret", "/app/a"
	r = run(denied)
	ftWantCode(t, "DeleteSecret by a reader", r, errs.PermissionDenied)
	if _, ok := h.f.State().Secret("/app/a"); !ok {
		t.Fatal("a reader deleted a secret")
	}

	// --- AuditOnly keeps the outcome its node recorded.
	ro := ftEntry("secrets.get_value", "/app/a")
	ro.Result, ro.Version = apitypes.ResultOK, 1
	rerr := ftEntry("secrets.get_value", "/app/zzz")
	rerr.Result, rerr.ErrorCode = apitypes.ResultError, string(errs.NotFound)
	rden := ftEntry("secrets.describe", "/app/a")
	rden.Result, rden.ErrorCode, rden.Reason = apitypes.ResultDenied, string(errs.PermissionDenied), "no policy allows it"
	r = h.one(ftEnv(t, CmdAuditOnly, &AuditOnly{}, ftRootAcc, ro, rerr, rden))
	ftWantCode(t, "AuditOnly", r, "")
	want = append(want,
		expectation{action: ro.Action, path: ro.Path, result: apitypes.ResultOK, version: 1},
		expectation{action: rerr.Action, path: rerr.Path, result: apitypes.ResultError, code: errs.NotFound},
		expectation{action: rden.Action, path: rden.Path, result: apitypes.ResultDenied, code: errs.PermissionDenied},
	)
	// --- The audit trail.
	got := ftStoreEntries(t, h.store)
	if len(got) != len(want) {
		t.Fatalf("%d audit entries, want %d", len(got), len(want))
	}
	if ok, broken := audit.VerifyEntries(audit.Head{}, got); !ok {
		t.Fatalf("audit chain broken at seq %d", broken)
	}
	if !reflect.DeepEqual(got, h.emitted) {
		t.Fatal("onAudit received other entries than the store holds")
	}
	for i, e := range got {
		w := want[i]
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
		if e.Action != w.action || e.Path != w.path || e.Result != w.result || e.ErrorCode != string(w.code) || e.Version != w.version {
			t.Errorf("entry %d (%s %s): result %q code %q version %d, want %q %q %d", e.Seq, e.Action, e.Path, e.Result, e.ErrorCode, e.Version, w.result, w.code, w.version)
		}
		if e.Time.IsZero() || e.Hash == "" || e.PrevHash == "" || e.Node != "n1" || e.Principal.Accessor != ftRootAcc {
			t.Errorf("entry %d incomplete: %+v", e.Seq, e)
		}
		if w.result == apitypes.ResultDenied && e.Reason == "" {
			t.Errorf("denied entry %d has no reason", e.Seq)
		}
	}
	last := got[len(got)-1]
	if head := h.f.State().AuditHead; head.Seq != last.Seq || head.Hash != last.Hash {
		t.Fatalf("state audit head %+v, last entry %d %s", head, last.Seq, last.Hash)
	}
	if ok, checked, first, lastSeq, broken, err := h.store.Verify(); !ok || err != nil || checked != uint64(len(got)) || first != 1 || lastSeq != last.Seq || broken != 0 {
		t.Fatalf("store Verify: ok=%v checked=%d first=%d last=%d broken=%d err=%v", ok, checked, first, lastSeq, broken, err)
	}
	// Entry time is the batch's leader time.
	if !got[0].Time.Equal(time.Unix(0, ftT0+int64(time.Second))) {
		t.Fatalf("first entry time %v, want the first batch's time", got[0].Time)
	}
}

// TestAuditOnlyRefusedCallerEntries: when an AuditOnly command carries a
// caller whose token was revoked (or expired) before it committed, Apply
// refuses it with Unauthenticated — the read it records fails — yet its
// entries keep the "ok" result the node recorded. The trail then claims a
// read succeeded that the caller was refused. (The API currently proposes
// AuditOnly without a caller, so this is latent at the FSM level.)
func TestAuditOnlyRefusedCallerEntries(t *testing.T) {
	h := newFtHarness(t)
	h.boot()
	ftWantCode(t, "create token", h.one(ftEnv(t, CmdCreateToken, &CreateToken{Accessor: "acc-g", Hash: "hash-g", Name: "g", Policies: []string{"admin"}}, ftRootAcc)), "")
	ftWantCode(t, "revoke token", h.one(ftEnv(t, CmdRevokeToken, &RevokeToken{Accessor: "acc-g"}, ftRootAcc)), "")
	read := ftEntry("secrets.get_value", "/app/a")
	read.Principal = apitypes.Principal{Accessor: "acc-g", Name: "g"}
	read.Result, read.Version = apitypes.ResultOK, 1
	dec := read
	dec.Action = "kms.decrypt"
	r := h.one(ftEnv(t, CmdAuditOnly, &AuditOnly{}, "acc-g", read, dec))
	ftWantCode(t, "AuditOnly by a revoked token", r, errs.Unauthenticated)
	es := ftStoreEntries(t, h.store)
	for _, e := range es[len(es)-2:] {
		if e.Result != apitypes.ResultError || e.ErrorCode != string(errs.Unauthenticated) {
			t.Errorf("entry %d %s: result %q code %q, but the command failed with Unauthenticated", e.Seq, e.Action, e.Result, e.ErrorCode)
		}
	}
}

// TestApplyMalformedEntryPanics: a malformed log entry is a bug and must
// crash the node rather than let it diverge; the state is left untouched.
func TestApplyMalformedEntryPanics(t *testing.T) {
	h := newFtHarness(t)
	h.boot()
	good := ftEnv(t, CmdCreateSecret, &CreateSecret{Path: "/p/a", UID: "u", KMSKey: "default"}, "")
	batchWith := func(envs ...Envelope) []byte {
		b, err := EncodeBatch(&Batch{Time: h.now + 1, Cmds: envs})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	valid := batchWith(good)
	unknownType := good
	unknownType.Type = 250
	badBody := good
	badBody.Body = []byte{0xc1} // never used in msgpack
	wrongBody := good
	wrongBody.Body = []byte{0x92, 0x01, 0x02} // an array, not a command map
	cases := map[string][]byte{
		"empty":                   {},
		"nil":                     nil,
		"unknown entry type":      append([]byte{2}, valid[1:]...),
		"batch type, no body":     {EntryBatch},
		"truncated batch":         valid[:len(valid)-3],
		"garbage batch":           {EntryBatch, 0xc1, 0xc1},
		"unknown command type":    batchWith(good, unknownType),
		"undecodable command":     batchWith(good, badBody),
		"command of another kind": batchWith(wrongBody),
	}
	before := h.f.State()
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatalf("Apply of a malformed entry (%q) did not panic", name)
				}
				if h.f.State() != before {
					t.Fatal("a malformed entry changed the state")
				}
				if n := len(ftStoreEntries(t, h.store)); n != 1 {
					t.Fatalf("a malformed entry wrote audit entries (%d)", n)
				}
			}()
			h.f.Apply(&raft.Log{Index: h.index + 1, Term: 1, Type: raft.LogCommand, Data: data})
		})
	}
	// An entry type marked optional (0x80 bit) is skipped: no panic, the
	// index advances, nothing else changes.
	out := h.f.Apply(&raft.Log{Index: h.index + 1, Term: 1, Type: raft.LogCommand, Data: []byte{0x81, 1, 2, 3}})
	if out != nil {
		t.Fatalf("skipped entry returned %v", out)
	}
	st := h.f.State()
	if st.Index != h.index+1 || st.Secrets.Len() != before.Secrets.Len() || st.AuditHead != before.AuditHead {
		t.Fatalf("skipped entry: index %d, state changed", st.Index)
	}
	h.index++
	// And the FSM still applies good entries afterwards.
	ftWantCode(t, "after the malformed entries", h.one(good), "")
}

// TestApplyDeterminism: two FSMs fed the same log produce the same results,
// the same audit trail and byte-identical snapshots.
func TestApplyDeterminism(t *testing.T) {
	logs := ftScriptLogs(t)
	a, b := newFtReplica(), newFtReplica()
	for i, l := range logs {
		ra := a.f.Apply(l)
		rb := b.f.Apply(l)
		if !reflect.DeepEqual(ra, rb) {
			t.Fatalf("log %d: results differ: %v / %v", i, ra, rb)
		}
		if !reflect.DeepEqual(a.emitted, b.emitted) {
			t.Fatalf("log %d: audit entries differ", i)
		}
		sa, sb := ftSnapshotBytes(t, a.f), ftSnapshotBytes(t, b.f)
		if string(sa) != string(sb) {
			t.Fatalf("log %d: snapshots differ (%d and %d bytes)", i, len(sa), len(sb))
		}
	}
	ftSameState(t, a.f.State(), b.f.State())
	// The same state written twice gives the same bytes too.
	for i := 0; i < 20; i++ {
		if x, y := ftSnapshotBytes(t, a.f), ftSnapshotBytes(t, a.f); string(x) != string(y) {
			t.Fatalf("two snapshots of one state differ (attempt %d)", i)
		}
	}
}

type ftReplica struct {
	f       *FSM
	emitted []apitypes.AuditEntry
}

func newFtReplica() *ftReplica {
	r := &ftReplica{}
	r.f = New(audit.NewMemoryStore(), func(es []apitypes.AuditEntry) { r.emitted = append(r.emitted, es...) }, hclog.NewNullLogger())
	return r
}

// ftScriptLogs builds a realistic sequence of log entries (applied on a
// scratch ftHarness only to get the indexes and times right).
func ftScriptLogs(t testing.TB) []*raft.Log {
	h := newFtHarness(t)
	var logs []*raft.Log
	add := func(envs ...Envelope) {
		l := h.logOf(envs...)
		logs = append(logs, l)
		h.f.Apply(l)
		h.index++
		h.now += int64(time.Second)
	}
	add(ftEnv(t, CmdInitCluster, &InitCluster{ClusterID: "c", DefaultKey: []byte("k"), RootFingerprint: "fp"}, ""))
	add(ftEnv(t, CmdInitRoot, &InitRoot{Accessor: ftRootAcc, Hash: ftRootHash}, "", ftEntry("sys.init", "")))
	labels := map[string]string{"team": "core", "env": "prod", "tier": "1", "owner": "alice", "cost": "42", "region": "eu", "app": "x", "zone": "b"}
	for i, p := range []string{"/a/x", "/a/y", "/b/z", "/a/b/c", "/a/b-c", "/a/b.c"} {
		add(ftEnv(t, CmdCreateSecret, &CreateSecret{Path: p, UID: "uid" + p, KMSKey: "default", Labels: labels, Description: p, Value: ftSealed(i + 1), CreatedBy: ftRootAcc,
			AccessPolicy: &apitypes.AccessPolicy{SourceCIDRs: []string{"10.0.0.0/8"}, TimeWindows: []apitypes.TimeWindow{{Days: []string{"mon"}, Start: "09:00", End: "17:00", Timezone: "UTC"}}}},
			ftRootAcc, ftEntry("secrets.create", p), ftEntry("secrets.put_value", p)))
	}
	add(ftEnv(t, CmdPutValue, &PutValue{Path: "/a/x", UID: "uid/a/x", Value: *ftSealed(9), Origin: "put", ExpectedVersion: ftU64(1)}, ftRootAcc, ftEntry("secrets.put_value", "/a/x")),
		ftEnv(t, CmdPutValue, &PutValue{Path: "/a/x", UID: "uid/a/x", Value: *ftSealed(9), Origin: "put", ExpectedVersion: ftU64(1)}, ftRootAcc, ftEntry("secrets.put_value", "/a/x")))
	add(ftEnv(t, CmdDestroyVersion, &DestroyVersion{Path: "/a/x", Version: 1}, ftRootAcc, ftEntry("secrets.destroy_version", "/a/x")))
	add(ftEnv(t, CmdCreateToken, &CreateToken{Accessor: "t1", Hash: "h1", Name: "n", Policies: []string{"secrets-reader", "secrets-writer"}, SourceCIDRs: []string{"10.0.0.0/8"}}, ftRootAcc, ftEntry("auth.create_token", "")))
	newLabels := map[string]string{"a": "1", "b": "2", "c": "3", "d": "4"}
	add(ftEnv(t, CmdUpdateSecret, &UpdateSecret{Path: "/b/z", Labels: &newLabels}, ftRootAcc, ftEntry("secrets.update", "/b/z")))
	add(ftEnv(t, CmdDeleteSecret, &DeleteSecret{Path: "/a/y"}, ftRootAcc, ftEntry("secrets.delete", "/a/y")))
	add(ftEnv(t, CmdAuditOnly, &AuditOnly{}, ftRootAcc, ftEntry("secrets.get_value", "/a/x")))
	add(ftEnv(t, CmdRevokeToken, &RevokeToken{Accessor: "t1"}, ftRootAcc, ftEntry("auth.revoke_token", "")))
	return logs
}

func ftSnapshotBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	var sb strings.Builder
	if err := WriteState(&sb, f.State()); err != nil {
		t.Fatal(err)
	}
	return []byte(sb.String())
}

// failingStore refuses every append, as a full or broken disk would.
type failingStore struct{ audit.Store }

func (failingStore) Append([]apitypes.AuditEntry) error { return errors.New("disk full") }

// A node whose local audit store fails keeps applying (the trail is in the
// Raft log) and reports the failure, for its health warnings.
func TestAuditStoreErrorReported(t *testing.T) {
	f := New(failingStore{audit.NewMemoryStore()}, nil, hclog.NewNullLogger())
	if e := f.AuditStoreError(); e != "" {
		t.Fatalf("before any append: %q", e)
	}
	for _, l := range ftScriptLogs(t) {
		f.Apply(l)
	}
	if e := f.AuditStoreError(); !strings.Contains(e, "disk full") {
		t.Fatalf("after failed appends: %q", e)
	}
	if !f.State().Initialized {
		t.Fatal("the state stopped advancing with the audit store")
	}
}

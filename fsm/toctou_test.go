package fsm

// Time-of-check/time-of-use tests (issue 3 item 6): a write authorized on the
// node that received it must not commit if, by the time its log entry is
// applied, the caller's token was revoked or has expired (by the leader's
// timestamp), or a policy or access-policy change denies it. The race is
// impractical to hit in a cluster, so these tests build the log entries the
// leader would commit and apply them to the FSM directly.

import (
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/acl"
	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/audit"
	"github.com/cofferhq/coffer/errs"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

const (
	toctouPath = "/app/prod/api/db"
	toctouUID  = "0123456789abcdef0123456789abcdef"
	clientIP   = "10.0.0.5"
)

type toctouFSM struct {
	t   *testing.T
	f   *FSM
	idx uint64
	now time.Time // the leader's timestamp of the next entry
}

func newToctouFSM(t *testing.T) *toctouFSM {
	t.Helper()
	x := &toctouFSM{t: t, f: New(audit.NewMemoryStore(), nil, hclog.NewNullLogger()), now: time.Now()}
	app := acl.Policy{Name: "app", Rules: []acl.Rule{{Effect: acl.EffectAllow, Actions: []string{"putSecretValue", "generateSecret", "createSecret"}, Paths: []string{"/app/prod/*"}}}}
	res := x.apply(
		x.env(CmdInitCluster, &InitCluster{ClusterID: "test-cluster", DefaultKey: []byte("wrapped-key"), RootFingerprint: "fp"}, ""),
		x.env(CmdPutPolicy, &PutPolicy{Policy: app}, ""),
		x.env(CmdCreateToken, &CreateToken{Accessor: "acc-admin", Hash: "h-admin", Name: "admin", Policies: []string{acl.PolicyAdmin}}, ""),
		x.env(CmdCreateToken, &CreateToken{Accessor: "acc-writer", Hash: "h-writer", Name: "writer", Policies: []string{acl.PolicySecretsWriter}}, ""),
		x.env(CmdCreateToken, &CreateToken{Accessor: "acc-app", Hash: "h-app", Name: "app", Policies: []string{"app"}}, ""),
		x.env(CmdCreateToken, &CreateToken{Accessor: "acc-short", Hash: "h-short", Name: "short", Policies: []string{acl.PolicySecretsWriter},
			ExpiresAt: x.now.Add(2 * time.Second).UnixNano()}, ""),
		x.env(CmdCreateSecret, &CreateSecret{Path: toctouPath, UID: toctouUID, KMSKey: "default", Value: sealed("v1"), CreatedBy: "acc-admin"}, ""),
	)
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("setup command %d: %v", i, r.Err)
		}
	}
	return x
}

func sealed(tag string) *SealedValue {
	return &SealedValue{Ciphertext: []byte("ct-" + tag), WrappedDEK: []byte("dek-" + tag), Size: len(tag), KMSKey: "default", KMSKeyVersion: 1}
}

func (x *toctouFSM) env(t CmdType, body any, caller string, entries ...apitypes.AuditEntry) Envelope {
	x.t.Helper()
	e, err := NewEnvelope(t, body, caller, entries)
	if err != nil {
		x.t.Fatal(err)
	}
	return e
}

// apply commits one log entry holding cmds, at the leader's time x.now.
func (x *toctouFSM) apply(cmds ...Envelope) []Result {
	x.t.Helper()
	x.idx++
	data, err := EncodeBatch(&Batch{Time: x.now.UnixNano(), Cmds: cmds})
	if err != nil {
		x.t.Fatal(err)
	}
	res, ok := x.f.Apply(&raft.Log{Index: x.idx, Data: data}).([]Result)
	if !ok || len(res) != len(cmds) {
		x.t.Fatalf("apply returned %#v", res)
	}
	return res
}

// put is the envelope a node builds for putSecretValue after authorizing the
// caller: the caller, action, path and client address travel with it.
func (x *toctouFSM) put(caller, requestID string) Envelope {
	entry := apitypes.AuditEntry{Node: "n1", RequestID: requestID, Action: "secrets.put_value", Principal: apitypes.Principal{Accessor: caller},
		SourceIP: clientIP, Path: toctouPath, KMSKey: "default", KMSKeyVersion: 1}
	enc := entry
	enc.Action = "kms.encrypt"
	e := x.env(CmdPutValue, &PutValue{Path: toctouPath, UID: toctouUID, Value: *sealed(requestID), Origin: apitypes.OriginPut, CreatedBy: caller}, caller, entry, enc)
	e.Action, e.Path, e.Source = "putSecretValue", toctouPath, clientIP
	return e
}

func (x *toctouFSM) versions() int {
	s, ok := x.f.State().Secret(toctouPath)
	if !ok {
		x.t.Fatalf("%s vanished", toctouPath)
	}
	return len(s.Versions)
}

// entries returns the committed audit entries of one request.
func (x *toctouFSM) entries(requestID string) []apitypes.AuditEntry {
	x.t.Helper()
	all, _, err := x.f.AuditStore().Query(audit.Query{Limit: audit.MaxQueryLimit})
	if err != nil {
		x.t.Fatal(err)
	}
	var out []apitypes.AuditEntry
	for _, e := range all {
		if e.RequestID == requestID {
			out = append(out, e)
		}
	}
	return out
}

func wantErr(t *testing.T, r Result, code errs.Code, what string) {
	t.Helper()
	if r.Err == nil || r.Err.Code != code {
		t.Fatalf("%s: result %+v, want %s", what, r.Err, code)
	}
	if r.Version != 0 {
		t.Fatalf("%s: a failed write reports version %d", what, r.Version)
	}
}

// wantAudited checks a request's entries: both events, with the result and
// code of the apply-time decision.
func (x *toctouFSM) wantAudited(requestID, result string, code errs.Code, reasonParts ...string) {
	x.t.Helper()
	es := x.entries(requestID)
	if len(es) != 2 {
		x.t.Fatalf("request %s: %d audit entries, want 2 (put_value, encrypt): %+v", requestID, len(es), es)
	}
	for _, e := range es {
		if e.Result != result || e.ErrorCode != string(code) {
			x.t.Errorf("request %s: %s audited as %q/%q, want %q/%q", requestID, e.Action, e.Result, e.ErrorCode, result, code)
		}
		if e.SourceIP != clientIP || e.Principal.Accessor == "" {
			x.t.Errorf("request %s: entry lost its caller: %+v", requestID, e)
		}
		for _, p := range reasonParts {
			if !strings.Contains(e.Reason, p) {
				x.t.Errorf("request %s: reason %q does not name %q", requestID, e.Reason, p)
			}
		}
		if e.Version != 0 {
			x.t.Errorf("request %s: a write that did not commit is audited with version %d", requestID, e.Version)
		}
	}
}

func TestTOCTOUControlWriteCommits(t *testing.T) {
	x := newToctouFSM(t)
	res := x.apply(x.put("acc-writer", "req-ok"))
	if res[0].Err != nil || res[0].Version != 2 || x.versions() != 2 {
		t.Fatalf("a valid write did not commit: %+v, %d versions", res[0], x.versions())
	}
	for _, e := range x.entries("req-ok") {
		if e.Result != apitypes.ResultOK || e.Version != 2 {
			t.Fatalf("ok write audited as %+v", e)
		}
	}
}

func TestTOCTOURevokedInSameEntry(t *testing.T) {
	x := newToctouFSM(t)
	res := x.apply(
		x.env(CmdRevokeToken, &RevokeToken{Accessor: "acc-writer"}, "acc-admin"),
		x.put("acc-writer", "req-revoked"),
	)
	if res[0].Err != nil {
		t.Fatalf("revoke: %v", res[0].Err)
	}
	wantErr(t, res[1], errs.Unauthenticated, "write after revocation in the same entry")
	if n := x.versions(); n != 1 {
		t.Fatalf("the revoked caller's write committed: %d versions", n)
	}
	x.wantAudited("req-revoked", apitypes.ResultError, errs.Unauthenticated)
}

func TestTOCTOURevokedInEarlierEntry(t *testing.T) {
	// The usual race: the follower checked the token, then the leader
	// committed a revocation before the forwarded write.
	x := newToctouFSM(t)
	if r := x.apply(x.env(CmdRevokeToken, &RevokeToken{Accessor: "acc-writer"}, "acc-admin")); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	res := x.apply(x.put("acc-writer", "req-revoked"))
	wantErr(t, res[0], errs.Unauthenticated, "write after revocation")
	if n := x.versions(); n != 1 {
		t.Fatalf("the revoked caller's write committed: %d versions", n)
	}
	x.wantAudited("req-revoked", apitypes.ResultError, errs.Unauthenticated)
}

func TestTOCTOURevokedAdminCantGrant(t *testing.T) {
	// A revoked admin's in-flight createToken must not mint a token.
	x := newToctouFSM(t)
	x.apply(x.env(CmdRevokeToken, &RevokeToken{Accessor: "acc-admin"}, ""))
	ct := x.env(CmdCreateToken, &CreateToken{Accessor: "acc-new", Hash: "h-new", Name: "new", Policies: []string{acl.PolicyAdmin}}, "acc-admin",
		apitypes.AuditEntry{RequestID: "req-ct", Action: "auth.create_token", Principal: apitypes.Principal{Accessor: "acc-admin"}, SourceIP: clientIP})
	ct.Action, ct.Source = "createToken", clientIP
	res := x.apply(ct)
	wantErr(t, res[0], errs.Unauthenticated, "createToken by a revoked admin")
	if _, ok := x.f.State().Token("acc-new"); ok {
		t.Fatal("a revoked admin minted a token")
	}
	if _, ok := x.f.State().TokenByHash("h-new"); ok {
		t.Fatal("the token's hash was stored")
	}
}

func TestTOCTOUGenerateCreateByRevokedToken(t *testing.T) {
	x := newToctouFSM(t)
	x.apply(x.env(CmdRevokeToken, &RevokeToken{Accessor: "acc-writer"}, ""))
	const p = "/app/prod/api/new"
	e := x.env(CmdPutValue, &PutValue{Path: p, UID: "fedcba9876543210fedcba9876543210", Value: *sealed("gen"), Origin: apitypes.OriginGenerate, Create: true, CreatedBy: "acc-writer"}, "acc-writer",
		apitypes.AuditEntry{RequestID: "req-gen", Action: "secrets.create", Principal: apitypes.Principal{Accessor: "acc-writer"}, SourceIP: clientIP, Path: p})
	e.Action, e.Path, e.Source = "generateSecret", p, clientIP
	res := x.apply(e)
	wantErr(t, res[0], errs.Unauthenticated, "generateSecret create by a revoked token")
	if _, ok := x.f.State().Secret(p); ok {
		t.Fatal("a revoked token created a secret")
	}
}

func TestTOCTOUExpiredByLeaderTime(t *testing.T) {
	// acc-short expires 2s after x.now. The entry's timestamp (the leader's
	// clock), not the applying node's clock, decides.
	x := newToctouFSM(t)
	base := x.now
	x.now = base.Add(1 * time.Second)
	if res := x.apply(x.put("acc-short", "req-before")); res[0].Err != nil {
		t.Fatalf("write before expiry: %v", res[0].Err)
	}
	x.now = base.Add(2 * time.Second) // exactly at expires_at
	res := x.apply(x.put("acc-short", "req-at"))
	wantErr(t, res[0], errs.Unauthenticated, "write at expiry")
	x.now = base.Add(time.Hour)
	res = x.apply(x.put("acc-short", "req-after"))
	wantErr(t, res[0], errs.Unauthenticated, "write after expiry")
	if n := x.versions(); n != 2 {
		t.Fatalf("%d versions, want 2 (only the write before expiry)", n)
	}
	x.wantAudited("req-after", apitypes.ResultError, errs.Unauthenticated)
}

func TestTOCTOUPolicyNarrowedBeforeApply(t *testing.T) {
	x := newToctouFSM(t)
	narrowed := acl.Policy{Name: "app", Rules: []acl.Rule{{Effect: acl.EffectAllow, Actions: []string{"getSecretValue"}, Paths: []string{"/app/prod/*"}}}}
	res := x.apply(
		x.env(CmdPutPolicy, &PutPolicy{Policy: narrowed}, "acc-admin"),
		x.put("acc-app", "req-narrowed"),
	)
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	wantErr(t, res[1], errs.PermissionDenied, "write after the policy was narrowed")
	if n := x.versions(); n != 1 {
		t.Fatalf("denied write committed: %d versions", n)
	}
	x.wantAudited("req-narrowed", apitypes.ResultDenied, errs.PermissionDenied, "putSecretValue", toctouPath)
}

func TestTOCTOUPolicyDeletedBeforeApply(t *testing.T) {
	x := newToctouFSM(t)
	x.apply(x.env(CmdDeletePolicy, &DeletePolicy{Name: "app"}, "acc-admin"))
	res := x.apply(x.put("acc-app", "req-deleted"))
	wantErr(t, res[0], errs.PermissionDenied, "write after the policy was deleted")
	if n := x.versions(); n != 1 {
		t.Fatalf("denied write committed: %d versions", n)
	}
	x.wantAudited("req-deleted", apitypes.ResultDenied, errs.PermissionDenied, "no policy allows putSecretValue")
}

func TestTOCTOUDenyAddedBeforeApply(t *testing.T) {
	x := newToctouFSM(t)
	withDeny := acl.Policy{Name: "app", Rules: []acl.Rule{
		{Effect: acl.EffectAllow, Actions: []string{"*"}, Paths: []string{"/app/prod/*"}},
		{Effect: acl.EffectDeny, Actions: []string{"putSecretValue"}, Paths: []string{toctouPath}},
	}}
	x.apply(x.env(CmdPutPolicy, &PutPolicy{Policy: withDeny}, "acc-admin"))
	res := x.apply(x.put("acc-app", "req-deny"))
	wantErr(t, res[0], errs.PermissionDenied, "write after a deny was added")
	x.wantAudited("req-deny", apitypes.ResultDenied, errs.PermissionDenied, `policy "app" rule 2`)
}

func TestTOCTOUAccessPolicyBeforeApply(t *testing.T) {
	// The secret's access policy changed to a network the client is not in.
	x := newToctouFSM(t)
	ap := &apitypes.AccessPolicy{SourceCIDRs: []string{"192.168.0.0/16"}}
	if r := x.apply(x.env(CmdUpdateSecret, &UpdateSecret{Path: toctouPath, AccessPolicy: ap}, "acc-admin")); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	res := x.apply(x.put("acc-writer", "req-cidr"))
	wantErr(t, res[0], errs.PermissionDenied, "write from outside the new access policy")
	if n := x.versions(); n != 1 {
		t.Fatalf("denied write committed: %d versions", n)
	}
	x.wantAudited("req-cidr", apitypes.ResultDenied, errs.PermissionDenied, "source "+clientIP, "source_cidrs")

	// A time window that the leader's timestamp is outside of.
	now := x.now.UTC()
	start := now.Add(6 * time.Hour)
	closed := &apitypes.AccessPolicy{TimeWindows: []apitypes.TimeWindow{{Start: start.Format("15:04"), End: start.Add(time.Minute).Format("15:04"), Timezone: "UTC"}}}
	x.apply(x.env(CmdUpdateSecret, &UpdateSecret{Path: toctouPath, AccessPolicy: closed}, ""))
	res = x.apply(x.put("acc-writer", "req-window"))
	wantErr(t, res[0], errs.PermissionDenied, "write outside the window at the leader's time")
	x.wantAudited("req-window", apitypes.ResultDenied, errs.PermissionDenied, "time windows")
}

func TestTOCTOUGenerateCreateLosesCreateSecret(t *testing.T) {
	// generateSecret with create: true needs generateSecret and createSecret
	// (api.generateSecret checks both on the receiving node). If createSecret
	// is taken away before the entry is applied, the secret must not be
	// created: the apply-time check has to cover both actions.
	x := newToctouFSM(t)
	genOnly := acl.Policy{Name: "app", Rules: []acl.Rule{{Effect: acl.EffectAllow, Actions: []string{"generateSecret", "putSecretValue"}, Paths: []string{"/app/prod/*"}}}}
	x.apply(x.env(CmdPutPolicy, &PutPolicy{Policy: genOnly}, "acc-admin"))
	const p = "/app/prod/api/generated"
	create := apitypes.AuditEntry{RequestID: "req-gen", Action: "secrets.create", Principal: apitypes.Principal{Accessor: "acc-app"}, SourceIP: clientIP, Path: p}
	gen := create
	gen.Action = "secrets.generate"
	e := x.env(CmdPutValue, &PutValue{Path: p, UID: "fedcba9876543210fedcba9876543210", Value: *sealed("gen"), Origin: apitypes.OriginGenerate, Create: true, CreatedBy: "acc-app"}, "acc-app", create, gen)
	e.Action, e.Path, e.Source = "generateSecret", p, clientIP
	res := x.apply(e)
	if _, ok := x.f.State().Secret(p); ok || res[0].Err == nil {
		t.Fatalf("generateSecret create: true committed (result %+v) after createSecret was taken away before apply", res[0])
	}
	wantErr(t, res[0], errs.PermissionDenied, "generate with create after losing createSecret")
}

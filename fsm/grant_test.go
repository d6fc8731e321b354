package fsm

import (
	"slices"
	"testing"
	"time"

	"github.com/cofferhq/coffer/acl"
	"github.com/cofferhq/coffer/errs"
)

// TestApplyRightsRules: the rights rules of SPEC §6 hold at apply, on the
// state applied to, whatever the sender checked or labelled: Apply is the
// authoritative check (a forwarded command can't skip it, a follower's older
// state can't fool it).
func TestApplyRightsRules(t *testing.T) {
	h := newFtHarness(t)
	h.boot()
	mk := acl.Policy{Name: "tokmaker", Rules: []acl.Rule{{Effect: acl.EffectAllow, Actions: []string{"createToken", "putPolicy", "deletePolicy", "revokeToken"}, Paths: []string{"*"}}}}
	ftWantCode(t, "put tokmaker", h.one(withAction(ftEnv(t, CmdPutPolicy, &PutPolicy{Policy: mk}, ftRootAcc), "putPolicy")), "")
	later := h.now + int64(time.Hour)
	for _, c := range []*CreateToken{
		{Accessor: "acc-maker", Hash: "h-maker", Name: "maker", Policies: []string{"tokmaker"}},
		{Accessor: "acc-bounded", Hash: "h-bounded", Name: "bounded", Policies: []string{"tokmaker"}, ExpiresAt: later, SourceCIDRs: []string{"10.0.0.0/8"}},
	} {
		ftWantCode(t, "create "+c.Name, h.one(withAction(ftEnv(t, CmdCreateToken, c, ftRootAcc), "createToken")), "")
	}
	src := func(env Envelope, ip string) Envelope { env.Source = ip; return env }
	cases := []struct {
		what   string
		env    Envelope
		action string // the envelope's label (the sender's claim)
		want   errs.Code
	}{
		{"non-admin grants admin", ftEnv(t, CmdCreateToken, &CreateToken{Accessor: "a1", Hash: "h1", Name: "x", Policies: []string{acl.PolicyAdmin}}, "acc-maker"), "createToken", errs.PermissionDenied},
		{"label spoofed as whoami", ftEnv(t, CmdCreateToken, &CreateToken{Accessor: "a2", Hash: "h2", Name: "x", Policies: []string{acl.PolicyAdmin}}, "acc-maker"), "whoami", errs.PermissionDenied},
		{"no label", ftEnv(t, CmdCreateToken, &CreateToken{Accessor: "a3", Hash: "h3", Name: "x", Policies: []string{acl.PolicyAdmin}}, "acc-maker"), "", errs.PermissionDenied},
		{"policy that doesn't exist", ftEnv(t, CmdCreateToken, &CreateToken{Accessor: "a4", Hash: "h4", Name: "x", Policies: []string{"nope"}}, ftRootAcc), "createToken", errs.InvalidArgument},
		{"20,000 policy names", ftEnv(t, CmdCreateToken, &CreateToken{Accessor: "a5", Hash: "h5", Name: "x", Policies: slices.Repeat([]string{"tokmaker"}, 20000)}, ftRootAcc), "createToken", errs.InvalidArgument},
		{"bounded caller, no expiry", src(ftEnv(t, CmdCreateToken, &CreateToken{Accessor: "a6", Hash: "h6", Name: "x", Policies: []string{"tokmaker"}, SourceCIDRs: []string{"10.1.0.0/16"}}, "acc-bounded"), "10.1.2.3"), "createToken", errs.PermissionDenied},
		{"bounded caller, no cidrs", src(ftEnv(t, CmdCreateToken, &CreateToken{Accessor: "a7", Hash: "h7", Name: "x", Policies: []string{"tokmaker"}, ExpiresAt: later}, "acc-bounded"), "10.1.2.3"), "createToken", errs.PermissionDenied},
		{"bounded caller, wider cidrs", src(ftEnv(t, CmdCreateToken, &CreateToken{Accessor: "a8", Hash: "h8", Name: "x", Policies: []string{"tokmaker"}, ExpiresAt: later, SourceCIDRs: []string{"0.0.0.0/0"}}, "acc-bounded"), "10.1.2.3"), "createToken", errs.PermissionDenied},
		{"bounded caller, within", src(ftEnv(t, CmdCreateToken, &CreateToken{Accessor: "a9", Hash: "h9", Name: "x", Policies: []string{"tokmaker"}, ExpiresAt: later, SourceCIDRs: []string{"10.1.0.0/16"}}, "acc-bounded"), "10.1.2.3"), "createToken", ""},
		{"non-admin putPolicy", ftEnv(t, CmdPutPolicy, &PutPolicy{Policy: acl.Policy{Name: "tokmaker", Rules: []acl.Rule{{Effect: acl.EffectAllow, Actions: []string{"*"}, Paths: []string{"*"}}}}}, "acc-maker"), "putPolicy", errs.PermissionDenied},
		{"non-admin putPolicy labelled whoami", ftEnv(t, CmdPutPolicy, &PutPolicy{Policy: acl.Policy{Name: "tokmaker", Rules: []acl.Rule{{Effect: acl.EffectAllow, Actions: []string{"*"}, Paths: []string{"*"}}}}}, "acc-maker"), "whoami", errs.PermissionDenied},
		{"non-admin deletePolicy", ftEnv(t, CmdDeletePolicy, &DeletePolicy{Name: "tokmaker"}, "acc-maker"), "", errs.PermissionDenied},
		{"oversized policy", ftEnv(t, CmdPutPolicy, &PutPolicy{Policy: acl.Policy{Name: "big", Rules: slices.Repeat([]acl.Rule{{Effect: acl.EffectAllow, Actions: []string{"*"}, Paths: []string{"*"}}}, 65)}}, ftRootAcc), "putPolicy", errs.InvalidArgument},
	}
	for _, tc := range cases {
		before := h.f.State()
		r := h.one(withAction(tc.env, tc.action))
		ftWantCode(t, tc.what, r, tc.want)
		if tc.want != "" {
			after := h.f.State()
			if after.Tokens.Len() != before.Tokens.Len() || after.Policies.Len() != before.Policies.Len() {
				t.Errorf("%s: the state changed", tc.what)
			}
			if p, _ := after.Policy("tokmaker"); len(p.Rules[0].Actions) != 4 {
				t.Errorf("%s: policy tokmaker was rewritten", tc.what)
			}
		}
	}
}

func withAction(env Envelope, action string) Envelope {
	env.Action = action
	return env
}

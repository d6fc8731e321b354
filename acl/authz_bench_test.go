package acl

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
)

// BenchmarkAuthorize is one request's whole authorization as the API does
// it: the token check at authentication, then Authorize for getSecretValue
// with the token's 10 policies (those of BenchmarkEvaluate) resolved by name
// and a secret access policy.
func BenchmarkAuthorize(b *testing.B) {
	byName := map[string]*Policy{}
	var names []string
	for i := range 10 {
		p := &Policy{Name: fmt.Sprintf("p%d", i)}
		for j := range 5 {
			r := Rule{Effect: EffectAllow, Actions: []string{"describeSecret", "putSecretValue"}, Paths: []string{fmt.Sprintf("/app/svc%d/*", i*5+j), "/other/exact"}}
			switch j {
			case 1:
				r.Conditions = &Conditions{SourceCIDRs: []string{"10.0.0.0/8", "2001:db8::/32"}}
			case 3:
				r.Effect = EffectDeny
				r.Paths = []string{fmt.Sprintf("/secret/svc%d/*", i)}
			}
			p.Rules = append(p.Rules, r)
		}
		byName[p.Name] = p
		names = append(names, p.Name)
	}
	byName["p9"].Rules[4] = Rule{Effect: EffectAllow, Actions: []string{"getSecretValue"}, Paths: []string{"/app/prod/*"}}
	get := func(n string) (*Policy, bool) { p, ok := byName[n]; return p, ok }
	tok := &TokenInfo{Policies: names, ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano(), SourceCIDRs: []string{"10.0.0.0/8"}}
	ap := &apitypes.AccessPolicy{SourceCIDRs: []string{"192.168.0.0/16", "10.0.0.0/8"}}
	src := netip.MustParseAddr("10.1.2.3")
	now := time.Date(2025, 6, 16, 8, 15, 0, 0, time.UTC)
	req := AuthzRequest{Token: tok, Policies: ResolvePolicies(nil, names, get), Action: "getSecretValue", Path: "/app/prod/db/password", Source: src, Now: now, AccessPolicy: ap}
	if d := Authorize(req); !d.Allowed {
		b.Fatal(d.Reason)
	}
	b.ReportAllocs()
	for b.Loop() {
		CheckToken(tok, src, now)
		var buf [MaxTokenPolicies]*Policy
		pols := buf[:0]
		for _, n := range tok.Policies {
			if p, ok := byName[n]; ok {
				pols = append(pols, p)
			}
		}
		Authorize(AuthzRequest{Token: tok, Policies: pols, Action: "getSecretValue", Path: "/app/prod/db/password", Source: src, Now: now, AccessPolicy: ap})
	}
}

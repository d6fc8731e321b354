package acl

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
)

// BenchmarkEvaluate runs a token with 10 policies of 5 rules each, some with
// conditions, against a request only the last rule allows, so every rule is
// looked at (the worst case for an allowed request).
func BenchmarkEvaluate(b *testing.B) {
	var policies []*Policy
	for i := range 10 {
		p := &Policy{Name: fmt.Sprintf("p%d", i)}
		for j := range 5 {
			r := Rule{Effect: EffectAllow, Actions: []string{"describeSecret", "putSecretValue"}, Paths: []string{fmt.Sprintf("/app/svc%d/*", i*5+j), "/other/exact"}}
			switch j {
			case 1:
				r.Conditions = &Conditions{SourceCIDRs: []string{"10.0.0.0/8", "2001:db8::/32"}}
			case 2:
				r.Conditions = &Conditions{TimeWindows: []apitypes.TimeWindow{{Days: []string{"mon", "tue", "wed", "thu", "fri"}, Start: "09:00", End: "18:00", Timezone: "Europe/Berlin"}}}
			case 3:
				r.Effect = EffectDeny
				r.Paths = []string{fmt.Sprintf("/secret/svc%d/*", i)}
			}
			p.Rules = append(p.Rules, r)
		}
		policies = append(policies, p)
	}
	policies[9].Rules[4] = Rule{Effect: EffectAllow, Actions: []string{"getSecretValue"}, Paths: []string{"/app/prod/*"},
		Conditions: &Conditions{SourceCIDRs: []string{"10.0.0.0/8"}, TimeWindows: []apitypes.TimeWindow{{Start: "00:00", End: "24:00", Timezone: "America/New_York"}}}}
	for _, p := range policies {
		if err := ValidatePolicy(p); err != nil {
			b.Fatal(err)
		}
	}
	req := Request{Action: "getSecretValue", Path: "/app/prod/db/password", Source: netip.MustParseAddr("10.1.2.3"), Time: time.Date(2025, 6, 16, 8, 15, 0, 0, time.UTC)}
	if d := Evaluate(policies, req); !d.Allowed {
		b.Fatalf("not allowed: %s", d.Reason)
	}
	b.ReportAllocs()
	for b.Loop() {
		Evaluate(policies, req)
	}
}

func BenchmarkCheckAccessPolicy(b *testing.B) {
	ap := &apitypes.AccessPolicy{
		SourceCIDRs: []string{"192.168.0.0/16", "10.0.0.0/8"},
		TimeWindows: []apitypes.TimeWindow{{Days: []string{"mon", "tue", "wed", "thu", "fri"}, Start: "09:00", End: "18:00", Timezone: "Europe/Berlin"}},
	}
	src := netip.MustParseAddr("10.1.2.3")
	now := time.Date(2025, 6, 16, 8, 15, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		CheckAccessPolicy(ap, src, now)
	}
}

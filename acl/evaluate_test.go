package acl

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
)

func TestMatchPath(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"/a/b", "/a/b", true},
		{"/a/b", "/a/bc", false},
		{"/a/b", "/a/b/c", false},
		{"/a/b", "/a", false},
		{"/a/b", "", false},
		{"/a/*", "/a/b", true},     // depth 1
		{"/a/*", "/a/b/c/d", true}, // depth 3
		{"/a/*", "/a", false},      // not the prefix itself
		{"/a/*", "/a/", false},
		{"/a/*", "/ab/c", false},       // whole segments only
		{"/a/*", "/ab", false},         //
		{"/a/*", "/b/a/c", false},      // anchored at the root
		{"/a/*", "", false},            // path-less actions
		{"/a/b/*", "/a/b/c", true},     //
		{"/a/b/*", "/a/b/c/d/e", true}, //
		{"/a/b/*", "/a/bc/d", false},   //
		{"/a/b/*", "/a/b", false},      //
		{"/*", "/a", true},             // every secret
		{"/*", "/a/b/c", true},         //
		{"/*", "", false},              // but no path-less action
		{"*", "/a", true},
		{"*", "/a/b/c", true},
		{"*", "", true},
	}
	for _, tt := range tests {
		if got := matchPath(tt.pattern, tt.path); got != tt.want {
			t.Errorf("matchPath(%q, %q) = %v, want %v", tt.pattern, tt.path, got, tt.want)
		}
		// Same through Evaluate, so the glob semantics are pinned at the API.
		p := &Policy{Name: "p", Rules: []Rule{allow(list("describeSecret"), list(tt.pattern))}}
		if d := Evaluate([]*Policy{p}, Request{Action: "describeSecret", Path: tt.path}); d.Allowed != tt.want {
			t.Errorf("Evaluate with path %q on %q: allowed %v (%s), want %v", tt.pattern, tt.path, d.Allowed, d.Reason, tt.want)
		}
	}
}

func TestEvaluate(t *testing.T) {
	sat := time.Date(2025, 6, 14, 8, 15, 0, 0, time.UTC) // Sat 10:15 in Berlin (CEST)
	mon := time.Date(2025, 6, 16, 8, 15, 0, 0, time.UTC) // Mon 10:15 in Berlin
	v4 := netip.MustParseAddr("10.1.2.3")
	outside := netip.MustParseAddr("192.0.2.9")
	mapped := netip.MustParseAddr("::ffff:10.1.2.3")
	v6 := netip.MustParseAddr("2001:db8::5")

	pol := func(name string, rules ...Rule) *Policy { return &Policy{Name: name, Rules: rules} }
	cond := func(r Rule, c Conditions) Rule { r.Conditions = &c; return r }
	office := Conditions{SourceCIDRs: list("10.0.0.0/8", "2001:db8::/32")}
	weekdays := Conditions{TimeWindows: []apitypes.TimeWindow{
		{Days: list("mon", "tue", "wed", "thu", "fri"), Start: "09:00", End: "18:00", Timezone: "Europe/Berlin"}}}
	readAB := allow(list("getSecretValue"), list("/a/b"))

	tests := []struct {
		name     string
		policies []*Policy
		req      Request
		allowed  bool
		reason   string
	}{
		{"no policies", nil, Request{Action: "getSecretValue", Path: "/a/b"},
			false, "no policy allows getSecretValue on /a/b"},
		{"no policies, path-less", nil, Request{Action: "createToken"},
			false, "no policy allows createToken"},
		{"exact allow", []*Policy{pol("app", readAB)}, Request{Action: "getSecretValue", Path: "/a/b"},
			true, `allowed by policy "app" rule 1`},
		{"other action", []*Policy{pol("app", readAB)}, Request{Action: "putSecretValue", Path: "/a/b"},
			false, "no policy allows putSecretValue on /a/b"},
		{"other path", []*Policy{pol("app", readAB)}, Request{Action: "getSecretValue", Path: "/a/c"},
			false, "no policy allows getSecretValue on /a/c"},
		{"star actions", []*Policy{pol("app", allow(list("*"), list("/a/*")))}, Request{Action: "deleteSecret", Path: "/a/b/c"},
			true, `allowed by policy "app" rule 1`},
		{"star actions cover cluster", []*Policy{pol("app", allow(list("*"), list("*")))}, Request{Action: "sys.snapshot"},
			true, `allowed by policy "app" rule 1`},
		{"one of several actions", []*Policy{pol("app", allow(list("listSecrets", "describeSecret"), list("*")))},
			Request{Action: "describeSecret", Path: "/x"}, true, `allowed by policy "app" rule 1`},
		{"path-less needs star path", []*Policy{pol("app", allow(list("*"), list("/*")))}, Request{Action: "listKeys"},
			false, "no policy allows listKeys"},
		{"path-less with star path", []*Policy{pol("app", allow(list("queryAudit"), list("*")))}, Request{Action: "queryAudit"},
			true, `allowed by policy "app" rule 1`},
		{"second rule allows", []*Policy{pol("app", readAB, allow(list("putSecretValue"), list("/a/*")))},
			Request{Action: "putSecretValue", Path: "/a/b"}, true, `allowed by policy "app" rule 2`},
		{"second policy allows", []*Policy{pol("one", readAB), pol("two", allow(list("*"), list("/a/b")))},
			Request{Action: "deleteSecret", Path: "/a/b"}, true, `allowed by policy "two" rule 1`},
		{"first allowing rule is named", []*Policy{pol("one", readAB), pol("two", readAB)},
			Request{Action: "getSecretValue", Path: "/a/b"}, true, `allowed by policy "one" rule 1`},
		{"nil policy skipped", []*Policy{nil, pol("app", readAB)}, Request{Action: "getSecretValue", Path: "/a/b"},
			true, `allowed by policy "app" rule 1`},
		{"empty action", []*Policy{pol("app", allow(list("*"), list("*")))}, Request{Path: "/a/b"},
			false, "no action given"},

		// Deny wins, wherever it sits.
		{"deny after allow", []*Policy{pol("ops", allow(list("*"), list("*")), deny(list("deleteSecret"), list("/prod/*")))},
			Request{Action: "deleteSecret", Path: "/prod/db"}, false, `denied by policy "ops" rule 2`},
		{"deny before allow", []*Policy{pol("ops", deny(list("deleteSecret"), list("/prod/*")), allow(list("*"), list("*")))},
			Request{Action: "deleteSecret", Path: "/prod/db"}, false, `denied by policy "ops" rule 1`},
		{"deny in later policy", []*Policy{pol("admin", allow(list("*"), list("*"))), pol("ops", readAB, deny(list("*"), list("/prod/*")))},
			Request{Action: "getSecretValue", Path: "/prod/x"}, false, `denied by policy "ops" rule 2`},
		{"deny in earlier policy", []*Policy{pol("ops", deny(list("*"), list("*"))), pol("admin", allow(list("*"), list("*")))},
			Request{Action: "whoami"}, false, `denied by policy "ops" rule 1`},
		{"deny elsewhere doesn't apply", []*Policy{pol("ops", allow(list("*"), list("*")), deny(list("deleteSecret"), list("/prod/*")))},
			Request{Action: "deleteSecret", Path: "/dev/db"}, true, `allowed by policy "ops" rule 1`},
		{"deny other action doesn't apply", []*Policy{pol("ops", allow(list("*"), list("*")), deny(list("deleteSecret"), list("*")))},
			Request{Action: "destroySecretVersion", Path: "/a"}, true, `allowed by policy "ops" rule 1`},
		{"deny alone", []*Policy{pol("ops", deny(list("*"), list("*")))}, Request{Action: "listSecrets", Path: "/"},
			false, `denied by policy "ops" rule 1`},

		// Conditions on allow rules.
		{"source inside v4", []*Policy{pol("app", cond(readAB, office))},
			Request{Action: "getSecretValue", Path: "/a/b", Source: v4}, true, `allowed by policy "app" rule 1`},
		{"source inside v6", []*Policy{pol("app", cond(readAB, office))},
			Request{Action: "getSecretValue", Path: "/a/b", Source: v6}, true, `allowed by policy "app" rule 1`},
		{"source mapped", []*Policy{pol("app", cond(readAB, office))},
			Request{Action: "getSecretValue", Path: "/a/b", Source: mapped}, true, `allowed by policy "app" rule 1`},
		{"source outside", []*Policy{pol("app", cond(readAB, office))},
			Request{Action: "getSecretValue", Path: "/a/b", Source: outside},
			false, `rule 1 of policy "app": source 192.0.2.9 is outside source_cidrs`},
		{"source unknown", []*Policy{pol("app", cond(readAB, office))},
			Request{Action: "getSecretValue", Path: "/a/b"},
			false, `rule 1 of policy "app": source (unknown) is outside source_cidrs`},
		{"time inside", []*Policy{pol("app", cond(readAB, weekdays))},
			Request{Action: "getSecretValue", Path: "/a/b", Time: mon}, true, `allowed by policy "app" rule 1`},
		{"time outside", []*Policy{pol("app", cond(readAB, weekdays))},
			Request{Action: "getSecretValue", Path: "/a/b", Time: sat},
			false, `rule 1 of policy "app": time Sat 10:15 Europe/Berlin is outside time_windows`},
		{"both outside", []*Policy{pol("app", cond(readAB, Conditions{SourceCIDRs: office.SourceCIDRs, TimeWindows: weekdays.TimeWindows}))},
			Request{Action: "getSecretValue", Path: "/a/b", Source: outside, Time: sat},
			false, `rule 1 of policy "app": source 192.0.2.9 is outside source_cidrs; time Sat 10:15 Europe/Berlin is outside time_windows`},
		{"both inside", []*Policy{pol("app", cond(readAB, Conditions{SourceCIDRs: office.SourceCIDRs, TimeWindows: weekdays.TimeWindows}))},
			Request{Action: "getSecretValue", Path: "/a/b", Source: v4, Time: mon}, true, `allowed by policy "app" rule 1`},
		{"conditional fails, other rule allows", []*Policy{pol("app", cond(readAB, office)), pol("any", readAB)},
			Request{Action: "getSecretValue", Path: "/a/b", Source: outside}, true, `allowed by policy "any" rule 1`},
		{"first condition failure named", []*Policy{pol("app", readAB), pol("vpn", cond(allow(list("*"), list("*")), office)), pol("hours", cond(allow(list("*"), list("*")), weekdays))},
			Request{Action: "putSecretValue", Path: "/a/b", Source: outside, Time: sat},
			false, `rule 1 of policy "vpn": source 192.0.2.9 is outside source_cidrs`},
		{"condition failure of a non-matching rule is not named", []*Policy{pol("vpn", cond(allow(list("listKeys"), list("*")), office))},
			Request{Action: "getSecretValue", Path: "/a/b", Source: outside}, false, "no policy allows getSecretValue on /a/b"},
		{"deny beats condition failure", []*Policy{pol("app", cond(readAB, office)), pol("ops", deny(list("*"), list("/a/*")))},
			Request{Action: "getSecretValue", Path: "/a/b", Source: outside}, false, `denied by policy "ops" rule 1`},

		// Conditions on deny rules narrow the deny.
		{"deny outside office", []*Policy{pol("ops", allow(list("*"), list("*")), cond(deny(list("*"), list("*")), Conditions{SourceCIDRs: list("192.0.2.0/24")}))},
			Request{Action: "getSecretValue", Path: "/a/b", Source: outside}, false, `denied by policy "ops" rule 2`},
		{"deny condition not met", []*Policy{pol("ops", allow(list("*"), list("*")), cond(deny(list("*"), list("*")), Conditions{SourceCIDRs: list("192.0.2.0/24")}))},
			Request{Action: "getSecretValue", Path: "/a/b", Source: v4}, true, `allowed by policy "ops" rule 1`},
		{"deny at weekends", []*Policy{pol("ops", allow(list("*"), list("*")), cond(deny(list("*"), list("*")), Conditions{TimeWindows: []apitypes.TimeWindow{{Days: list("sat", "sun"), Start: "00:00", End: "24:00", Timezone: "Europe/Berlin"}}}))},
			Request{Action: "getSecretValue", Path: "/a/b", Time: sat}, false, `denied by policy "ops" rule 2`},
		{"no deny on weekdays", []*Policy{pol("ops", allow(list("*"), list("*")), cond(deny(list("*"), list("*")), Conditions{TimeWindows: []apitypes.TimeWindow{{Days: list("sat", "sun"), Start: "00:00", End: "24:00", Timezone: "Europe/Berlin"}}}))},
			Request{Action: "getSecretValue", Path: "/a/b", Time: mon}, true, `allowed by policy "ops" rule 1`},

		// Data that slipped past validation never widens access.
		{"broken allow condition", []*Policy{pol("app", cond(readAB, Conditions{SourceCIDRs: list("10.1.2.3")}))},
			Request{Action: "getSecretValue", Path: "/a/b", Source: v4},
			false, `rule 1 of policy "app": source 10.1.2.3 is outside source_cidrs`},
		{"broken deny cidr", []*Policy{pol("ops", allow(list("*"), list("*")), cond(deny(list("*"), list("*")), Conditions{SourceCIDRs: list("bogus")}))},
			Request{Action: "getSecretValue", Path: "/a/b", Source: v4}, false, `denied by policy "ops" rule 2`},
		{"broken deny window", []*Policy{pol("ops", allow(list("*"), list("*")), cond(deny(list("*"), list("*")), Conditions{TimeWindows: []apitypes.TimeWindow{{Start: "09:00", End: "17:00", Timezone: "Mars/Base"}}}))},
			Request{Action: "getSecretValue", Path: "/a/b", Time: mon}, false, `denied by policy "ops" rule 2`},
		{"broken deny window, cidr not met", []*Policy{pol("ops", allow(list("*"), list("*")), cond(deny(list("*"), list("*")), Conditions{SourceCIDRs: list("192.0.2.0/24"), TimeWindows: []apitypes.TimeWindow{{Start: "09:00", End: "17:00", Timezone: "Mars/Base"}}}))},
			Request{Action: "getSecretValue", Path: "/a/b", Source: v4, Time: mon}, true, `allowed by policy "ops" rule 1`},
		{"invalid effect ignored", []*Policy{pol("ops", Rule{Effect: "permit", Actions: list("*"), Paths: list("*")})},
			Request{Action: "getSecretValue", Path: "/a/b"}, false, "no policy allows getSecretValue on /a/b"},
	}
	for _, tt := range tests {
		d := Evaluate(tt.policies, tt.req)
		if d.Allowed != tt.allowed || d.Reason != tt.reason {
			t.Errorf("%s: got {%v %q}, want {%v %q}", tt.name, d.Allowed, d.Reason, tt.allowed, tt.reason)
		}
	}
}

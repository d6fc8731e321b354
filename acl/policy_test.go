package acl

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
)

func allow(actions, paths []string) Rule {
	return Rule{Effect: EffectAllow, Actions: actions, Paths: paths}
}

func deny(actions, paths []string) Rule {
	return Rule{Effect: EffectDeny, Actions: actions, Paths: paths}
}

func list(s ...string) []string { return s }

func TestValidatePolicyName(t *testing.T) {
	tests := []struct {
		name string
		err  string
	}{
		{"a", ""},
		{"ops_team-2", ""},
		{strings.Repeat("x", 64), ""},
		{"", `policy name "" must be 1-64 characters`},
		{strings.Repeat("x", 65), `policy name "` + strings.Repeat("x", 65) + `" must be 1-64 characters`},
		{"Ops", `policy name "Ops": character 'O' is not allowed (use a-z 0-9 _ -)`},
		{"a b", `policy name "a b": character ' ' is not allowed (use a-z 0-9 _ -)`},
		{"a/b", `policy name "a/b": character '/' is not allowed (use a-z 0-9 _ -)`},
		{"a.b", `policy name "a.b": character '.' is not allowed (use a-z 0-9 _ -)`},
	}
	for _, tt := range tests {
		checkErr(t, fmt.Sprintf("ValidatePolicyName(%q)", tt.name), ValidatePolicyName(tt.name), tt.err)
	}
}

func checkErr(t *testing.T, what string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s: unexpected error %q", what, err)
	case want != "" && err == nil:
		t.Errorf("%s: no error, want %q", what, want)
	case want != "" && err.Error() != want:
		t.Errorf("%s:\n got error %q\nwant error %q", what, err, want)
	}
}

func TestValidatePolicy(t *testing.T) {
	ok := allow(list("getSecretValue"), list("/a/b"))
	withCond := func(c Conditions) Rule { r := ok; r.Conditions = &c; return r }
	win := func(days []string, start, end, tz string) Conditions {
		return Conditions{TimeWindows: []apitypes.TimeWindow{{Days: days, Start: start, End: end, Timezone: tz}}}
	}
	cidrs := func(c ...string) Conditions { return Conditions{SourceCIDRs: c} }
	many := func(n int, r Rule) []Rule { return slices.Repeat([]Rule{r}, n) }
	tests := []struct {
		name string
		p    *Policy
		err  string
	}{
		{"minimal", &Policy{Name: "app", Rules: []Rule{ok}}, ""},
		{"every path form", &Policy{Name: "app", Rules: []Rule{allow(list("*"), list("*", "/*", "/a", "/a/*", "/a/b.c/d_e-f/*"))}}, ""},
		{"every action", &Policy{Name: "app", Rules: []Rule{allow(slices.Clone(Actions), list("*"))}}, ""},
		{"deny rule", &Policy{Name: "app", Rules: []Rule{ok, deny(list("deleteSecret"), list("/prod/*"))}}, ""},
		{"conditions", &Policy{Name: "app", Rules: []Rule{withCond(Conditions{
			SourceCIDRs: list("10.0.0.0/8", "2001:db8::/32", "0.0.0.0/0", "::/0", "192.0.2.7/32", "::ffff:10.0.0.0/104"),
			TimeWindows: []apitypes.TimeWindow{
				{Days: list("mon", "tue", "wed", "thu", "fri"), Start: "09:00", End: "18:00", Timezone: "Europe/Berlin"},
				{Start: "22:00", End: "06:00", Timezone: "America/New_York"},
				{Days: list("sat", "sun"), Start: "00:00", End: "24:00"},
				{Start: "23:59", End: "00:00", Timezone: "UTC"},
			},
		})}}, ""},
		{"empty conditions", &Policy{Name: "app", Rules: []Rule{withCond(Conditions{})}}, ""},
		{"64 rules", &Policy{Name: "app", Rules: many(64, ok)}, ""},
		{"256 actions, 256 paths", &Policy{Name: "app", Rules: []Rule{allow(slices.Repeat(list("getSecretValue"), 256), slices.Repeat(list("/a/*"), 256))}}, ""},

		{"nil", nil, "policy is required"},
		{"bad name", &Policy{Name: "App", Rules: []Rule{ok}}, `policy name "App": character 'A' is not allowed (use a-z 0-9 _ -)`},
		{"no name", &Policy{Rules: []Rule{ok}}, `policy name "" must be 1-64 characters`},
		{"no rules", &Policy{Name: "app"}, `policy "app" has no rules; it would grant nothing`},
		{"65 rules", &Policy{Name: "app", Rules: many(65, ok)}, `policy "app" has 65 rules, at most 64 allowed`},
		{"257 actions", &Policy{Name: "app", Rules: []Rule{ok, allow(slices.Repeat(list("getSecretValue"), 257), list("*"))}}, `rule 2: actions has 257 entries, at most 256 allowed`},
		{"257 paths", &Policy{Name: "app", Rules: []Rule{allow(list("*"), slices.Repeat(list("/a/*"), 257))}}, `rule 1: paths has 257 entries, at most 256 allowed`},
		{"effect case", &Policy{Name: "app", Rules: []Rule{{Effect: "Allow", Actions: list("*"), Paths: list("*")}}},
			`rule 1: effect "Allow" must be "allow" or "deny"`},
		{"effect empty", &Policy{Name: "app", Rules: []Rule{ok, {Actions: list("*"), Paths: list("*")}}},
			`rule 2: effect "" must be "allow" or "deny"`},
		{"effect other", &Policy{Name: "app", Rules: []Rule{{Effect: "permit", Actions: list("*"), Paths: list("*")}}},
			`rule 1: effect "permit" must be "allow" or "deny"`},
		{"no actions", &Policy{Name: "app", Rules: []Rule{allow(nil, list("*"))}},
			`rule 1: actions is empty (name actions, or "*" for all)`},
		{"unknown action", &Policy{Name: "app", Rules: []Rule{ok, ok, allow(list("describeSecret", "getSecret"), list("*"))}},
			`rule 3: unknown action "getSecret"`},
		{"action case", &Policy{Name: "app", Rules: []Rule{allow(list("getsecretvalue"), list("*"))}},
			`rule 1: unknown action "getsecretvalue" (did you mean "getSecretValue"?)`},
		{"action glob", &Policy{Name: "app", Rules: []Rule{allow(list("sys.*"), list("*"))}},
			`rule 1: unknown action "sys.*"`},
		{"sys without prefix", &Policy{Name: "app", Rules: []Rule{allow(list("snapshot"), list("*"))}},
			`rule 1: unknown action "snapshot"`},
		{"empty action", &Policy{Name: "app", Rules: []Rule{allow(list(""), list("*"))}},
			`rule 1: unknown action ""`},
		{"no paths", &Policy{Name: "app", Rules: []Rule{allow(list("*"), []string{})}},
			`rule 1: paths is empty (name paths, or "*" for all)`},
		{"star inside", &Policy{Name: "app", Rules: []Rule{allow(list("*"), list("/a/*b"))}},
			`rule 1: path "/a/*b": "*" is allowed only as the whole path or as a final "/*" (everything below a folder)`},
		{"star mid path", &Policy{Name: "app", Rules: []Rule{allow(list("*"), list("/a/*/c"))}},
			`rule 1: path "/a/*/c": "*" is allowed only as the whole path or as a final "/*" (everything below a folder)`},
		{"double star", &Policy{Name: "app", Rules: []Rule{allow(list("*"), list("/a/**"))}},
			`rule 1: path "/a/**": "*" is allowed only as the whole path or as a final "/*" (everything below a folder)`},
		{"two globs", &Policy{Name: "app", Rules: []Rule{allow(list("*"), list("/a/*/*"))}},
			`rule 1: path "/a/*/*": "*" is allowed only as the whole path or as a final "/*" (everything below a folder)`},
		{"suffix star", &Policy{Name: "app", Rules: []Rule{allow(list("*"), list("/app*"))}},
			`rule 1: path "/app*": "*" is allowed only as the whole path or as a final "/*" (everything below a folder)`},
		{"trailing slash", &Policy{Name: "app", Rules: []Rule{allow(list("*"), list("/a/b/"))}},
			`rule 1: path "/a/b/": a path can't end in "/"; use "/a/b/*" for everything below /a/b`},
		{"root", &Policy{Name: "app", Rules: []Rule{allow(list("*"), list("/"))}},
			`rule 1: path "/": a path can't end in "/"; use "/*" for every secret`},
		{"empty path", &Policy{Name: "app", Rules: []Rule{allow(list("*"), list("/a", ""))}},
			`rule 1: path "": path is required`},
		{"relative", &Policy{Name: "app", Rules: []Rule{allow(list("*"), list("a/b"))}},
			`rule 1: path "a/b": path must start with /`},
		{"relative glob", &Policy{Name: "app", Rules: []Rule{allow(list("*"), list("a/*"))}},
			`rule 1: path "a/*": path must start with /`},
		{"dotdot", &Policy{Name: "app", Rules: []Rule{allow(list("*"), list("/a/../*"))}},
			`rule 1: path "/a/../*": path segment 2: segment ".." is not allowed`},
		{"bad char", &Policy{Name: "app", Rules: []Rule{allow(list("*"), list("/a b"))}},
			`rule 1: path "/a b": path segment 1: character ' ' at offset 1 is not allowed (use A-Z a-z 0-9 . _ -)`},
		{"cidr range", &Policy{Name: "app", Rules: []Rule{ok, ok, withCond(cidrs("10.0.0.0/33"))}},
			`rule 3: source_cidrs[0] "10.0.0.0/33": prefix length "33" is out of range (0-32 for IPv4)`},
		{"bare ip", &Policy{Name: "app", Rules: []Rule{withCond(cidrs("10.0.0.0/8", "10.1.2.3"))}},
			`rule 1: source_cidrs[1] "10.1.2.3": a single address needs a prefix length: write "10.1.2.3/32"`},
		{"bad tz", &Policy{Name: "app", Rules: []Rule{withCond(win(nil, "09:00", "17:00", "Mars/Base"))}},
			`rule 1: time_windows[0]: unknown timezone "Mars/Base"`},
		{"bad day", &Policy{Name: "app", Rules: []Rule{withCond(win(list("Mon"), "09:00", "17:00", ""))}},
			`rule 1: time_windows[0]: days[0] "Mon": use mon, tue, wed, thu, fri, sat or sun (lowercase)`},
		{"too many cidrs", &Policy{Name: "app", Rules: []Rule{withCond(Conditions{SourceCIDRs: slices.Repeat(list("10.0.0.0/8"), 33)})}},
			`rule 1: source_cidrs has 33 entries, at most 32 allowed`},
	}
	for _, tt := range tests {
		checkErr(t, tt.name, ValidatePolicy(tt.p), tt.err)
	}
}

func TestValidateAccessPolicy(t *testing.T) {
	w := func(days []string, start, end, tz string) *apitypes.AccessPolicy {
		return &apitypes.AccessPolicy{TimeWindows: []apitypes.TimeWindow{{Days: days, Start: start, End: end, Timezone: tz}}}
	}
	c := func(cidrs ...string) *apitypes.AccessPolicy { return &apitypes.AccessPolicy{SourceCIDRs: cidrs} }
	tests := []struct {
		name string
		ap   *apitypes.AccessPolicy
		err  string
	}{
		{"nil", nil, ""},
		{"empty", &apitypes.AccessPolicy{}, ""},
		{"spec example", &apitypes.AccessPolicy{SourceCIDRs: list("10.0.0.0/8"), TimeWindows: []apitypes.TimeWindow{
			{Days: list("mon", "tue", "wed", "thu", "fri"), Start: "09:00", End: "18:00", Timezone: "Europe/Berlin"}}}, ""},
		{"v6", c("2001:db8::/32", "::1/128", "::/0"), ""},
		{"mapped v6", c("::ffff:10.0.0.0/104"), ""},
		{"32 cidrs", &apitypes.AccessPolicy{SourceCIDRs: slices.Repeat(list("10.0.0.0/8"), 32)}, ""},
		{"every day", w(nil, "00:00", "24:00", ""), ""},
		{"all days", w(list("sun", "mon", "tue", "wed", "thu", "fri", "sat"), "08:00", "20:00", "Asia/Tokyo"), ""},
		{"overnight", w(list("fri"), "22:00", "06:00", "America/New_York"), ""},
		{"late to midnight", w(nil, "23:59", "24:00", "UTC"), ""},
		{"ends at midnight by wrap", w(nil, "12:00", "00:00", ""), ""},
		{"16 windows", &apitypes.AccessPolicy{TimeWindows: slices.Repeat([]apitypes.TimeWindow{{Start: "01:00", End: "02:00"}}, 16)}, ""},

		{"33 cidrs", &apitypes.AccessPolicy{SourceCIDRs: slices.Repeat(list("10.0.0.0/8"), 33)},
			"source_cidrs has 33 entries, at most 32 allowed"},
		{"v4 too long", c("10.0.0.0/33"), `source_cidrs[0] "10.0.0.0/33": prefix length "33" is out of range (0-32 for IPv4)`},
		{"v6 too long", c("2001:db8::/129"), `source_cidrs[0] "2001:db8::/129": prefix length "129" is out of range (0-128 for IPv6)`},
		{"negative", c("10.0.0.0/-1"), `source_cidrs[0] "10.0.0.0/-1": prefix length "-1" is out of range (0-32 for IPv4)`},
		{"no length", c("10.0.0.0/"), `source_cidrs[0] "10.0.0.0/": prefix length "" is out of range (0-32 for IPv4)`},
		{"bare v4", c("10.1.2.3"), `source_cidrs[0] "10.1.2.3": a single address needs a prefix length: write "10.1.2.3/32"`},
		{"bare v6", c("10.0.0.0/8", "2001:db8::1"), `source_cidrs[1] "2001:db8::1": a single address needs a prefix length: write "2001:db8::1/128"`},
		{"host bits", c("10.1.2.3/8"), `source_cidrs[0] "10.1.2.3/8": host bits are set; write "10.0.0.0/8" for the network or "10.1.2.3/32" for one address`},
		{"garbage", c("localhost"), `source_cidrs[0] "localhost": not a CIDR; write an address and a prefix length, e.g. 10.0.0.0/8 or 2001:db8::/32`},
		{"bad addr", c("10.0.0.256/8"), `source_cidrs[0] "10.0.0.256/8": "10.0.0.256" is not an IPv4 or IPv6 address`},
		{"zone", c("fe80::%eth0/64"), `source_cidrs[0] "fe80::%eth0/64": an IPv6 zone (%eth0) is not allowed`},
		{"empty cidr", c(""), `source_cidrs[0] "": not a CIDR; write an address and a prefix length, e.g. 10.0.0.0/8 or 2001:db8::/32`},

		{"17 windows", &apitypes.AccessPolicy{TimeWindows: slices.Repeat([]apitypes.TimeWindow{{Start: "01:00", End: "02:00"}}, 17)},
			"time_windows has 17 entries, at most 16 allowed"},
		{"day case", w(list("mon", "Tue"), "09:00", "17:00", ""), `time_windows[0]: days[1] "Tue": use mon, tue, wed, thu, fri, sat or sun (lowercase)`},
		{"day long", w(list("monday"), "09:00", "17:00", ""), `time_windows[0]: days[0] "monday": use mon, tue, wed, thu, fri, sat or sun (lowercase)`},
		{"day twice", w(list("mon", "tue", "mon"), "09:00", "17:00", ""), `time_windows[0]: days[2] "mon" is listed twice`},
		{"start short", w(nil, "9:00", "17:00", ""), `time_windows[0]: start "9:00": must be HH:MM, e.g. 09:00`},
		{"start empty", w(nil, "", "17:00", ""), `time_windows[0]: start "": must be HH:MM, e.g. 09:00`},
		{"start seconds", w(nil, "09:00:00", "17:00", ""), `time_windows[0]: start "09:00:00": must be HH:MM, e.g. 09:00`},
		{"start 24", w(nil, "24:00", "06:00", ""), `time_windows[0]: start "24:00": must be between 00:00 and 23:59`},
		{"start minute", w(nil, "09:60", "17:00", ""), `time_windows[0]: start "09:60": must be between 00:00 and 23:59`},
		{"end 24:01", w(nil, "09:00", "24:01", ""), `time_windows[0]: end "24:01": must be between 00:00 and 24:00`},
		{"end 25", w(nil, "09:00", "25:00", ""), `time_windows[0]: end "25:00": must be between 00:00 and 24:00`},
		{"end dot", w(nil, "09:00", "17.00", ""), `time_windows[0]: end "17.00": must be HH:MM, e.g. 09:00`},
		{"start == end", w(nil, "09:00", "09:00", ""), `time_windows[0]: start and end are both "09:00"; for the whole day use start "00:00" and end "24:00"`},
		{"unknown tz", w(nil, "09:00", "17:00", "Mars/Base"), `time_windows[0]: unknown timezone "Mars/Base"`},
		{"local tz", w(nil, "09:00", "17:00", "Local"), `time_windows[0]: timezone "Local" is not allowed; name an IANA zone such as "Europe/Berlin"`},
		{"tz case", w(nil, "09:00", "17:00", "europe/berlin"), `time_windows[0]: unknown timezone "europe/berlin"`},
		{"second window", &apitypes.AccessPolicy{TimeWindows: []apitypes.TimeWindow{{Start: "01:00", End: "02:00"}, {Start: "1:00", End: "02:00"}}},
			`time_windows[1]: start "1:00": must be HH:MM, e.g. 09:00`},
	}
	for _, tt := range tests {
		checkErr(t, tt.name, ValidateAccessPolicy(tt.ap), tt.err)
	}
}

func TestActions(t *testing.T) {
	if len(Actions) != 39 {
		t.Errorf("len(Actions) = %d, want 39 (11 secret, 9 KMS, 8 access, 2 audit, 9 cluster)", len(Actions))
	}
	seen := make(map[string]bool)
	for _, a := range Actions {
		if seen[a] {
			t.Errorf("action %q listed twice", a)
		}
		seen[a] = true
		if !IsAction(a) {
			t.Errorf("IsAction(%q) = false", a)
		}
	}
	for _, a := range []string{"createToken", "listKeys", "queryAudit", "verifyAudit", "whoami", "sys.restore", "sys.transferLeadership"} {
		if !IsAction(a) {
			t.Errorf("IsAction(%q) = false", a)
		}
	}
	for _, a := range []string{"", "*", "getSecret", "GetSecretValue", "restore", "sys.*", "sys.Init"} {
		if IsAction(a) {
			t.Errorf("IsAction(%q) = true", a)
		}
	}
}

func TestBuiltinPolicies(t *testing.T) {
	bp := BuiltinPolicies()
	names := []string{"admin", "secrets-read-access", "secrets-reader", "secrets-writer", "kms-admin"}
	if len(bp) != len(names) {
		t.Fatalf("%d built-in policies, want %d", len(bp), len(names))
	}
	for _, n := range names {
		p := bp[n]
		if p == nil {
			t.Fatalf("built-in %q missing", n)
		}
		if p.Name != n || !p.BuiltIn || !IsBuiltin(n) {
			t.Errorf("built-in %q: Name %q, BuiltIn %v, IsBuiltin %v", n, p.Name, p.BuiltIn, IsBuiltin(n))
		}
		if err := ValidatePolicy(p); err != nil {
			t.Errorf("built-in %q is invalid: %v", n, err)
		}
	}
	for _, n := range []string{"", "Admin", "root", "secrets", "kms"} {
		if IsBuiltin(n) {
			t.Errorf("IsBuiltin(%q) = true", n)
		}
	}

	// Fresh copies: mutating one result must not leak into the next.
	bp["secrets-reader"].Rules[0].Actions[0] = "deleteSecret"
	bp["admin"].Rules = nil
	delete(bp, "kms-admin")
	again := BuiltinPolicies()
	if slices.Contains(again["secrets-reader"].Rules[0].Actions, "deleteSecret") || len(again["admin"].Rules) != 1 || again["kms-admin"] == nil {
		t.Error("BuiltinPolicies returned shared state")
	}
}

// TestBuiltinPolicyMatrix checks every built-in policy against every action,
// with and without a path, against SPEC §2's list.
func TestBuiltinPolicyMatrix(t *testing.T) {
	kms := list("createKey", "describeKey", "listKeys", "rotateKey", "disableKey", "enableKey",
		"scheduleKeyDeletion", "cancelKeyDeletion", "listKeyBindings")
	want := map[string][]string{
		"admin":               Actions,
		"secrets-read-access": list("describeSecret", "listSecrets", "queryAudit"),
		"secrets-reader":      list("getSecretValue", "batchGetSecretValue", "describeSecret", "listSecrets"),
		"secrets-writer": list("createSecret", "describeSecret", "listSecrets", "getSecretValue", "batchGetSecretValue",
			"putSecretValue", "generateSecret", "updateSecret", "rebindSecretKey"),
		"kms-admin": kms,
	}
	now := time.Date(2025, 6, 14, 10, 15, 0, 0, time.UTC)
	src := netip.MustParseAddr("192.0.2.1")
	for name, p := range BuiltinPolicies() {
		for _, action := range Actions {
			for _, path := range list("", "/app/prod/db", "/x") {
				d := Evaluate([]*Policy{p}, Request{Action: action, Path: path, Source: src, Time: now})
				if exp := slices.Contains(want[name], action); d.Allowed != exp {
					t.Errorf("%s: %s on %q: allowed %v (%s), want %v", name, action, path, d.Allowed, d.Reason, exp)
				}
			}
		}
	}
	// The point of secrets-read-access: metadata and history, never values.
	for _, a := range list("getSecretValue", "batchGetSecretValue") {
		if d := Evaluate([]*Policy{BuiltinPolicies()["secrets-read-access"]}, Request{Action: a, Path: "/a"}); d.Allowed {
			t.Errorf("secrets-read-access allows %s", a)
		}
	}
}

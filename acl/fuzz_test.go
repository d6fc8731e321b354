package acl

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
)

// FuzzPolicy parses a policy from JSON, validates it, and evaluates it: a
// policy that validates must be within the size limits (so Apply's
// CheckPolicyLimits accepts it), and no policy, valid or not, may make
// validation or evaluation panic.
func FuzzPolicy(f *testing.F) {
	f.Add(`{"name":"app","rules":[{"effect":"allow","actions":["getSecretValue"],"paths":["/app/prod/*"]}]}`, "getSecretValue", "/app/prod/db", "10.1.2.3", int64(0))
	f.Add(`{"name":"d","rules":[{"effect":"deny","actions":["*"],"paths":["*"],"conditions":{"source_cidrs":["10.0.0.0/8"],"time_windows":[{"days":["mon"],"start":"22:00","end":"06:00","timezone":"Europe/Berlin"}]}}]}`, "putSecretValue", "/x", "10.0.0.1", int64(1750000000e9))
	f.Add(`{"name":"x","rules":[{"effect":"allow","actions":["sys.*"],"paths":["/a/*/b"]}]}`, "sys.join", "", "::1", int64(-1))
	f.Fuzz(func(t *testing.T, policyJSON, action, path, src string, nanos int64) {
		var p Policy
		if json.Unmarshal([]byte(policyJSON), &p) != nil {
			return
		}
		valid := ValidatePolicy(&p) == nil
		if valid {
			if err := CheckPolicyLimits(&p); err != nil {
				t.Fatalf("valid policy over the limits: %v", err)
			}
		}
		source, _ := netip.ParseAddr(src)
		req := Request{Action: action, Path: path, Source: source, Time: time.Unix(0, nanos)}
		d := Evaluate([]*Policy{&p}, req)
		if d.Allowed && action == "" {
			t.Fatal("allowed an empty action")
		}
		// A deny-everything policy added to any set wins.
		denyAll := &Policy{Name: "deny", Rules: []Rule{{Effect: EffectDeny, Actions: []string{"*"}, Paths: []string{"*"}}}}
		if Evaluate([]*Policy{&p, denyAll}, req).Allowed {
			t.Fatal("deny did not win")
		}
		tok := &TokenInfo{Policies: []string{p.Name, p.Name}}
		get := func(n string) (*Policy, bool) { return &p, n == p.Name }
		a := Authorize(AuthzRequest{Token: tok, Policies: ResolvePolicies(nil, tok.Policies, get), Action: action, Path: path, Source: source, Now: req.Time})
		if a.Allowed && RequiresAdmin(action) {
			t.Fatal("admin action allowed without admin")
		}
	})
}

// FuzzConditions checks source CIDRs and time windows: validation never
// panics; a condition that validates is never "broken" when evaluated, and
// an address is in a CIDR exactly when netip says so.
func FuzzConditions(f *testing.F) {
	f.Add("10.0.0.0/8", "10.1.2.3", "mon,fri", "09:00", "18:00", "Europe/Berlin", int64(1750000000e9))
	f.Add("::ffff:10.0.0.0/104", "10.1.2.3", "", "22:00", "06:00", "UTC", int64(0))
	f.Add("2001:db8::/32", "2001:db8::1%eth0", "sun", "00:00", "24:00", "America/New_York", int64(-1<<62))
	f.Add("10.0.0.1", "garbage", "Mon", "9:00", "25:00", "Local", int64(1<<62))
	f.Fuzz(func(t *testing.T, cidr, addr, days, start, end, tz string, nanos int64) {
		w := apitypes.TimeWindow{Start: start, End: end, Timezone: tz}
		if days != "" {
			w.Days = strings.Split(days, ",")
		}
		ap := &apitypes.AccessPolicy{SourceCIDRs: []string{cidr}, TimeWindows: []apitypes.TimeWindow{w}}
		err := ValidateAccessPolicy(ap)
		src, _ := netip.ParseAddr(addr)
		now := time.Unix(0, nanos)
		ok, reason := CheckAccessPolicy(ap, src, now)
		if !ok && reason == "" {
			t.Fatal("refused without a reason")
		}
		r := checkConditions(ap.SourceCIDRs, ap.TimeWindows, src, now)
		if err == nil {
			if r.sourceBroken || r.timeBroken {
				t.Fatalf("a valid condition evaluated as broken: %+v", r)
			}
			p := netip.MustParsePrefix(cidr)
			want := src.IsValid() && normalizeAddr(src).Is4() == p.Addr().Unmap().Is4() && p.Contains(normalizeAddr(src))
			if p.Addr().Is4In6() {
				want = r.sourceOK // mapped prefixes are normalised: only check no panic
			}
			if r.sourceOK != want {
				t.Fatalf("InCIDRs(%s, %s) = %v, want %v", cidr, addr, r.sourceOK, want)
			}
		}
	})
}

// FuzzCheckGrant checks the source_cidrs rule of createToken: a network
// accepted as inside the caller's must have both ends inside it.
func FuzzCheckGrant(f *testing.F) {
	f.Add("10.1.0.0/16", "10.0.0.0/8")
	f.Add("0.0.0.0/0", "10.0.0.0/8")
	f.Add("::ffff:10.1.0.0/112", "10.0.0.0/8")
	f.Add("2001:db8::/48", "2001:db8::/32")
	f.Fuzz(func(t *testing.T, inner, outer string) {
		caller := &TokenInfo{Policies: []string{PolicyAdmin}, SourceCIDRs: []string{outer}}
		if CheckGrant(caller, Grant{Policies: []string{"x"}, SourceCIDRs: []string{inner}}) != nil {
			return
		}
		p, err1 := parseCIDR(inner)
		q, err2 := parseCIDR(outer)
		if err1 != nil || err2 != nil {
			t.Fatalf("accepted unparseable %q in %q", inner, outer)
		}
		last := p.Addr()
		for i := p.Bits(); i < p.Addr().BitLen(); i++ {
			last = setBit(last, i)
		}
		if !q.Contains(p.Addr()) || !q.Contains(last) {
			t.Fatalf("%q (%s–%s) accepted inside %q", inner, p.Addr(), last, outer)
		}
	})
}

func setBit(a netip.Addr, i int) netip.Addr {
	b := a.AsSlice()
	b[i/8] |= 0x80 >> (i % 8)
	out, _ := netip.AddrFromSlice(b)
	return out
}

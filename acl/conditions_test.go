package acl

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
)

func TestInCIDRs(t *testing.T) {
	tests := []struct {
		cidrs []string
		ip    string // "" is the zero netip.Addr
		want  bool
	}{
		{list("10.0.0.0/8"), "10.1.2.3", true},
		{list("10.0.0.0/8"), "11.1.2.3", false},
		{list("10.1.2.3/32"), "10.1.2.3", true},
		{list("10.1.2.3/32"), "10.1.2.4", false},
		{list("0.0.0.0/0"), "203.0.113.1", true},
		{list("192.0.2.0/24", "10.0.0.0/8"), "10.9.9.9", true}, // any entry
		{list("2001:db8::/32"), "2001:db8:1::1", true},
		{list("2001:db8::/32"), "2001:db9::1", false},
		{list("::1/128"), "::1", true},
		{list("::/0"), "2001:db8::1", true},
		{list("10.0.0.0/8"), "::ffff:10.1.2.3", true},   // mapped address is unmapped first
		{list("10.0.0.0/8"), "::ffff:11.1.2.3", false},  //
		{list("::ffff:10.0.0.0/104"), "10.1.2.3", true}, // mapped prefix means its IPv4 network
		{list("::ffff:10.0.0.0/104"), "::ffff:10.1.2.3", true},
		{list("::ffff:10.0.0.0/104"), "11.1.2.3", false},
		{list("::/0"), "10.1.2.3", false},               // an IPv6 prefix doesn't cover IPv4 clients
		{list("0.0.0.0/0"), "2001:db8::1", false},       // nor the other way round
		{list("fe80::/10"), "fe80::1%eth0", true},       // zone dropped
		{list("bogus", "10.0.0.0/8"), "10.1.2.3", true}, // unparseable entries are skipped
		{list("bogus", "10.1.2.3"), "10.1.2.3", false},  // and never match
		{list("10.0.0.0/8"), "", false},                 // unknown source
		{list("0.0.0.0/0", "::/0"), "", false},          //
		{nil, "10.1.2.3", false},                        // no list, no match
	}
	for _, tt := range tests {
		var ip netip.Addr
		if tt.ip != "" {
			ip = netip.MustParseAddr(tt.ip)
		}
		if got := InCIDRs(tt.cidrs, ip); got != tt.want {
			t.Errorf("InCIDRs(%q, %s) = %v, want %v", tt.cidrs, tt.ip, got, tt.want)
		}
	}
}

func at(t *testing.T, zone, s string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	tm, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestTimeWindows(t *testing.T) {
	weekdays := list("mon", "tue", "wed", "thu", "fri")
	// 2025-06-16 is a Monday; 2025-06-14 a Saturday, 2025-06-15 a Sunday.
	tests := []struct {
		name string
		w    apitypes.TimeWindow
		now  time.Time
		want bool
	}{
		{"office start", apitypes.TimeWindow{Days: weekdays, Start: "09:00", End: "18:00", Timezone: "Europe/Berlin"}, at(t, "Europe/Berlin", "2025-06-16 09:00"), true},
		{"office before", apitypes.TimeWindow{Days: weekdays, Start: "09:00", End: "18:00", Timezone: "Europe/Berlin"}, at(t, "Europe/Berlin", "2025-06-16 08:59"), false},
		{"office last minute", apitypes.TimeWindow{Days: weekdays, Start: "09:00", End: "18:00", Timezone: "Europe/Berlin"}, at(t, "Europe/Berlin", "2025-06-16 17:59"), true},
		{"office end is exclusive", apitypes.TimeWindow{Days: weekdays, Start: "09:00", End: "18:00", Timezone: "Europe/Berlin"}, at(t, "Europe/Berlin", "2025-06-16 18:00"), false},
		{"office saturday", apitypes.TimeWindow{Days: weekdays, Start: "09:00", End: "18:00", Timezone: "Europe/Berlin"}, at(t, "Europe/Berlin", "2025-06-14 10:00"), false},
		{"zone decides, not UTC", apitypes.TimeWindow{Days: weekdays, Start: "09:00", End: "18:00", Timezone: "Europe/Berlin"}, time.Date(2025, 6, 16, 7, 30, 0, 0, time.UTC), true},
		{"zone decides the day", apitypes.TimeWindow{Days: list("mon"), Start: "00:00", End: "02:00", Timezone: "Asia/Tokyo"}, time.Date(2025, 6, 15, 16, 0, 0, 0, time.UTC), true},
		{"empty zone is UTC", apitypes.TimeWindow{Start: "09:00", End: "10:00"}, time.Date(2025, 6, 16, 9, 30, 0, 0, time.UTC), true},
		{"empty zone is UTC, outside", apitypes.TimeWindow{Start: "09:00", End: "10:00"}, at(t, "Europe/Berlin", "2025-06-16 09:30"), false},
		{"no days is every day", apitypes.TimeWindow{Start: "09:00", End: "10:00"}, time.Date(2025, 6, 15, 9, 0, 0, 0, time.UTC), true},

		// Across midnight: the part after midnight belongs to the start day.
		{"overnight before start", apitypes.TimeWindow{Days: list("mon"), Start: "22:00", End: "06:00"}, time.Date(2025, 6, 16, 21, 59, 0, 0, time.UTC), false},
		{"overnight start", apitypes.TimeWindow{Days: list("mon"), Start: "22:00", End: "06:00"}, time.Date(2025, 6, 16, 22, 0, 0, 0, time.UTC), true},
		{"overnight before midnight", apitypes.TimeWindow{Days: list("mon"), Start: "22:00", End: "06:00"}, time.Date(2025, 6, 16, 23, 59, 59, 0, time.UTC), true},
		{"overnight tue morning is monday's", apitypes.TimeWindow{Days: list("mon"), Start: "22:00", End: "06:00"}, time.Date(2025, 6, 17, 0, 0, 0, 0, time.UTC), true},
		{"overnight tue 05:59", apitypes.TimeWindow{Days: list("mon"), Start: "22:00", End: "06:00"}, time.Date(2025, 6, 17, 5, 59, 0, 0, time.UTC), true},
		{"overnight end exclusive", apitypes.TimeWindow{Days: list("mon"), Start: "22:00", End: "06:00"}, time.Date(2025, 6, 17, 6, 0, 0, 0, time.UTC), false},
		{"overnight mon morning is sunday's", apitypes.TimeWindow{Days: list("mon"), Start: "22:00", End: "06:00"}, time.Date(2025, 6, 16, 5, 0, 0, 0, time.UTC), false},
		{"overnight tue evening", apitypes.TimeWindow{Days: list("mon"), Start: "22:00", End: "06:00"}, time.Date(2025, 6, 17, 22, 30, 0, 0, time.UTC), false},
		{"overnight sun into mon", apitypes.TimeWindow{Days: list("sun"), Start: "22:00", End: "06:00"}, time.Date(2025, 6, 16, 3, 0, 0, 0, time.UTC), true},
		{"overnight sat into sun", apitypes.TimeWindow{Days: list("sat"), Start: "20:00", End: "02:00", Timezone: "Europe/Berlin"}, at(t, "Europe/Berlin", "2025-06-15 01:30"), true},
		{"overnight sun morning not sunday's", apitypes.TimeWindow{Days: list("sun"), Start: "20:00", End: "02:00", Timezone: "Europe/Berlin"}, at(t, "Europe/Berlin", "2025-06-15 01:30"), false},
		{"overnight every day", apitypes.TimeWindow{Start: "22:00", End: "06:00"}, time.Date(2025, 6, 18, 3, 0, 0, 0, time.UTC), true},
		{"overnight every day, midday", apitypes.TimeWindow{Start: "22:00", End: "06:00"}, time.Date(2025, 6, 18, 12, 0, 0, 0, time.UTC), false},
		{"noon to midnight by wrap", apitypes.TimeWindow{Days: list("mon"), Start: "12:00", End: "00:00"}, time.Date(2025, 6, 16, 23, 59, 0, 0, time.UTC), true},
		{"noon to midnight, tue 00:00", apitypes.TimeWindow{Days: list("mon"), Start: "12:00", End: "00:00"}, time.Date(2025, 6, 17, 0, 0, 0, 0, time.UTC), false},

		// 24:00 ends at midnight without crossing it.
		{"to 24:00, last minute", apitypes.TimeWindow{Days: list("sat"), Start: "18:00", End: "24:00"}, time.Date(2025, 6, 14, 23, 59, 59, 0, time.UTC), true},
		{"to 24:00, start", apitypes.TimeWindow{Days: list("sat"), Start: "18:00", End: "24:00"}, time.Date(2025, 6, 14, 18, 0, 0, 0, time.UTC), true},
		{"to 24:00, before", apitypes.TimeWindow{Days: list("sat"), Start: "18:00", End: "24:00"}, time.Date(2025, 6, 14, 17, 59, 0, 0, time.UTC), false},
		{"to 24:00, next midnight", apitypes.TimeWindow{Days: list("sat"), Start: "18:00", End: "24:00"}, time.Date(2025, 6, 15, 0, 0, 0, 0, time.UTC), false},
		{"whole sunday", apitypes.TimeWindow{Days: list("sun"), Start: "00:00", End: "24:00"}, time.Date(2025, 6, 15, 0, 0, 0, 0, time.UTC), true},
		{"whole sunday, monday", apitypes.TimeWindow{Days: list("sun"), Start: "00:00", End: "24:00"}, time.Date(2025, 6, 16, 0, 0, 0, 0, time.UTC), false},

		// Europe/Berlin springs forward on Sun 2025-03-30 (02:00 CET -> 03:00 CEST, 01:00 UTC).
		{"berlin before DST 09:30 CET", apitypes.TimeWindow{Start: "09:00", End: "17:00", Timezone: "Europe/Berlin"}, time.Date(2025, 3, 29, 8, 30, 0, 0, time.UTC), true},
		{"berlin before DST 08:30 CET", apitypes.TimeWindow{Start: "09:00", End: "17:00", Timezone: "Europe/Berlin"}, time.Date(2025, 3, 29, 7, 30, 0, 0, time.UTC), false},
		{"berlin DST day 09:30 CEST", apitypes.TimeWindow{Start: "09:00", End: "17:00", Timezone: "Europe/Berlin"}, time.Date(2025, 3, 30, 7, 30, 0, 0, time.UTC), true},
		{"berlin DST day 16:30 CEST", apitypes.TimeWindow{Start: "09:00", End: "17:00", Timezone: "Europe/Berlin"}, time.Date(2025, 3, 30, 14, 30, 0, 0, time.UTC), true},
		{"berlin DST day 17:30 CEST", apitypes.TimeWindow{Start: "09:00", End: "17:00", Timezone: "Europe/Berlin"}, time.Date(2025, 3, 30, 15, 30, 0, 0, time.UTC), false},
		{"berlin skipped hour never happens, 01:59 CET", apitypes.TimeWindow{Start: "02:00", End: "02:30", Timezone: "Europe/Berlin"}, time.Date(2025, 3, 30, 0, 59, 0, 0, time.UTC), false},
		{"berlin skipped hour never happens, 03:00 CEST", apitypes.TimeWindow{Start: "02:00", End: "02:30", Timezone: "Europe/Berlin"}, time.Date(2025, 3, 30, 1, 0, 0, 0, time.UTC), false},
		{"berlin overnight over spring forward", apitypes.TimeWindow{Days: list("sat"), Start: "22:00", End: "06:00", Timezone: "Europe/Berlin"}, time.Date(2025, 3, 30, 3, 30, 0, 0, time.UTC), true},      // 05:30 CEST
		{"berlin overnight over spring forward, end", apitypes.TimeWindow{Days: list("sat"), Start: "22:00", End: "06:00", Timezone: "Europe/Berlin"}, time.Date(2025, 3, 30, 4, 0, 0, 0, time.UTC), false}, // 06:00 CEST
		// ...and falls back on Sun 2025-10-26 (03:00 CEST -> 02:00 CET, 01:00 UTC): 02:xx happens twice.
		{"berlin repeated hour, first 02:30", apitypes.TimeWindow{Start: "02:00", End: "03:00", Timezone: "Europe/Berlin"}, time.Date(2025, 10, 26, 0, 30, 0, 0, time.UTC), true},
		{"berlin repeated hour, second 02:30", apitypes.TimeWindow{Start: "02:00", End: "03:00", Timezone: "Europe/Berlin"}, time.Date(2025, 10, 26, 1, 30, 0, 0, time.UTC), true},
		{"berlin repeated hour, 03:00 CET", apitypes.TimeWindow{Start: "02:00", End: "03:00", Timezone: "Europe/Berlin"}, time.Date(2025, 10, 26, 2, 0, 0, 0, time.UTC), false},
		{"berlin repeated hour, 01:59 CEST", apitypes.TimeWindow{Start: "02:00", End: "03:00", Timezone: "Europe/Berlin"}, time.Date(2025, 10, 25, 23, 59, 0, 0, time.UTC), false},
		{"berlin after fall back 09:30 CET", apitypes.TimeWindow{Days: list("mon"), Start: "09:00", End: "17:00", Timezone: "Europe/Berlin"}, time.Date(2025, 10, 27, 8, 30, 0, 0, time.UTC), true},
		{"berlin after fall back 08:30 CET", apitypes.TimeWindow{Days: list("mon"), Start: "09:00", End: "17:00", Timezone: "Europe/Berlin"}, time.Date(2025, 10, 27, 7, 30, 0, 0, time.UTC), false},

		// America/New_York springs forward on Sun 2025-03-09 (07:00 UTC) and falls back on Sun 2025-11-02 (06:00 UTC).
		{"new york fri 08:30 EST", apitypes.TimeWindow{Days: weekdays, Start: "09:00", End: "17:00", Timezone: "America/New_York"}, time.Date(2025, 3, 7, 13, 30, 0, 0, time.UTC), false},
		{"new york fri 09:30 EST", apitypes.TimeWindow{Days: weekdays, Start: "09:00", End: "17:00", Timezone: "America/New_York"}, time.Date(2025, 3, 7, 14, 30, 0, 0, time.UTC), true},
		{"new york mon 09:30 EDT", apitypes.TimeWindow{Days: weekdays, Start: "09:00", End: "17:00", Timezone: "America/New_York"}, time.Date(2025, 3, 10, 13, 30, 0, 0, time.UTC), true},
		{"new york mon 17:30 EDT", apitypes.TimeWindow{Days: weekdays, Start: "09:00", End: "17:00", Timezone: "America/New_York"}, time.Date(2025, 3, 10, 21, 30, 0, 0, time.UTC), false},
		{"new york DST sunday 03:30 EDT", apitypes.TimeWindow{Days: list("sun"), Start: "03:00", End: "04:00", Timezone: "America/New_York"}, time.Date(2025, 3, 9, 7, 30, 0, 0, time.UTC), true},
		{"new york DST sunday 01:59 EST", apitypes.TimeWindow{Days: list("sun"), Start: "03:00", End: "04:00", Timezone: "America/New_York"}, time.Date(2025, 3, 9, 6, 59, 0, 0, time.UTC), false},
		{"new york overnight over fall back, 22:00 EDT", apitypes.TimeWindow{Days: list("sat"), Start: "22:00", End: "06:00", Timezone: "America/New_York"}, time.Date(2025, 11, 2, 2, 0, 0, 0, time.UTC), true},
		{"new york overnight over fall back, 05:30 EST", apitypes.TimeWindow{Days: list("sat"), Start: "22:00", End: "06:00", Timezone: "America/New_York"}, time.Date(2025, 11, 2, 10, 30, 0, 0, time.UTC), true},
		{"new york overnight over fall back, 06:00 EST", apitypes.TimeWindow{Days: list("sat"), Start: "22:00", End: "06:00", Timezone: "America/New_York"}, time.Date(2025, 11, 2, 11, 0, 0, 0, time.UTC), false},
		{"new york mon after fall back 09:30 EST", apitypes.TimeWindow{Days: weekdays, Start: "09:00", End: "17:00", Timezone: "America/New_York"}, time.Date(2025, 11, 3, 14, 30, 0, 0, time.UTC), true},
		{"new york mon after fall back 08:30 EST", apitypes.TimeWindow{Days: weekdays, Start: "09:00", End: "17:00", Timezone: "America/New_York"}, time.Date(2025, 11, 3, 13, 30, 0, 0, time.UTC), false},
	}
	for _, tt := range tests {
		ap := &apitypes.AccessPolicy{TimeWindows: []apitypes.TimeWindow{tt.w}}
		if err := ValidateAccessPolicy(ap); err != nil {
			t.Fatalf("%s: invalid window: %v", tt.name, err)
		}
		if got, reason := CheckAccessPolicy(ap, netip.Addr{}, tt.now); got != tt.want {
			t.Errorf("%s: CheckAccessPolicy at %s = %v (%s), want %v", tt.name, tt.now.UTC().Format(time.RFC3339), got, reason, tt.want)
		}
		// The same window as a rule condition must agree.
		p := &Policy{Name: "p", Rules: []Rule{{Effect: EffectAllow, Actions: list("*"), Paths: list("*"), Conditions: &Conditions{TimeWindows: ap.TimeWindows}}}}
		if d := Evaluate([]*Policy{p}, Request{Action: "whoami", Time: tt.now}); d.Allowed != tt.want {
			t.Errorf("%s: Evaluate = %v (%s), want %v", tt.name, d.Allowed, d.Reason, tt.want)
		}
	}
}

func TestCheckAccessPolicy(t *testing.T) {
	satBerlin := time.Date(2025, 6, 14, 8, 15, 0, 0, time.UTC) // Sat 10:15 CEST
	monBerlin := time.Date(2025, 6, 16, 8, 15, 0, 0, time.UTC) // Mon 10:15 CEST
	office := []apitypes.TimeWindow{{Days: list("mon", "tue", "wed", "thu", "fri"), Start: "09:00", End: "18:00", Timezone: "Europe/Berlin"}}
	in := netip.MustParseAddr("10.1.2.3")
	out := netip.MustParseAddr("1.2.3.4")
	tests := []struct {
		name   string
		ap     *apitypes.AccessPolicy
		src    netip.Addr
		now    time.Time
		ok     bool
		reason string
	}{
		{"nil", nil, out, satBerlin, true, ""},
		{"empty", &apitypes.AccessPolicy{}, out, satBerlin, true, ""},
		{"source in", &apitypes.AccessPolicy{SourceCIDRs: list("10.0.0.0/8")}, in, satBerlin, true, ""},
		{"source mapped in", &apitypes.AccessPolicy{SourceCIDRs: list("10.0.0.0/8")}, netip.MustParseAddr("::ffff:10.1.2.3"), satBerlin, true, ""},
		{"source v6 in", &apitypes.AccessPolicy{SourceCIDRs: list("10.0.0.0/8", "2001:db8::/32")}, netip.MustParseAddr("2001:db8::1"), satBerlin, true, ""},
		{"source out", &apitypes.AccessPolicy{SourceCIDRs: list("10.0.0.0/8")}, out, satBerlin,
			false, "source 1.2.3.4 is not in the secret's source_cidrs"},
		{"source mapped out", &apitypes.AccessPolicy{SourceCIDRs: list("10.0.0.0/8")}, netip.MustParseAddr("::ffff:1.2.3.4"), satBerlin,
			false, "source 1.2.3.4 is not in the secret's source_cidrs"},
		{"source v6 out", &apitypes.AccessPolicy{SourceCIDRs: list("10.0.0.0/8")}, netip.MustParseAddr("2001:db8::1"), satBerlin,
			false, "source 2001:db8::1 is not in the secret's source_cidrs"},
		{"source unknown", &apitypes.AccessPolicy{SourceCIDRs: list("0.0.0.0/0")}, netip.Addr{}, satBerlin,
			false, "source (unknown) is not in the secret's source_cidrs"},
		{"time in", &apitypes.AccessPolicy{TimeWindows: office}, out, monBerlin, true, ""},
		{"time out", &apitypes.AccessPolicy{TimeWindows: office}, out, satBerlin,
			false, "outside the secret's time windows (now Sat 10:15 Europe/Berlin)"},
		{"time out, UTC window", &apitypes.AccessPolicy{TimeWindows: []apitypes.TimeWindow{{Start: "00:00", End: "01:00"}}}, out, satBerlin,
			false, "outside the secret's time windows (now Sat 08:15 UTC)"},
		{"second window matches", &apitypes.AccessPolicy{TimeWindows: append(office[:1:1], apitypes.TimeWindow{Days: list("sat"), Start: "10:00", End: "12:00", Timezone: "Europe/Berlin"})}, out, satBerlin, true, ""},
		{"both in", &apitypes.AccessPolicy{SourceCIDRs: list("10.0.0.0/8"), TimeWindows: office}, in, monBerlin, true, ""},
		{"source out, time in", &apitypes.AccessPolicy{SourceCIDRs: list("10.0.0.0/8"), TimeWindows: office}, out, monBerlin,
			false, "source 1.2.3.4 is not in the secret's source_cidrs"},
		{"source in, time out", &apitypes.AccessPolicy{SourceCIDRs: list("10.0.0.0/8"), TimeWindows: office}, in, satBerlin,
			false, "outside the secret's time windows (now Sat 10:15 Europe/Berlin)"},
		{"both out", &apitypes.AccessPolicy{SourceCIDRs: list("10.0.0.0/8"), TimeWindows: office}, out, satBerlin,
			false, "source 1.2.3.4 is not in the secret's source_cidrs; outside the secret's time windows (now Sat 10:15 Europe/Berlin)"},
		// Corrupt entries fail closed.
		{"broken cidr", &apitypes.AccessPolicy{SourceCIDRs: list("10.1.2.3")}, in, satBerlin,
			false, "source 10.1.2.3 is not in the secret's source_cidrs"},
		{"broken window", &apitypes.AccessPolicy{TimeWindows: []apitypes.TimeWindow{{Start: "00:00", End: "24:00", Timezone: "Mars/Base"}}}, in, satBerlin,
			false, "outside the secret's time windows (now Sat 08:15 UTC)"},
	}
	for _, tt := range tests {
		ok, reason := CheckAccessPolicy(tt.ap, tt.src, tt.now)
		if ok != tt.ok || reason != tt.reason {
			t.Errorf("%s: got (%v, %q), want (%v, %q)", tt.name, ok, reason, tt.ok, tt.reason)
		}
	}
}

// TestZoneCache checks that cached and fresh loads agree and that an unknown
// zone is not cached as valid.
func TestZoneCache(t *testing.T) {
	for range 2 {
		l, err := loadZone("America/New_York")
		if err != nil || l.String() != "America/New_York" {
			t.Fatalf("loadZone = %v, %v", l, err)
		}
		if _, err := loadZone("Mars/Base"); err == nil {
			t.Fatal("loadZone(Mars/Base) succeeded")
		}
	}
}

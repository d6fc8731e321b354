package acl

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	// Release images are FROM scratch: without the embedded database every
	// IANA zone but UTC would fail to load there.
	_ "time/tzdata"

	"github.com/cofferhq/coffer/apitypes"
)

// Limits on conditions and per-secret access policies.
const (
	MaxSourceCIDRs = 32
	MaxTimeWindows = 16
)

// dayNames maps the spelling of SPEC §2 to time.Weekday. Only lowercase
// three-letter names are accepted, so a policy reads the same everywhere.
var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// ValidateAccessPolicy checks a secret's access policy (SPEC §2 "Access
// policies"). A nil policy is valid and means no restriction. To validate a
// token's source_cidrs alone, pass &apitypes.AccessPolicy{SourceCIDRs: cidrs}.
func ValidateAccessPolicy(ap *apitypes.AccessPolicy) error {
	if ap == nil {
		return nil
	}
	return validateConditions(ap.SourceCIDRs, ap.TimeWindows)
}

func validateConditions(cidrs []string, windows []apitypes.TimeWindow) error {
	if len(cidrs) > MaxSourceCIDRs {
		return fmt.Errorf("source_cidrs has %d entries, at most %d allowed", len(cidrs), MaxSourceCIDRs)
	}
	for i, c := range cidrs {
		if err := validateCIDR(c); err != nil {
			return fmt.Errorf("source_cidrs[%d] %q: %w", i, c, err)
		}
	}
	if len(windows) > MaxTimeWindows {
		return fmt.Errorf("time_windows has %d entries, at most %d allowed", len(windows), MaxTimeWindows)
	}
	for i, w := range windows {
		if _, err := parseWindow(w); err != nil {
			return fmt.Errorf("time_windows[%d]: %w", i, err)
		}
	}
	return nil
}

// validateCIDR is stricter than parseCIDR: it explains the usual mistakes
// and refuses host bits, which usually mean the writer meant a single host
// (/32) or a different network than the one they'd get.
func validateCIDR(s string) error {
	slash := strings.LastIndexByte(s, '/')
	if slash < 0 {
		if a, err := netip.ParseAddr(s); err == nil {
			return fmt.Errorf("a single address needs a prefix length: write \"%s/%d\"", a, a.BitLen())
		}
		return fmt.Errorf("not a CIDR; write an address and a prefix length, e.g. 10.0.0.0/8 or 2001:db8::/32")
	}
	a, err := netip.ParseAddr(s[:slash])
	if err != nil {
		return fmt.Errorf("%q is not an IPv4 or IPv6 address", s[:slash])
	}
	if a.Zone() != "" {
		return fmt.Errorf("an IPv6 zone (%%%s) is not allowed", a.Zone())
	}
	if bits, err := strconv.Atoi(s[slash+1:]); err != nil || bits < 0 || bits > a.BitLen() {
		return fmt.Errorf("prefix length %q is out of range (0-%d for %s)", s[slash+1:], a.BitLen(), family(a))
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return err
	}
	if m := p.Masked(); m != p {
		return fmt.Errorf("host bits are set; write %q for the network or \"%s/%d\" for one address", m.String(), a, a.BitLen())
	}
	return nil
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// parseCIDR parses a prefix for matching. An IPv4-mapped IPv6 prefix is
// turned into its IPv4 form because addresses are unmapped before matching:
// both spellings of an IPv4 network must match the same clients.
func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, err
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// normalizeAddr unmaps IPv4-mapped IPv6 addresses (a dual-stack listener
// reports IPv4 peers as ::ffff:a.b.c.d) and drops the zone, which
// netip.Prefix.Contains would otherwise refuse.
func normalizeAddr(ip netip.Addr) netip.Addr {
	return ip.Unmap().WithZone("")
}

// InCIDRs reports whether ip is inside one of cidrs. Entries that don't
// parse never match, so corrupt data can't widen access. Used for a token's
// source_cidrs.
func InCIDRs(cidrs []string, ip netip.Addr) bool {
	in, _ := matchCIDRs(cidrs, ip)
	return in
}

// matchCIDRs also reports whether some entry could not be parsed, so that
// deny rules can fail closed.
func matchCIDRs(cidrs []string, ip netip.Addr) (in, broken bool) {
	ip = normalizeAddr(ip)
	for _, c := range cidrs {
		p, err := parseCIDR(c)
		if err != nil {
			broken = true
			continue
		}
		if ip.IsValid() && p.Contains(ip) {
			return true, broken
		}
	}
	return false, broken
}

// window is a validated apitypes.TimeWindow in minutes since local midnight.
type window struct {
	days       [7]bool // by time.Weekday; all true when the window lists no days
	start, end int     // end may be 1440 ("24:00"); end < start crosses midnight
	loc        *time.Location
}

func parseWindow(w apitypes.TimeWindow) (window, error) {
	var out window
	if len(w.Days) == 0 {
		out.days = [7]bool{true, true, true, true, true, true, true}
	}
	for i, d := range w.Days {
		wd, ok := dayNames[d]
		if !ok {
			return out, fmt.Errorf("days[%d] %q: use mon, tue, wed, thu, fri, sat or sun (lowercase)", i, d)
		}
		if out.days[wd] {
			return out, fmt.Errorf("days[%d] %q is listed twice", i, d)
		}
		out.days[wd] = true
	}
	var err error
	if out.start, err = parseClock(w.Start, false); err != nil {
		return out, fmt.Errorf("start %q: %w", w.Start, err)
	}
	if out.end, err = parseClock(w.End, true); err != nil {
		return out, fmt.Errorf("end %q: %w", w.End, err)
	}
	if out.start == out.end {
		return out, fmt.Errorf("start and end are both %q; for the whole day use start \"00:00\" and end \"24:00\"", w.Start)
	}
	if out.loc, err = loadZone(w.Timezone); err != nil {
		return out, err
	}
	return out, nil
}

// parseClock parses "HH:MM" (00:00–23:59, or 24:00 when allow24) into
// minutes. 24:00 exists so a window can run to the end of the day without
// crossing midnight.
func parseClock(s string, allow24 bool) (int, error) {
	if len(s) != 5 || s[2] != ':' || !isDigit(s[0]) || !isDigit(s[1]) || !isDigit(s[3]) || !isDigit(s[4]) {
		return 0, fmt.Errorf("must be HH:MM, e.g. 09:00")
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if allow24 && h == 24 && m == 0 {
		return 24 * 60, nil
	}
	if h > 23 || m > 59 {
		if allow24 {
			return 0, fmt.Errorf("must be between 00:00 and 24:00")
		}
		return 0, fmt.Errorf("must be between 00:00 and 23:59")
	}
	return h*60 + m, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// zones caches loaded locations: time.LoadLocation parses zone data on every
// call, and Evaluate runs on every request. Only valid names are stored, so
// the cache is bounded by the size of the tz database.
var zones sync.Map // string -> *time.Location

func loadZone(name string) (*time.Location, error) {
	switch name {
	case "", "UTC":
		return time.UTC, nil
	case "Local":
		// Would depend on each node's configuration; windows must mean the
		// same on every node of the cluster.
		return nil, fmt.Errorf("timezone \"Local\" is not allowed; name an IANA zone such as \"Europe/Berlin\"")
	}
	if l, ok := zones.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown timezone %q", name)
	}
	zones.Store(name, l)
	return l, nil
}

// contains reports whether t falls inside the window. Wall-clock time in the
// window's zone decides (t.In handles DST: on a transition day a 09:00 start
// is still 09:00 local). The part of an overnight window after midnight
// belongs to the day it started: days=[mon] 22:00–06:00 covers Monday 22:00
// to Tuesday 06:00.
func (w *window) contains(t time.Time) bool {
	lt := t.In(w.loc)
	wd := lt.Weekday()
	m := lt.Hour()*60 + lt.Minute()
	if w.start < w.end {
		return w.days[wd] && m >= w.start && m < w.end
	}
	return (w.days[wd] && m >= w.start) || (w.days[(wd+6)%7] && m < w.end)
}

// matchWindows reports whether now is inside one of windows, and whether
// some window could not be parsed (see matchCIDRs).
func matchWindows(windows []apitypes.TimeWindow, now time.Time) (in, broken bool) {
	for _, tw := range windows {
		w, err := parseWindow(tw)
		if err != nil {
			broken = true
			continue
		}
		if w.contains(now) {
			return true, broken
		}
	}
	return false, broken
}

// conditionResult is the outcome of checking source CIDRs and time windows.
// A condition is "broken" when it didn't match and some entry of it could not
// be parsed (data that slipped past validation).
type conditionResult struct {
	sourceOK, timeOK         bool
	sourceBroken, timeBroken bool
}

// ok reports whether every condition holds; an allow rule or an access
// policy needs this.
func (c conditionResult) ok() bool { return c.sourceOK && c.timeOK }

// okOrBroken treats unparseable conditions as holding, so a deny rule with
// corrupt conditions still denies: broken data must not widen access.
func (c conditionResult) okOrBroken() bool {
	return (c.sourceOK || c.sourceBroken) && (c.timeOK || c.timeBroken)
}

func checkConditions(cidrs []string, windows []apitypes.TimeWindow, src netip.Addr, now time.Time) conditionResult {
	r := conditionResult{sourceOK: true, timeOK: true}
	if len(cidrs) > 0 {
		in, broken := matchCIDRs(cidrs, src)
		r.sourceOK, r.sourceBroken = in, !in && broken
	}
	if len(windows) > 0 {
		in, broken := matchWindows(windows, now)
		r.timeOK, r.timeBroken = in, !in && broken
	}
	return r
}

// describeSource formats a source for a reason, the way it was matched.
func describeSource(src netip.Addr) string {
	if !src.IsValid() {
		return "(unknown)"
	}
	return normalizeAddr(src).String()
}

// describeTime formats now as "Sat 10:15 Europe/Berlin" in the first
// window's zone, so the reason shows the clock the user wrote windows for.
func describeTime(windows []apitypes.TimeWindow, now time.Time) string {
	loc, name := time.UTC, "UTC"
	if len(windows) > 0 {
		if l, err := loadZone(windows[0].Timezone); err == nil && windows[0].Timezone != "" {
			loc, name = l, windows[0].Timezone
		}
	}
	return now.In(loc).Format("Mon 15:04") + " " + name
}

// CheckAccessPolicy checks a secret's access policy: source must be inside
// one of its source_cidrs (if any) and now inside one of its time_windows (if
// any). A nil policy allows. The reason names every unmet condition. Entries
// that can't be parsed never match: the policy restricts, so it fails closed.
func CheckAccessPolicy(ap *apitypes.AccessPolicy, source netip.Addr, now time.Time) (ok bool, reason string) {
	if ap == nil {
		return true, ""
	}
	r := checkConditions(ap.SourceCIDRs, ap.TimeWindows, source, now)
	if r.ok() {
		return true, ""
	}
	var unmet []string
	if !r.sourceOK {
		unmet = append(unmet, fmt.Sprintf("source %s is not in the secret's source_cidrs", describeSource(source)))
	}
	if !r.timeOK {
		unmet = append(unmet, fmt.Sprintf("outside the secret's time windows (now %s)", describeTime(ap.TimeWindows, now)))
	}
	return false, strings.Join(unmet, "; ")
}

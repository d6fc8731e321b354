package acl

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Request is what Evaluate decides on.
type Request struct {
	Action string
	// Path is the secret path, or "" for actions without one (createToken,
	// listKeys, queryAudit, ...): only rules with path "*" cover those.
	Path   string
	Source netip.Addr // the client address, already resolved through trusted proxies
	Time   time.Time  // the request time; time windows are checked against it
}

// Decision is Evaluate's answer. Reason is human text for the
// PermissionDenied message and the logs; it names the deciding rule or the
// unmet condition.
type Decision struct {
	Allowed bool
	Reason  string
}

// Evaluate decides req against the caller's policies. A rule applies when
// its action matches (exact or "*"), its path matches (see matchPath) and its
// conditions hold. Any applicable deny rule denies, whatever the order of
// policies and rules; otherwise the request is allowed iff an applicable allow
// rule exists. When the only matching allow rules failed their conditions, the
// reason names the first such failure, so a user learns why rather than just
// that they were denied. Nil policies are skipped.
func Evaluate(policies []*Policy, req Request) Decision {
	return evaluate(policies, req)
}

func evaluate(policies []*Policy, req Request) Decision {
	if req.Action == "" {
		return Decision{Reason: "no action given"}
	}
	var allowedBy *Policy
	allowedRule := 0
	conditionFailure := ""
	for _, p := range policies {
		if p == nil {
			continue
		}
		for i := range p.Rules {
			r := &p.Rules[i]
			if !matchAction(r.Actions, req.Action) || !matchPaths(r.Paths, req.Path) {
				continue
			}
			cond := conditionResult{sourceOK: true, timeOK: true}
			if r.Conditions != nil {
				cond = checkConditions(r.Conditions.SourceCIDRs, r.Conditions.TimeWindows, req.Source, req.Time)
			}
			switch r.Effect {
			case EffectDeny:
				// A condition that can't be evaluated makes a deny apply:
				// corrupt data must never widen access.
				if cond.okOrBroken() {
					return Decision{Reason: "denied by policy " + strconv.Quote(p.Name) + " rule " + strconv.Itoa(i+1)}
				}
			case EffectAllow:
				if cond.ok() {
					if allowedBy == nil {
						allowedBy, allowedRule = p, i+1
					}
				} else if conditionFailure == "" {
					conditionFailure = describeConditionFailure(p.Name, i+1, r.Conditions, cond, req.Source, req.Time)
				}
			}
			// Any other effect is invalid data: it neither allows nor denies.
		}
	}
	if allowedBy != nil {
		return Decision{Allowed: true, Reason: "allowed by policy " + strconv.Quote(allowedBy.Name) + " rule " + strconv.Itoa(allowedRule)}
	}
	if conditionFailure != "" {
		return Decision{Reason: conditionFailure}
	}
	if req.Path == "" {
		return Decision{Reason: "no policy allows " + req.Action}
	}
	return Decision{Reason: "no policy allows " + req.Action + " on " + req.Path}
}

func describeConditionFailure(policy string, rule int, c *Conditions, r conditionResult, src netip.Addr, now time.Time) string {
	var unmet []string
	if !r.sourceOK {
		unmet = append(unmet, fmt.Sprintf("source %s is outside source_cidrs", describeSource(src)))
	}
	if !r.timeOK {
		unmet = append(unmet, fmt.Sprintf("time %s is outside time_windows", describeTime(c.TimeWindows, now)))
	}
	return fmt.Sprintf("rule %d of policy %q: %s", rule, policy, strings.Join(unmet, "; "))
}

func matchAction(actions []string, action string) bool {
	for _, a := range actions {
		if a == wildcard || a == action {
			return true
		}
	}
	return false
}

func matchPaths(patterns []string, path string) bool {
	for _, p := range patterns {
		if matchPath(p, path) {
			return true
		}
	}
	return false
}

// matchPath matches one rule path: "*" matches everything, including the
// empty path of path-less actions; "p/*" matches any path strictly below
// "p/" at any depth (not p itself, and not "p2/x": the match is on whole
// segments); anything else matches exactly. An empty path matches only "*",
// so a rule scoped to some secrets never grants a path-less action.
func matchPath(pattern, path string) bool {
	if pattern == wildcard {
		return true
	}
	if path == "" {
		return false
	}
	if dir, ok := strings.CutSuffix(pattern, wildcard); ok && strings.HasSuffix(dir, "/") {
		return len(path) > len(dir) && strings.HasPrefix(path, dir)
	}
	return pattern == path
}

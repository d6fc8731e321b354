package acl

import (
	"fmt"
	"strings"

	"github.com/cofferhq/coffer/apitypes"
)

// Rule effects.
const (
	EffectAllow = "allow"
	EffectDeny  = "deny"
)

// Limits on policies and tokens (SPEC §6): they bound the cost of one
// evaluation to at most MaxTokenPolicies × MaxRules × (MaxRuleActions +
// MaxRulePaths) comparisons, whatever a caller writes.
const (
	MaxRules         = 64
	MaxRuleActions   = 256
	MaxRulePaths     = 256
	MaxTokenPolicies = 32
	MaxPolicyNameLen = 64
	wildcard         = "*"
	prefixPathSuffix = "/*"
)

// Rule allows or denies Actions on Paths, optionally only under Conditions.
type Rule struct {
	Effect     string      `json:"effect" msgpack:"e"`  // "allow" | "deny"
	Actions    []string    `json:"actions" msgpack:"a"` // action names of SPEC §2 or "*"
	Paths      []string    `json:"paths" msgpack:"p"`   // exact path, "prefix/*" (any depth below prefix/), or "*"
	Conditions *Conditions `json:"conditions,omitempty" msgpack:"c,omitempty"`
}

// Conditions narrow when a rule applies: the source must be inside one of
// SourceCIDRs (if any) and the time inside one of TimeWindows (if any). They
// mean the same as a secret's access policy.
type Conditions struct {
	SourceCIDRs []string              `json:"source_cidrs,omitempty" msgpack:"cidrs,omitempty"`
	TimeWindows []apitypes.TimeWindow `json:"time_windows,omitempty" msgpack:"windows,omitempty"`
}

// Policy is a named list of rules; tokens carry policy names.
type Policy struct {
	Name    string `json:"name" msgpack:"n"`
	Rules   []Rule `json:"rules" msgpack:"r"`
	BuiltIn bool   `json:"built_in" msgpack:"b"`
}

// ValidatePolicyName checks a policy name: 1–64 of [a-z0-9_-], like KMS key
// names, so names are safe in CLI output and audit entries.
func ValidatePolicyName(name string) error {
	if name == "" || len(name) > MaxPolicyNameLen {
		return fmt.Errorf("policy name %q must be 1-%d characters", name, MaxPolicyNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("policy name %q: character %q is not allowed (use a-z 0-9 _ -)", name, c)
		}
	}
	return nil
}

// ValidatePolicy checks a policy's name and rules. Rules are numbered from 1
// in errors, as users count them in their JSON. It doesn't reject built-in
// names: refusing to overwrite a built-in policy is the caller's job
// (IsBuiltin), and the built-ins themselves must pass.
func ValidatePolicy(p *Policy) error {
	if p == nil {
		return fmt.Errorf("policy is required")
	}
	if err := ValidatePolicyName(p.Name); err != nil {
		return err
	}
	if len(p.Rules) == 0 {
		return fmt.Errorf("policy %q has no rules; it would grant nothing", p.Name)
	}
	if len(p.Rules) > MaxRules {
		return fmt.Errorf("policy %q has %d rules, at most %d allowed", p.Name, len(p.Rules), MaxRules)
	}
	for i := range p.Rules {
		if err := validateRule(&p.Rules[i]); err != nil {
			return fmt.Errorf("rule %d: %w", i+1, err)
		}
	}
	return nil
}

// CheckPolicyLimits checks only a policy's sizes (name, rules, actions and
// paths per rule): the part of ValidatePolicy that bounds evaluation cost,
// cheap and independent of anything but the policy, so Apply can re-check
// it on every node.
func CheckPolicyLimits(p *Policy) error {
	if len(p.Name) == 0 || len(p.Name) > MaxPolicyNameLen {
		return fmt.Errorf("policy name must be 1-%d characters", MaxPolicyNameLen)
	}
	if len(p.Rules) > MaxRules {
		return fmt.Errorf("policy %q has %d rules, at most %d allowed", p.Name, len(p.Rules), MaxRules)
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		if len(r.Actions) > MaxRuleActions {
			return fmt.Errorf("rule %d: actions has %d entries, at most %d allowed", i+1, len(r.Actions), MaxRuleActions)
		}
		if len(r.Paths) > MaxRulePaths {
			return fmt.Errorf("rule %d: paths has %d entries, at most %d allowed", i+1, len(r.Paths), MaxRulePaths)
		}
		if c := r.Conditions; c != nil && (len(c.SourceCIDRs) > MaxSourceCIDRs || len(c.TimeWindows) > MaxTimeWindows) {
			return fmt.Errorf("rule %d: too many conditions (at most %d source_cidrs and %d time_windows)", i+1, MaxSourceCIDRs, MaxTimeWindows)
		}
	}
	return nil
}

func validateRule(r *Rule) error {
	if r.Effect != EffectAllow && r.Effect != EffectDeny {
		return fmt.Errorf("effect %q must be %q or %q", r.Effect, EffectAllow, EffectDeny)
	}
	if len(r.Actions) == 0 {
		return fmt.Errorf("actions is empty (name actions, or \"*\" for all)")
	}
	if len(r.Actions) > MaxRuleActions {
		return fmt.Errorf("actions has %d entries, at most %d allowed", len(r.Actions), MaxRuleActions)
	}
	for _, a := range r.Actions {
		if a != wildcard && !IsAction(a) {
			return unknownAction(a)
		}
	}
	if len(r.Paths) == 0 {
		return fmt.Errorf("paths is empty (name paths, or \"*\" for all)")
	}
	if len(r.Paths) > MaxRulePaths {
		return fmt.Errorf("paths has %d entries, at most %d allowed", len(r.Paths), MaxRulePaths)
	}
	for _, p := range r.Paths {
		if err := validateRulePath(p); err != nil {
			return fmt.Errorf("path %q: %w", p, err)
		}
	}
	if r.Conditions != nil {
		return validateConditions(r.Conditions.SourceCIDRs, r.Conditions.TimeWindows)
	}
	return nil
}

// unknownAction suggests the right spelling when only the case is wrong,
// the commonest mistake with camelCase action names.
func unknownAction(a string) error {
	if len(a) > 64 {
		return fmt.Errorf("unknown action (a %d-byte name)", len(a))
	}
	for _, known := range Actions {
		if strings.EqualFold(a, known) {
			return fmt.Errorf("unknown action %q (did you mean %q?)", a, known)
		}
	}
	return fmt.Errorf("unknown action %q", a)
}

// validateRulePath accepts "*", an exact secret path, "/*" (every secret) or
// a secret path followed by "/*" (everything below it).
func validateRulePath(p string) error {
	if p == wildcard || p == prefixPathSuffix {
		return nil
	}
	base := p
	if strings.HasSuffix(p, prefixPathSuffix) {
		base = p[:len(p)-len(prefixPathSuffix)]
	}
	if strings.Contains(base, wildcard) {
		return fmt.Errorf("\"*\" is allowed only as the whole path or as a final \"/*\" (everything below a folder)")
	}
	if strings.HasSuffix(base, "/") {
		dir := strings.TrimRight(base, "/")
		if dir == "" {
			return fmt.Errorf("a path can't end in \"/\"; use \"/*\" for every secret")
		}
		return fmt.Errorf("a path can't end in \"/\"; use %q for everything below %s", dir+prefixPathSuffix, dir)
	}
	return apitypes.ValidatePath(base)
}

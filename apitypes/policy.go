package apitypes

// PolicyRule is one rule of a policy.
type PolicyRule struct {
	Effect     string            `json:"effect"`
	Actions    []string          `json:"actions"`
	Paths      []string          `json:"paths"`
	Conditions *PolicyConditions `json:"conditions,omitempty"`
}

// PolicyConditions restrict when a rule applies.
type PolicyConditions struct {
	SourceCIDRs []string     `json:"source_cidrs,omitempty"`
	TimeWindows []TimeWindow `json:"time_windows,omitempty"`
}

// Policy is a named set of rules; built-in policies can't be changed.
type Policy struct {
	Name    string       `json:"name"`
	Rules   []PolicyRule `json:"rules"`
	BuiltIn bool         `json:"built_in"`
}

type PutPolicyRequest struct {
	Name  string       `json:"name"`
	Rules []PolicyRule `json:"rules"`
}

type GetPolicyRequest struct {
	Name string `json:"name"`
	ReadOptions
}

type GetPolicyResponse struct {
	Policy Policy `json:"policy"`
	Index  uint64 `json:"index"`
}

type ListPoliciesRequest struct {
	ReadOptions
}

type ListPoliciesResponse struct {
	Policies []Policy `json:"policies"`
	Index    uint64   `json:"index"`
}

type DeletePolicyRequest struct {
	Name string `json:"name"`
}

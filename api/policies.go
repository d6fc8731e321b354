package api

import (
	"context"
	"sort"

	"github.com/cofferhq/coffer/acl"
	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/fsm"
)

const (
	evPutPolicy    = "acl.put_policy"
	evGetPolicy    = "acl.get_policy"
	evListPolicies = "acl.list_policies"
	evDeletePolicy = "acl.delete_policy"
)

func toACLPolicy(name string, rules []apitypes.PolicyRule) *acl.Policy {
	p := &acl.Policy{Name: name, Rules: make([]acl.Rule, len(rules))}
	for i, r := range rules {
		p.Rules[i] = acl.Rule{Effect: r.Effect, Actions: r.Actions, Paths: r.Paths}
		if r.Conditions != nil {
			p.Rules[i].Conditions = &acl.Conditions{SourceCIDRs: r.Conditions.SourceCIDRs, TimeWindows: r.Conditions.TimeWindows}
		}
	}
	return p
}

func fromACLPolicy(p *acl.Policy) apitypes.Policy {
	out := apitypes.Policy{Name: p.Name, BuiltIn: p.BuiltIn, Rules: make([]apitypes.PolicyRule, len(p.Rules))}
	for i, r := range p.Rules {
		out.Rules[i] = apitypes.PolicyRule{Effect: r.Effect, Actions: r.Actions, Paths: r.Paths}
		if r.Conditions != nil {
			out.Rules[i].Conditions = &apitypes.PolicyConditions{SourceCIDRs: r.Conditions.SourceCIDRs, TimeWindows: r.Conditions.TimeWindows}
		}
	}
	return out
}

func (s *Server) putPolicy(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.PutPolicyRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	// Authorized first (putPolicy needs admin): a caller who may not write
	// policies learns nothing from how its request would be judged.
	if err := s.authorize(ctx, rc, s.n.State(), evPutPolicy, "", nil); err != nil {
		return nil, err
	}
	if err := acl.ValidatePolicyName(req.Name); err != nil {
		return nil, invalid("%v", err)
	}
	if acl.IsBuiltin(req.Name) {
		return nil, errs.New(errs.FailedPrecondition, "policy %q is built in and can't be changed", req.Name)
	}
	p := toACLPolicy(req.Name, req.Rules)
	if err := acl.ValidatePolicy(p); err != nil {
		return nil, invalid("%v", err)
	}
	e := s.entry(rc, evPutPolicy, "")
	e.Reason = "policy " + req.Name
	res, err := s.submit(ctx, rc, fsm.CmdPutPolicy, &fsm.PutPolicy{Policy: *p}, e)
	if err != nil {
		return nil, err
	}
	return &apitypes.IndexResponse{Index: res.Index}, nil
}

func (s *Server) deletePolicy(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.DeletePolicyRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, rc, s.n.State(), evDeletePolicy, "", nil); err != nil {
		return nil, err
	}
	if err := acl.ValidatePolicyName(req.Name); err != nil {
		return nil, invalid("%v", err)
	}
	if acl.IsBuiltin(req.Name) {
		return nil, errs.New(errs.FailedPrecondition, "policy %q is built in and can't be deleted", req.Name)
	}
	e := s.entry(rc, evDeletePolicy, "")
	e.Reason = "policy " + req.Name
	res, err := s.submit(ctx, rc, fsm.CmdDeletePolicy, &fsm.DeletePolicy{Name: req.Name}, e)
	if err != nil {
		return nil, err
	}
	return &apitypes.IndexResponse{Index: res.Index}, nil
}

func (s *Server) getPolicy(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.GetPolicyRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	st, err := s.n.ReadState(ctx, req.ReadOptions)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, rc, st, evGetPolicy, "", nil); err != nil {
		return nil, err
	}
	if err := acl.ValidatePolicyName(req.Name); err != nil {
		return nil, invalid("%v", err)
	}
	p, ok := st.Policy(req.Name)
	if !ok {
		return nil, s.failed(ctx, rc, evGetPolicy, "", errs.New(errs.NotFound, "policy %q not found", req.Name))
	}
	if err := s.auditNow(ctx, rc, s.ok(rc, evGetPolicy, "")); err != nil {
		return nil, err
	}
	return &apitypes.GetPolicyResponse{Policy: fromACLPolicy(p), Index: st.Index}, nil
}

func (s *Server) listPolicies(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.ListPoliciesRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	st, err := s.n.ReadState(ctx, req.ReadOptions)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, rc, st, evListPolicies, "", nil); err != nil {
		return nil, err
	}
	if err := s.auditNow(ctx, rc, s.ok(rc, evListPolicies, "")); err != nil {
		return nil, err
	}
	resp := &apitypes.ListPoliciesResponse{Index: st.Index}
	for _, p := range acl.BuiltinPolicies() {
		resp.Policies = append(resp.Policies, fromACLPolicy(p))
	}
	st.Policies.Root().Walk(func(_ []byte, p *acl.Policy) bool {
		resp.Policies = append(resp.Policies, fromACLPolicy(p))
		return false
	})
	sort.Slice(resp.Policies, func(i, j int) bool { return resp.Policies[i].Name < resp.Policies[j].Name })
	return resp, nil
}

package api

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/cofferhq/coffer/acl"
	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/fsm"
)

const (
	evCreateToken = "auth.create_token"
	evRevokeToken = "auth.revoke_token"
	evListTokens  = "auth.list_tokens"
	evWhoami      = "auth.whoami"
	evInit        = "sys.init"
	maxTokenTTL   = 10 * 365 * 24 * time.Hour
)

// createToken mints a token within the caller's rights (SPEC §6). The
// caller is authorized before anything of the request is checked; whether
// its policies exist depends on state and is decided at apply, on the leader's state, so
// a caller can't probe policy names and a putPolicy just acknowledged by a
// follower is seen. The rights rules are checked here for an early, clear
// answer, and again at apply, where they are authoritative.
func (s *Server) createToken(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.CreateTokenRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	st := s.n.State()
	if err := s.authorize(ctx, rc, st, evCreateToken, "", nil); err != nil {
		return nil, err
	}
	if req.Name == "" || len(req.Name) > acl.MaxTokenNameLen {
		return nil, invalid("name is required (1-%d bytes)", acl.MaxTokenNameLen)
	}
	if err := acl.ValidateTokenPolicies(req.Policies); err != nil {
		return nil, invalid("%v", err)
	}
	var ttl time.Duration
	if req.TTL != "" {
		var err error
		ttl, err = time.ParseDuration(req.TTL)
		if err != nil || ttl < time.Second || ttl > maxTokenTTL {
			return nil, invalid("ttl must be a duration such as \"30m\" or \"24h\", between 1s and 10 years")
		}
	}
	if len(req.SourceCIDRs) > 0 {
		if err := acl.ValidateAccessPolicy(&apitypes.AccessPolicy{SourceCIDRs: req.SourceCIDRs}); err != nil {
			return nil, invalid("source_cidrs: %v", err)
		}
	}
	var expires int64
	if ttl != 0 {
		expires = time.Now().Add(ttl).UnixNano()
	}
	grant := acl.Grant{Policies: req.Policies, ExpiresAt: expires, SourceCIDRs: req.SourceCIDRs}
	if err := acl.CheckGrant(rc.tokenAt(st), grant); err != nil {
		return nil, s.failed(ctx, rc, evCreateToken, "", errs.New(errs.PermissionDenied, "%v", err))
	}
	token, accessor, err := acl.NewToken()
	if err != nil {
		return nil, fmt.Errorf("generate token: %w", err)
	}
	e := s.entry(rc, evCreateToken, "")
	e.Reason = "accessor " + accessor
	cmd := &fsm.CreateToken{Accessor: accessor, Hash: acl.HashToken(token), Name: req.Name, Policies: req.Policies, ExpiresAt: expires, SourceCIDRs: req.SourceCIDRs}
	res, err := s.submit(ctx, rc, fsm.CmdCreateToken, cmd, e)
	if err != nil {
		return nil, err
	}
	resp := &apitypes.CreateTokenResponse{Token: token, Accessor: accessor, Index: res.Index}
	if expires != 0 {
		x := fsm.FromNanos(expires)
		resp.ExpiresAt = &x
	}
	return resp, nil
}

func (s *Server) revokeToken(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.RevokeTokenRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	if req.Accessor == "" {
		return nil, invalid("accessor is required")
	}
	if err := s.authorize(ctx, rc, s.n.State(), evRevokeToken, "", nil); err != nil {
		return nil, err
	}
	e := s.entry(rc, evRevokeToken, "")
	e.Reason = "accessor " + req.Accessor
	res, err := s.submit(ctx, rc, fsm.CmdRevokeToken, &fsm.RevokeToken{Accessor: req.Accessor}, e)
	if err != nil {
		return nil, err
	}
	return &apitypes.IndexResponse{Index: res.Index}, nil
}

func (s *Server) listTokens(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.ListTokensRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	st, err := s.n.ReadState(ctx, req.ReadOptions)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, rc, st, evListTokens, "", nil); err != nil {
		return nil, err
	}
	if err := s.auditNow(ctx, rc, s.ok(rc, evListTokens, "")); err != nil {
		return nil, err
	}
	resp := &apitypes.ListTokensResponse{Tokens: []apitypes.Token{}, Index: st.Index}
	st.Tokens.Root().Walk(func(_ []byte, t *fsm.Token) bool {
		resp.Tokens = append(resp.Tokens, t.Meta())
		return false
	})
	sort.Slice(resp.Tokens, func(i, j int) bool { return resp.Tokens[i].CreatedAt.Before(resp.Tokens[j].CreatedAt) })
	return resp, nil
}

func (s *Server) whoami(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.WhoamiRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	st, err := s.n.ReadState(ctx, req.ReadOptions)
	if err != nil {
		return nil, err
	}
	// whoami only describes the caller's own token: every valid token may
	// call it, and it is checked at the state answered from.
	if err := s.authorize(ctx, rc, st, evWhoami, "", nil); err != nil {
		return nil, err
	}
	if err := s.auditNow(ctx, rc, s.ok(rc, evWhoami, "")); err != nil {
		return nil, err
	}
	return &apitypes.WhoamiResponse{Token: rc.token.Meta(), Index: st.Index}, nil
}

// initCluster creates the root token once per cluster.
func (s *Server) initCluster(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	if err := decode(raw, &struct{}{}); err != nil {
		return nil, err
	}
	st := s.n.State()
	if st.Initialized {
		return nil, errs.New(errs.AlreadyExists, "cluster is already initialized")
	}
	token, accessor, err := acl.NewToken()
	if err != nil {
		return nil, fmt.Errorf("generate token: %w", err)
	}
	rc.principal = apitypes.Principal{Accessor: accessor, Name: "root"}
	res, err := s.submit(ctx, rc, fsm.CmdInitRoot, &fsm.InitRoot{Accessor: accessor, Hash: acl.HashToken(token)}, s.entry(rc, evInit, ""))
	if err != nil {
		return nil, err
	}
	return &apitypes.InitResponse{RootToken: token, Accessor: accessor, Index: res.Index}, nil
}

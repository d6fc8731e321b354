package api

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/cofferhq/coffer/acl"
	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/fsm"
	"github.com/cofferhq/coffer/node"
)

// reqCtx is what an action knows about its request: who, from where, and
// the audit entry template every event of this request starts from.
type reqCtx struct {
	requestID string
	action    string
	source    netip.Addr
	token     *fsm.Token // nil for public actions called without a token
	// tokenInfo is token's authorization view, and tokenState the state
	// token was read from: decisions on another state look the token up
	// again there (a revoked token is refused at the state it is read at).
	tokenInfo  acl.TokenInfo
	tokenState *fsm.State
	principal  apitypes.Principal
	audited    bool // an entry of this request was committed
	// leaderRead, if set, is a leader read served without a heartbeat
	// round: the commit of this request's audit entry confirms it.
	leaderRead *node.LeaderRead
}

func (s *Server) newReqCtx(ctx context.Context, r *http.Request, action string, public bool) (*reqCtx, error) {
	rc := &reqCtx{requestID: node.RandomID(), action: actionName(action), source: s.sourceAddr(r)}
	if public {
		return rc, nil
	}
	tok, err := s.authenticate(r, rc.source)
	if err != nil {
		return nil, err
	}
	rc.setToken(tok, nil)
	rc.principal = apitypes.Principal{Accessor: tok.Accessor, Name: tok.Name}
	return rc, nil
}

// authenticate resolves the bearer token against the local state. A token
// created on another node may not have reached this one yet; in that case
// the node catches up with the leader once before refusing.
func (s *Server) authenticate(r *http.Request, source netip.Addr) (*fsm.Token, error) {
	h := r.Header.Get("Authorization")
	raw, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || raw == "" {
		return nil, errs.New(errs.Unauthenticated, "missing bearer token (Authorization: Bearer <token>)")
	}
	if !acl.LooksLikeToken(raw) {
		return nil, errs.New(errs.Unauthenticated, "invalid token")
	}
	hash := acl.HashToken(raw)
	tok, ok := s.n.State().TokenByHash(hash)
	if !ok {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		st, err := s.n.ReadState(ctx, apitypes.ReadOptions{Consistency: apitypes.ConsistencyLeader})
		if err != nil {
			// This node can't tell whether the token exists (no leader, or
			// still catching up): that is Unavailable, not a bad token.
			return nil, errs.New(errs.Unavailable, "can't check the token now: %s", errs.As(err).Message)
		}
		tok, ok = st.TokenByHash(hash)
	}
	if !ok {
		return nil, errs.New(errs.Unauthenticated, "invalid or revoked token")
	}
	info := tok.AuthzInfo()
	if d := acl.CheckToken(&info, source, time.Now()); !d.Allowed {
		return nil, errs.New(errs.Unauthenticated, "%s", d.Reason)
	}
	return tok, nil
}

// actionName is the action-table name of a route ("sys/join" → "sys.join").
func actionName(route string) string {
	if a, ok := acl.LookupRoute(route); ok {
		return a.Name
	}
	return strings.ReplaceAll(route, "/", ".")
}

func (rc *reqCtx) setToken(tok *fsm.Token, st *fsm.State) {
	rc.token, rc.tokenState = tok, st
	rc.tokenInfo = tok.AuthzInfo()
}

// tokenAt returns the caller's token as st holds it (nil if st doesn't
// hold it: revoked at or before st), and makes it the request's token.
func (rc *reqCtx) tokenAt(st *fsm.State) *acl.TokenInfo {
	if rc.token == nil {
		return nil
	}
	if rc.tokenState != st {
		tok, ok := st.Token(rc.token.Accessor)
		if !ok {
			return nil
		}
		rc.setToken(tok, st) // policies may have changed
	}
	return &rc.tokenInfo
}

// sourceAddr is the TCP peer, or the client named in X-Forwarded-For when
// the peer is a trusted proxy (the rightmost address that is not itself a
// trusted proxy).
func (s *Server) sourceAddr(r *http.Request) netip.Addr {
	peer := parseAddr(r.RemoteAddr)
	if !s.trusted(peer) {
		return peer
	}
	xff := r.Header.Values("X-Forwarded-For")
	hops := strings.Split(strings.Join(xff, ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h := strings.TrimSpace(hops[i])
		if h == "" {
			continue
		}
		a, err := netip.ParseAddr(h)
		if err != nil {
			return peer // malformed header: don't guess
		}
		a = a.Unmap()
		if !s.trusted(a) {
			return a
		}
		peer = a
	}
	return peer
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func parseAddr(hostport string) netip.Addr {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// entry returns an audit entry template for one event of this request.
func (s *Server) entry(rc *reqCtx, event, path string) apitypes.AuditEntry {
	src := ""
	if rc.source.IsValid() {
		src = rc.source.String()
	}
	return apitypes.AuditEntry{
		Node: s.n.ID(), RequestID: rc.requestID, Action: event, Principal: rc.principal,
		SourceIP: src, Path: path,
	}
}

// stillValid checks the caller's token in the state the request is served
// from: a read after min_index (or a leader read) must not be served to a
// token revoked at or before that index.
func (rc *reqCtx) stillValid(st *fsm.State) error {
	if rc.token == nil {
		return nil
	}
	if d := acl.CheckToken(rc.tokenAt(st), rc.source, time.Now()); !d.Allowed {
		return errs.New(errs.Unauthenticated, "%s", d.Reason)
	}
	return nil
}

// caller is the accessor whose token Apply re-checks.
func (rc *reqCtx) caller() string {
	if rc.token == nil {
		return ""
	}
	return rc.token.Accessor
}

// authorize checks the caller's policies for action on path (and the
// secret's access policy, if any). A denial is audited and returned.
func (s *Server) authorize(ctx context.Context, rc *reqCtx, st *fsm.State, event, path string, sec *fsm.Secret) error {
	return s.authorizeAs(ctx, rc, st, rc.action, event, path, sec)
}

// authorizeAs is authorize for an action other than the request's own (an
// action that implies another, e.g. generateSecret with create: true).
func (s *Server) authorizeAs(ctx context.Context, rc *reqCtx, st *fsm.State, action, event, path string, sec *fsm.Secret) error {
	d := s.decide(rc, st, action, path, sec)
	if d.Allowed {
		return nil
	}
	if d.Unauthenticated {
		return errs.New(errs.Unauthenticated, "%s", d.Reason)
	}
	e := s.entry(rc, event, path)
	e.Result, e.ErrorCode, e.Reason = apitypes.ResultDenied, string(errs.PermissionDenied), d.Reason
	if err := s.auditNow(ctx, rc, e); err != nil {
		return err
	}
	return errs.New(errs.PermissionDenied, "%s", d.Reason)
}

// decide is acl.Authorize for this request on st: the caller's token as st
// holds it (so a token revoked at or before st is refused), its policies in
// st, and the access policy of sec (the secret at path in st, or nil).
func (s *Server) decide(rc *reqCtx, st *fsm.State, action, path string, sec *fsm.Secret) acl.AuthzDecision {
	tok := rc.tokenAt(st)
	var buf [acl.MaxTokenPolicies]*acl.Policy
	pols := buf[:0]
	if tok != nil && len(tok.Policies) <= acl.MaxTokenPolicies {
		for _, n := range tok.Policies {
			if p, ok := st.Policy(n); ok {
				pols = append(pols, p)
			}
		}
	}
	req := acl.AuthzRequest{Token: tok, Policies: pols, Action: action, Path: path, Source: rc.source, Now: time.Now()}
	if sec != nil {
		req.AccessPolicy = sec.AccessPolicy
	}
	return acl.Authorize(req)
}

// auditNow commits audit entries of a read, a denial or a failed request
// through Raft and waits: auditing is fail-closed.
func (s *Server) auditNow(ctx context.Context, rc *reqCtx, entries ...apitypes.AuditEntry) error {
	env, err := fsm.NewEnvelope(fsm.CmdAuditOnly, &fsm.AuditOnly{}, "", entries)
	if err != nil {
		return err
	}
	res, err := s.n.Propose(ctx, env)
	if err != nil {
		return errs.New(errs.Unavailable, "the audit entry could not be committed (%s); nothing was returned", errs.As(err).Message)
	}
	rc.audited = true
	if res.Err != nil {
		return res.Err
	}
	return rc.leaderRead.Confirm()
}

// failed audits a request that reached its action but failed before a
// command was submitted, and returns err.
func (s *Server) failed(ctx context.Context, rc *reqCtx, event, path string, err error) error {
	e := s.entry(rc, event, path)
	code := errs.CodeOf(err)
	e.Result, e.ErrorCode = apitypes.ResultError, string(code)
	if code == errs.PermissionDenied {
		e.Result = apitypes.ResultDenied
	}
	if aerr := s.auditNow(ctx, rc, e); aerr != nil && code != errs.Unavailable {
		return aerr
	}
	return err
}

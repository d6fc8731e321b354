package api

import (
	"context"
	"errors"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/audit"
	"github.com/cofferhq/coffer/errs"
)

const (
	evQueryAudit  = "audit.query"
	evVerifyAudit = "audit.verify"
)

func (s *Server) queryAudit(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.QueryAuditRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	if req.Limit < 0 || req.Limit > audit.MaxQueryLimit {
		return nil, invalid("limit must be 1-%d", audit.MaxQueryLimit)
	}
	if req.PathPrefix != "" && req.PathPrefix[0] != '/' {
		return nil, invalid("path_prefix must start with /")
	}
	st, err := s.n.ReadState(ctx, req.ReadOptions)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, rc, st, evQueryAudit, "", nil); err != nil {
		return nil, err
	}
	entries, next, err := s.n.AuditStore().Query(audit.Query{
		Since: req.Since, Until: req.Until, Actions: req.Actions, Principal: req.Principal,
		PathPrefix: req.PathPrefix, Limit: req.Limit, PageToken: req.PageToken,
	})
	if err != nil {
		if errors.Is(err, audit.ErrBadPageToken) {
			return nil, s.failed(ctx, rc, evQueryAudit, "", invalid("invalid page_token"))
		}
		return nil, errs.New(errs.Internal, "query audit store: %v", err)
	}
	if err := s.auditNow(ctx, rc, s.ok(rc, evQueryAudit, "")); err != nil {
		return nil, err
	}
	if entries == nil {
		entries = []apitypes.AuditEntry{}
	}
	return &apitypes.QueryAuditResponse{Entries: entries, NextPageToken: next, Index: st.Index}, nil
}

func (s *Server) verifyAudit(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.VerifyAuditRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	st, err := s.n.ReadState(ctx, req.ReadOptions)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, rc, st, evVerifyAudit, "", nil); err != nil {
		return nil, err
	}
	// The local store must chain all the way to the replicated head's hash
	// (not only reach its seq): a store whose entries were altered with
	// every later hash recomputed chains perfectly, but not to the head.
	r, err := audit.VerifyStore(s.n.AuditStore(), st.AuditHead)
	if err != nil {
		return nil, errs.New(errs.Internal, "verify audit store: %v", err)
	}
	if !r.OK {
		s.logger.Warn("audit trail verification failed", "first_broken_seq", r.FirstBroken, "reason", r.Reason,
			"head_seq", st.AuditHead.Seq)
	}
	if err := s.auditNow(ctx, rc, s.ok(rc, evVerifyAudit, "")); err != nil {
		return nil, err
	}
	return &apitypes.VerifyAuditResponse{OK: r.OK, Checked: r.Checked, FirstSeq: r.First, LastSeq: r.Last, FirstBrokenSeq: r.FirstBroken, Index: st.Index}, nil
}

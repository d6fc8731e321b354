package api

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/fsm"
)

const (
	evCluster            = "sys.cluster"
	evJoin               = "sys.join"
	evRemovePeer         = "sys.remove_peer"
	evTransferLeadership = "sys.transfer_leadership"
	evSnapshot           = "sys.snapshot"
	evRestore            = "sys.restore"
)

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeErrorStatus(w, http.StatusMethodNotAllowed, errs.New(errs.InvalidArgument, "use GET for /v1/sys/health"))
		return
	}
	h, serving := s.n.Health()
	status := http.StatusOK
	if !serving {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, h)
}

// sysAction runs an admin-only cluster action with its audit entry.
func (s *Server) sysAction(ctx context.Context, rc *reqCtx, event string, fn func() error) error {
	if err := s.authorize(ctx, rc, s.n.State(), event, "", nil); err != nil {
		return err
	}
	if err := fn(); err != nil {
		return s.failed(ctx, rc, event, "", err)
	}
	return s.auditNow(ctx, rc, s.ok(rc, event, ""))
}

func (s *Server) cluster(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.ClusterRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	var resp apitypes.ClusterResponse
	err := s.sysAction(ctx, rc, evCluster, func() error {
		st, err := s.n.ReadState(ctx, req.ReadOptions)
		if err != nil {
			return err
		}
		resp.Index = st.Index
		resp.Members, err = s.n.Members(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

func (s *Server) join(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.JoinRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	if req.Addr == "" {
		return nil, invalid("addr is required (the gossip address host:port of a node)")
	}
	err := s.sysAction(ctx, rc, evJoin, func() error { return s.n.Join(req.Addr) })
	if err != nil {
		return nil, err
	}
	return &apitypes.IndexResponse{Index: s.n.State().Index}, nil
}

func (s *Server) removePeer(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.RemovePeerRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	if req.NodeID == "" {
		return nil, invalid("node_id is required")
	}
	if err := s.sysAction(ctx, rc, evRemovePeer, func() error { return s.n.RemovePeer(ctx, req.NodeID) }); err != nil {
		return nil, err
	}
	return &apitypes.IndexResponse{Index: s.n.State().Index}, nil
}

func (s *Server) transferLeadership(ctx context.Context, rc *reqCtx, raw []byte) (any, error) {
	var req apitypes.TransferLeadershipRequest
	if err := decode(raw, &req); err != nil {
		return nil, err
	}
	if err := s.sysAction(ctx, rc, evTransferLeadership, func() error { return s.n.TransferLeadership(ctx, req.NodeID) }); err != nil {
		return nil, err
	}
	return &apitypes.IndexResponse{Index: s.n.State().Index}, nil
}

// serveSnapshot streams a snapshot file (POST, admin). The answer is binary.
func (s *Server) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	s.serveBinary(w, r, "sys.snapshot", apitypes.MaxBodyBytes, func(ctx context.Context, rc *reqCtx, body []byte) error {
		if len(bytes.TrimSpace(body)) > 0 {
			if err := decode(body, &struct{}{}); err != nil {
				return err
			}
		}
		if err := s.sysAction(ctx, rc, evSnapshot, func() error {
			// Include every write acknowledged so far: catch up with the
			// leader's commit index first (a node cut off from the leader
			// still saves what it has).
			if _, err := s.n.ReadState(ctx, apitypes.ReadOptions{Consistency: apitypes.ConsistencyLeader}); err != nil {
				s.logger.Warn("snapshot from this node's state: leader not reachable", "error", err)
			}
			return nil
		}); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=coffer-%s.snap", time.Now().UTC().Format("20060102T150405Z")))
		w.WriteHeader(http.StatusOK)
		// Streamed: a failure half-way aborts the response, so the client
		// sees a broken transfer rather than a short file.
		if _, err := s.n.WriteSnapshot(w); err != nil {
			s.logger.Warn("snapshot download interrupted", "error", err)
			panic(http.ErrAbortHandler)
		}
		return nil
	})
}

// serveRestore replaces the cluster state with an uploaded snapshot file.
func (s *Server) serveRestore(w http.ResponseWriter, r *http.Request) {
	s.serveBinary(w, r, "sys.restore", s.cfg.MaxRestoreBytes, func(ctx context.Context, rc *reqCtx, body []byte) error {
		if err := s.authorize(ctx, rc, s.n.State(), evRestore, "", nil); err != nil {
			return err
		}
		info, state, err := s.n.CheckRestore(body)
		if err != nil {
			return s.failed(ctx, rc, evRestore, "", err)
		}
		e := s.entry(rc, evRestore, "")
		e.Reason = fmt.Sprintf("snapshot of cluster %s at index %d", info.ClusterID, info.Index)
		res, err := s.submit(ctx, rc, fsm.CmdRestoreState, &fsm.RestoreState{State: state}, e)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, &apitypes.IndexResponse{Index: res.Index})
		return nil
	})
}
func (s *Server) serveBinary(w http.ResponseWriter, r *http.Request, action string, limit int64, fn func(context.Context, *reqCtx, []byte) error) {
	if r.Method != http.MethodPost {
		writeErrorStatus(w, http.StatusMethodNotAllowed, errs.New(errs.InvalidArgument, "use POST for %s", r.URL.Path))
		return
	}
	body, err := readBody(w, r, limit)
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Minute)
	defer cancel()
	rc, err := s.newReqCtx(ctx, r, action, false)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := fn(ctx, rc, body); err != nil {
		writeError(w, err)
	}
}

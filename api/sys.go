package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
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
	rc, ctx, cancel := s.binaryRequest(w, r, "sys/snapshot")
	if rc == nil {
		return
	}
	defer cancel()
	s.setBodyDeadline(w, apitypes.MaxBodyBytes)
	body, err := readBody(w, r, apitypes.MaxBodyBytes)
	if err == nil && len(bytes.TrimSpace(body)) > 0 {
		err = decode(body, &struct{}{})
	}
	if err == nil {
		err = s.sysAction(ctx, rc, evSnapshot, func() error {
			// Include every write acknowledged so far: catch up with the
			// leader's commit index first (a node cut off from the leader
			// still saves what it has).
			if _, err := s.n.ReadState(ctx, apitypes.ReadOptions{Consistency: apitypes.ConsistencyLeader}); err != nil {
				s.logger.Warn("snapshot from this node's state: leader not reachable", "error", err)
			}
			return nil
		})
	}
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=coffer-%s.snap", time.Now().UTC().Format("20060102T150405Z")))
	w.WriteHeader(http.StatusOK)
	// Streamed: a failure half-way aborts the response, so the client
	// sees a broken transfer rather than a short file. The write deadline
	// moves with the stream, so a large snapshot may take as long as it
	// needs while a reader that stops reading is dropped.
	if _, err := s.n.WriteSnapshot(&deadlineWriter{w: w, rc: http.NewResponseController(w)}); err != nil {
		s.logger.Warn("snapshot download interrupted", "error", err)
		panic(http.ErrAbortHandler)
	}
}

// deadlineWriter extends the connection's write deadline before each write.
type deadlineWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	_ = d.rc.SetWriteDeadline(time.Now().Add(writeMargin))
	return d.w.Write(p)
}

// serveRestore replaces the cluster state with an uploaded snapshot file.
// The caller is authenticated and authorized (admin) from the headers
// before a byte of the body is read, and one restore runs at a time: an
// outsider can make the node buffer nothing (SPEC §6; finding 4 of issue
// 14: two unauthenticated 1 GiB uploads took a node to 5.4 GB).
func (s *Server) serveRestore(w http.ResponseWriter, r *http.Request) {
	rc, ctx, cancel := s.binaryRequest(w, r, "sys/restore")
	if rc == nil {
		return
	}
	err := s.authorize(ctx, rc, s.n.State(), evRestore, "", nil)
	cancel()
	if err != nil {
		writeError(w, err)
		return
	}
	select {
	case s.restoring <- struct{}{}:
		defer func() { <-s.restoring }()
	default:
		writeError(w, errs.New(errs.FailedPrecondition, "a restore is already running on this node; try again when it has finished"))
		return
	}
	body, err := s.readRestoreBody(w, r)
	// The upload may take long: the restore's own time starts now.
	ctx, cancel = context.WithTimeout(r.Context(), 5*time.Minute)
	defer cancel()
	if err != nil {
		writeError(w, s.failed(ctx, rc, evRestore, "", err))
		return
	}
	info, state, err := s.n.CheckRestore(body)
	body = nil //nolint:ineffassign // let the upload be collected while the restore commits
	if err != nil {
		writeError(w, s.failed(ctx, rc, evRestore, "", err))
		return
	}
	e := s.entry(rc, evRestore, "")
	e.Reason = fmt.Sprintf("snapshot of cluster %s at index %d", info.ClusterID, info.Index)
	res, err := s.submit(ctx, rc, fsm.CmdRestoreState, &fsm.RestoreState{State: state}, e)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, &apitypes.IndexResponse{Index: res.Index})
}

// readRestoreBody reads the upload, at most MaxRestoreBytes, within 30 s +
// 1 s per MiB of that limit. A declared length is allocated once (never
// more than the limit); a chunked upload grows as it arrives.
func (s *Server) readRestoreBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := s.cfg.MaxRestoreBytes
	if r.ContentLength > limit {
		return nil, errs.New(errs.TooLarge, "snapshot exceeds %d bytes", limit)
	}
	deadline := s.setBodyDeadline(w, limit)
	_ = http.NewResponseController(w).SetWriteDeadline(deadline.Add(requestTimeout + writeMargin))
	if r.ContentLength <= 0 {
		return readBody(w, r, limit)
	}
	buf := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(r.Body, buf); err != nil {
		return nil, errs.New(errs.InvalidArgument, "read snapshot upload: %v", err)
	}
	return buf, nil
}

// binaryRequest checks the method and authenticates a sys/snapshot or
// sys/restore request from its headers; nil if it has been answered. The
// context bounds the work before the body is read.
func (s *Server) binaryRequest(w http.ResponseWriter, r *http.Request, name string) (*reqCtx, context.Context, context.CancelFunc) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeErrorStatus(w, http.StatusMethodNotAllowed, errs.New(errs.InvalidArgument, "use POST for %s", r.URL.Path))
		return nil, nil, nil
	}
	rc := s.authenticateFirst(w, r, name, false)
	if rc == nil {
		return nil, nil, nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	return rc, ctx, cancel
}

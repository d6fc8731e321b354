package client

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
)

// Cluster actions (SPEC §2 "Cluster"); all but Init and Health need admin.

// Init initialises a new cluster and returns its root token, shown once.
// It needs no token.
func (c *Client) Init(ctx context.Context) (*apitypes.InitResponse, error) {
	return call[apitypes.InitResponse](c, ctx, "sys/init", nil)
}

// Health asks the node for its health; it needs no token and is never
// retried. A node that answers (200 when serving, 503 when not) gives its
// Health and status with a nil error; an error answer gives the *errs.Error
// and the status; a node that can't be reached gives status 0 and an
// Unavailable error.
func (c *Client) Health(ctx context.Context) (*apitypes.Health, int, error) {
	hr, err := c.attempt(ctx, http.MethodGet, "/v1/sys/health", "", nil)
	if err != nil {
		return nil, 0, c.netError(ctx, http.MethodGet, "/v1/sys/health", err)
	}
	defer drainClose(hr.Body)
	data, err := io.ReadAll(io.LimitReader(hr.Body, maxErrorBody))
	if err != nil {
		return nil, hr.StatusCode, errs.New(errs.Unavailable, "reading health answer from %s: %v", c.base, err)
	}
	var probe struct {
		Error *apitypes.ErrorDetail `json:"error"`
	}
	if hr.StatusCode != http.StatusOK && hr.StatusCode != http.StatusServiceUnavailable ||
		json.Unmarshal(data, &probe) == nil && probe.Error != nil {
		return nil, hr.StatusCode, decodeError(&http.Response{Status: hr.Status, StatusCode: hr.StatusCode, Body: io.NopCloser(bytes.NewReader(data))})
	}
	var h apitypes.Health
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, hr.StatusCode, errs.New(errs.Internal, "malformed health answer from %s (HTTP %s)", c.base, statusText(hr))
	}
	return &h, hr.StatusCode, nil
}

// Cluster lists the cluster's servers.
func (c *Client) Cluster(ctx context.Context, req *apitypes.ClusterRequest) (*apitypes.ClusterResponse, error) {
	return call[apitypes.ClusterResponse](c, ctx, "sys/cluster", req)
}

// Join makes the cluster admit the node whose gossip address is req.Addr.
func (c *Client) Join(ctx context.Context, req *apitypes.JoinRequest) (*apitypes.IndexResponse, error) {
	return call[apitypes.IndexResponse](c, ctx, "sys/join", req)
}

// RemovePeer removes a server from the cluster.
func (c *Client) RemovePeer(ctx context.Context, req *apitypes.RemovePeerRequest) (*apitypes.IndexResponse, error) {
	return call[apitypes.IndexResponse](c, ctx, "sys/removePeer", req)
}

// TransferLeadership hands leadership to req.NodeID (any voter when empty).
func (c *Client) TransferLeadership(ctx context.Context, req *apitypes.TransferLeadershipRequest) (*apitypes.IndexResponse, error) {
	return call[apitypes.IndexResponse](c, ctx, "sys/transferLeadership", req)
}

// Snapshot streams a snapshot of the replicated state into w. A failure
// after the first byte was written leaves w incomplete: write to a temporary
// file and rename it on success.
func (c *Client) Snapshot(ctx context.Context, w io.Writer) error {
	hr, err := c.send(ctx, http.MethodPost, "/v1/sys/snapshot", "application/json", bytesBody([]byte("{}")), true)
	if err != nil {
		return err
	}
	defer drainClose(hr.Body)
	src := &readErr{r: hr.Body}
	if _, err := io.Copy(w, src); err != nil {
		if src.err != nil {
			return errs.New(errs.Unavailable, "receiving snapshot from %s: %v", c.base, err)
		}
		return errs.New(errs.Internal, "writing snapshot: %v", err)
	}
	return nil
}

// readErr remembers a read failure, to tell it from a write failure in
// io.Copy.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// Restore replaces the cluster's state with the snapshot read from r. It is
// retried (see WithRetry) only when r is an io.Seeker.
func (c *Client) Restore(ctx context.Context, r io.Reader) error {
	hr, err := c.send(ctx, http.MethodPost, "/v1/sys/restore", "application/octet-stream", streamBody(r), false)
	if err != nil {
		return err
	}
	defer drainClose(hr.Body)
	return c.decodeAnswer(hr, "sys/restore", nil)
}

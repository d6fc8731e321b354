package client

import (
	"context"

	"github.com/cofferhq/coffer/apitypes"
)

// KMS (SPEC §2 "KMS").

// CreateKey creates a KMS key with its first version.
func (c *Client) CreateKey(ctx context.Context, req *apitypes.CreateKeyRequest) (*apitypes.CreateKeyResponse, error) {
	return call[apitypes.CreateKeyResponse](c, ctx, "createKey", req)
}

// DescribeKey returns a key's state, versions and bound-secret count.
func (c *Client) DescribeKey(ctx context.Context, req *apitypes.DescribeKeyRequest) (*apitypes.DescribeKeyResponse, error) {
	return call[apitypes.DescribeKeyResponse](c, ctx, "describeKey", req)
}

// ListKeys lists every key.
func (c *Client) ListKeys(ctx context.Context, req *apitypes.ListKeysRequest) (*apitypes.ListKeysResponse, error) {
	return call[apitypes.ListKeysResponse](c, ctx, "listKeys", req)
}

// RotateKey adds a key version; new secret versions use it, older ones stay
// readable.
func (c *Client) RotateKey(ctx context.Context, req *apitypes.RotateKeyRequest) (*apitypes.RotateKeyResponse, error) {
	return call[apitypes.RotateKeyResponse](c, ctx, "rotateKey", req)
}

// DisableKey makes a key unusable: its secrets can't be read or written.
func (c *Client) DisableKey(ctx context.Context, req *apitypes.DisableKeyRequest) (*apitypes.KeyResponse, error) {
	return call[apitypes.KeyResponse](c, ctx, "disableKey", req)
}

// EnableKey makes a disabled key usable again.
func (c *Client) EnableKey(ctx context.Context, req *apitypes.EnableKeyRequest) (*apitypes.KeyResponse, error) {
	return call[apitypes.KeyResponse](c, ctx, "enableKey", req)
}

// ScheduleKeyDeletion schedules a key's destruction after PendingDays (7–30).
// It is refused while secrets are bound to the key, unless Force.
func (c *Client) ScheduleKeyDeletion(ctx context.Context, req *apitypes.ScheduleKeyDeletionRequest) (*apitypes.ScheduleKeyDeletionResponse, error) {
	return call[apitypes.ScheduleKeyDeletionResponse](c, ctx, "scheduleKeyDeletion", req)
}

// CancelKeyDeletion cancels a scheduled deletion; the key becomes disabled.
func (c *Client) CancelKeyDeletion(ctx context.Context, req *apitypes.CancelKeyDeletionRequest) (*apitypes.KeyResponse, error) {
	return call[apitypes.KeyResponse](c, ctx, "cancelKeyDeletion", req)
}

// ListKeyBindings lists the paths of the secrets bound to a key, a page at a
// time.
func (c *Client) ListKeyBindings(ctx context.Context, req *apitypes.ListKeyBindingsRequest) (*apitypes.ListKeyBindingsResponse, error) {
	return call[apitypes.ListKeyBindingsResponse](c, ctx, "listKeyBindings", req)
}

// Rewrap re-wraps all key material under the newest root key of the node
// that serves the request (admin).
func (c *Client) Rewrap(ctx context.Context) (*apitypes.RewrapResponse, error) {
	return call[apitypes.RewrapResponse](c, ctx, "sys/rewrap", &apitypes.RewrapRequest{})
}

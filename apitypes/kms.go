package apitypes

import "time"

// KMS key states (SPEC §1 "KMS key").
const (
	KeyStateEnabled         = "enabled"
	KeyStateDisabled        = "disabled"
	KeyStatePendingDeletion = "pending_deletion"
	KeyStateDestroyed       = "destroyed"
)

// Limits of the KMS actions.
const (
	MinPendingDays = 7
	MaxPendingDays = 30
	// KeyStateInactive is the listSecrets key_state filter: secrets whose
	// bound key is not enabled.
	KeyStateInactive = "inactive"
	// DefaultKeyName is the key that exists from the start; it can't be
	// scheduled for deletion.
	DefaultKeyName = "default"
)

// Key is a KMS key's metadata; its material never leaves the cluster.
type Key struct {
	Name           string       `json:"name"`
	Description    string       `json:"description"`
	State          string       `json:"state"`
	CreatedAt      time.Time    `json:"created_at"`
	DeletionDate   *time.Time   `json:"deletion_date,omitempty"`
	CurrentVersion uint32       `json:"current_version"`
	Versions       []KeyVersion `json:"versions"`
	// BoundSecrets is the number of secrets bound to the key.
	BoundSecrets int `json:"bound_secrets"`
}

// KeyVersion is one version of a key's material: "enabled" while the
// material exists, "destroyed" once the key was destroyed.
type KeyVersion struct {
	Version   uint32    `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	State     string    `json:"state"`
}

type CreateKeyRequest struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// KeyResponse is the answer of the key actions that change a key.
type KeyResponse struct {
	Key   Key    `json:"key"`
	Index uint64 `json:"index"`
}

type CreateKeyResponse = KeyResponse

type DescribeKeyRequest struct {
	Name string `json:"name"`
	ReadOptions
}

type DescribeKeyResponse = KeyResponse

type ListKeysRequest struct {
	ReadOptions
}

type ListKeysResponse struct {
	Keys  []Key  `json:"keys"`
	Index uint64 `json:"index"`
}

type RotateKeyRequest struct {
	Name string `json:"name"`
}

type RotateKeyResponse = KeyResponse

type DisableKeyRequest struct {
	Name string `json:"name"`
}

type EnableKeyRequest struct {
	Name string `json:"name"`
}

type ScheduleKeyDeletionRequest struct {
	Name        string `json:"name"`
	PendingDays int    `json:"pending_days"`
	// Force schedules the deletion even though secrets are bound to the key
	// (they become unreadable when it is destroyed).
	Force bool `json:"force,omitempty"`
}

type ScheduleKeyDeletionResponse = KeyResponse

type CancelKeyDeletionRequest struct {
	Name string `json:"name"`
}

type ListKeyBindingsRequest struct {
	Name      string `json:"name"`
	PageSize  int    `json:"page_size,omitempty"`
	PageToken string `json:"page_token,omitempty"`
	ReadOptions
}

type ListKeyBindingsResponse struct {
	Paths         []string `json:"paths"`
	NextPageToken string   `json:"next_page_token"`
	Index         uint64   `json:"index"`
}

// RewrapRequest is the body of POST /v1/sys/rewrap (admin): re-wrap all key
// material under the newest root key of the node that receives it.
type RewrapRequest struct{}

type RewrapResponse struct {
	// RootKeyFingerprint is the key check value of the root key that now
	// wraps all key material.
	RootKeyFingerprint string `json:"root_key_fingerprint"`
	// Rewrapped counts the key versions whose material was re-wrapped.
	Rewrapped int    `json:"rewrapped"`
	Index     uint64 `json:"index"`
}

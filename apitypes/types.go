package apitypes

import (
	"encoding/json"
	"time"
)

// Limits of SPEC §1–§2.
const (
	MaxBodyBytes      = 1 << 20
	MaxValueBytes     = 64 << 10
	MaxPathBytes      = 512
	MaxPathSegments   = 16
	MaxSegmentBytes   = 128
	MaxLabels         = 64
	MaxLabelKeyBytes  = 128
	MaxLabelValBytes  = 512
	MaxDescription    = 1024
	MaxBatchGetPaths  = 100
	MaxPageSize       = 1000
	DefaultPageSize   = 100
	MaxGenerateLength = 4096
	DefaultGenLength  = 32
	MaxMinIndexWait   = 5 * time.Second
)

// Consistency levels for reads.
const (
	ConsistencyStale  = "stale"
	ConsistencyLeader = "leader"
)

// ReadOptions are accepted by every read action.
type ReadOptions struct {
	Consistency string `json:"consistency,omitempty"`
	MinIndex    uint64 `json:"min_index,omitempty"`
}

// ErrorBody is the JSON shape of every error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail carries the code and message of an error answer.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// AccessPolicy is a secret's per-secret access policy.
type AccessPolicy struct {
	SourceCIDRs []string     `json:"source_cidrs,omitempty" msgpack:"cidrs,omitempty"`
	TimeWindows []TimeWindow `json:"time_windows,omitempty" msgpack:"windows,omitempty"`
}

// TimeWindow is a weekly recurring window in an IANA time zone; End before
// Start means the window crosses midnight.
type TimeWindow struct {
	Days     []string `json:"days,omitempty" msgpack:"days,omitempty"`
	Start    string   `json:"start" msgpack:"start"`
	End      string   `json:"end" msgpack:"end"`
	Timezone string   `json:"timezone,omitempty" msgpack:"tz,omitempty"`
}

// Secret is a secret's metadata; Versions is filled only by describeSecret.
type Secret struct {
	Path           string            `json:"path"`
	UID            string            `json:"uid"`
	KMSKey         string            `json:"kms_key"`
	Description    string            `json:"description"`
	Labels         map[string]string `json:"labels"`
	AccessPolicy   *AccessPolicy     `json:"access_policy,omitempty"`
	CreatedAt      time.Time         `json:"created_at"`
	CreatedBy      string            `json:"created_by"`
	UpdatedAt      time.Time         `json:"updated_at"`
	CurrentVersion uint64            `json:"current_version"`
	Versions       []Version         `json:"versions,omitempty"`
}

// Version is one secret version's metadata (never its value).
type Version struct {
	Version       uint64    `json:"version"`
	State         string    `json:"state"`
	CreatedAt     time.Time `json:"created_at"`
	CreatedBy     string    `json:"created_by"`
	Origin        string    `json:"origin"`
	Size          int       `json:"size"`
	KMSKey        string    `json:"kms_key"`
	KMSKeyVersion uint32    `json:"kms_key_version"`
}

// Version states and origins.
const (
	StateEnabled   = "enabled"
	StateDestroyed = "destroyed"
	OriginPut      = "put"
	OriginGenerate = "generate"
)

type CreateSecretRequest struct {
	Path         string            `json:"path"`
	KMSKey       string            `json:"kms_key,omitempty"`
	Description  string            `json:"description,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	AccessPolicy *AccessPolicy     `json:"access_policy,omitempty"`
	Value        []byte            `json:"value,omitempty"`
}

type CreateSecretResponse struct {
	Secret  Secret `json:"secret"`
	Version uint64 `json:"version"`
	Index   uint64 `json:"index"`
}

type DescribeSecretRequest struct {
	Path string `json:"path"`
	ReadOptions
}

type DescribeSecretResponse struct {
	Secret Secret `json:"secret"`
	Index  uint64 `json:"index"`
}

// MarshalJSON always writes secret.versions, as an empty list when the
// secret has none (Secret omits it in listings).
func (r DescribeSecretResponse) MarshalJSON() ([]byte, error) {
	type detail struct {
		Secret
		Versions []Version `json:"versions"`
	}
	d := detail{Secret: r.Secret, Versions: r.Secret.Versions}
	if d.Versions == nil {
		d.Versions = []Version{}
	}
	d.Secret.Versions = nil
	return json.Marshal(struct {
		Secret detail `json:"secret"`
		Index  uint64 `json:"index"`
	}{d, r.Index})
}

type ListSecretsRequest struct {
	Prefix    string `json:"prefix"`
	Recursive bool   `json:"recursive,omitempty"`
	PageSize  int    `json:"page_size,omitempty"`
	PageToken string `json:"page_token,omitempty"`
	KeyState  string `json:"key_state,omitempty"`
	ReadOptions
}

type ListSecretsResponse struct {
	Secrets       []Secret `json:"secrets"`
	Folders       []string `json:"folders"`
	NextPageToken string   `json:"next_page_token"`
	Index         uint64   `json:"index"`
}

type GetSecretValueRequest struct {
	Path    string `json:"path"`
	Version uint64 `json:"version,omitempty"`
	ReadOptions
}

// SecretValue is a revealed value; Value is base64 in JSON.
type SecretValue struct {
	Path      string    `json:"path"`
	UID       string    `json:"uid"`
	Version   uint64    `json:"version"`
	Value     []byte    `json:"value"`
	CreatedAt time.Time `json:"created_at"`
}

type GetSecretValueResponse struct {
	SecretValue
	Index uint64 `json:"index"`
}

type BatchGetSecretValueRequest struct {
	Paths []string `json:"paths"`
	ReadOptions
}

type BatchGetSecretValueResponse struct {
	Values []SecretValue          `json:"values"`
	Errors map[string]ErrorDetail `json:"errors"`
	Index  uint64                 `json:"index"`
}

type PutSecretValueRequest struct {
	Path            string  `json:"path"`
	Value           []byte  `json:"value"`
	ExpectedVersion *uint64 `json:"expected_version,omitempty"`
}

type PutSecretValueResponse struct {
	Version uint64 `json:"version"`
	Index   uint64 `json:"index"`
}

// Charsets for generateSecret.
const (
	CharsetBytes        = "bytes"
	CharsetAlphanumeric = "alphanumeric"
	CharsetPassword     = "password"
	CharsetHex          = "hex"
)

type GenerateSecretRequest struct {
	Path    string `json:"path"`
	Length  int    `json:"length,omitempty"`
	Charset string `json:"charset,omitempty"`
	Create  bool   `json:"create,omitempty"`
}

type GenerateSecretResponse struct {
	Version uint64 `json:"version"`
	Index   uint64 `json:"index"`
}

type UpdateSecretRequest struct {
	Path         string             `json:"path"`
	Description  *string            `json:"description,omitempty"`
	Labels       *map[string]string `json:"labels,omitempty"`
	AccessPolicy *AccessPolicy      `json:"access_policy,omitempty"`
}

type UpdateSecretResponse struct {
	Secret Secret `json:"secret"`
	Index  uint64 `json:"index"`
}

type RebindSecretKeyRequest struct {
	Path   string `json:"path"`
	KMSKey string `json:"kms_key"`
}

type RebindSecretKeyResponse struct {
	Secret Secret `json:"secret"`
	Index  uint64 `json:"index"`
}

type DestroySecretVersionRequest struct {
	Path    string `json:"path"`
	Version uint64 `json:"version"`
}

type DeleteSecretRequest struct {
	Path string `json:"path"`
}

// IndexResponse is the answer of actions that return nothing but an index.
type IndexResponse struct {
	Index uint64 `json:"index"`
}

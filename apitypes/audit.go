package apitypes

import "time"

// Audit results.
const (
	ResultOK     = "ok"
	ResultDenied = "denied"
	ResultError  = "error"
)

// Principal identifies the caller in audit entries: the token's accessor and
// name, never the token.
type Principal struct {
	Accessor string `json:"accessor" msgpack:"a"`
	Name     string `json:"name" msgpack:"n"`
}

// AuditEntry is one entry of the replicated audit trail (SPEC §2 "Audit").
// It never carries a value, token or key material.
type AuditEntry struct {
	Seq           uint64    `json:"seq" msgpack:"seq"`
	Time          time.Time `json:"time" msgpack:"time"`
	Node          string    `json:"node" msgpack:"node"`
	RequestID     string    `json:"request_id" msgpack:"rid"`
	Action        string    `json:"action" msgpack:"act"`
	Principal     Principal `json:"principal" msgpack:"p"`
	SourceIP      string    `json:"source_ip" msgpack:"ip"`
	Path          string    `json:"path,omitempty" msgpack:"path,omitempty"`
	Version       uint64    `json:"version,omitempty" msgpack:"v,omitempty"`
	KMSKey        string    `json:"kms_key,omitempty" msgpack:"k,omitempty"`
	KMSKeyVersion uint32    `json:"kms_key_version,omitempty" msgpack:"kv,omitempty"`
	Result        string    `json:"result" msgpack:"r"`
	ErrorCode     string    `json:"error_code,omitempty" msgpack:"ec,omitempty"`
	Reason        string    `json:"reason,omitempty" msgpack:"why,omitempty"`
	PrevHash      string    `json:"prev_hash" msgpack:"ph"`
	Hash          string    `json:"hash" msgpack:"h"`
}

type QueryAuditRequest struct {
	Since      *time.Time `json:"since,omitempty"`
	Until      *time.Time `json:"until,omitempty"`
	Actions    []string   `json:"actions,omitempty"`
	Principal  string     `json:"principal,omitempty"`
	PathPrefix string     `json:"path_prefix,omitempty"`
	Limit      int        `json:"limit,omitempty"`
	PageToken  string     `json:"page_token,omitempty"`
	ReadOptions
}

type QueryAuditResponse struct {
	Entries       []AuditEntry `json:"entries"`
	NextPageToken string       `json:"next_page_token"`
	Index         uint64       `json:"index"`
}

type VerifyAuditRequest struct {
	ReadOptions
}

type VerifyAuditResponse struct {
	OK             bool   `json:"ok"`
	Checked        uint64 `json:"checked"`
	FirstSeq       uint64 `json:"first_seq"`
	LastSeq        uint64 `json:"last_seq"`
	FirstBrokenSeq uint64 `json:"first_broken_seq,omitempty"`
	Index          uint64 `json:"index"`
}

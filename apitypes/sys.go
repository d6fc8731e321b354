package apitypes

import "time"

// Token is a token's public metadata (never the token itself).
type Token struct {
	Accessor    string     `json:"accessor"`
	Name        string     `json:"name"`
	Policies    []string   `json:"policies"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	SourceCIDRs []string   `json:"source_cidrs,omitempty"`
}

type InitResponse struct {
	RootToken string `json:"root_token"`
	Accessor  string `json:"accessor"`
	Index     uint64 `json:"index"`
}

type CreateTokenRequest struct {
	Name        string   `json:"name"`
	Policies    []string `json:"policies"`
	TTL         string   `json:"ttl,omitempty"`
	SourceCIDRs []string `json:"source_cidrs,omitempty"`
}

type CreateTokenResponse struct {
	Token     string     `json:"token"`
	Accessor  string     `json:"accessor"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Index     uint64     `json:"index"`
}

type RevokeTokenRequest struct {
	Accessor string `json:"accessor"`
}

type ListTokensRequest struct {
	ReadOptions
}

type ListTokensResponse struct {
	Tokens []Token `json:"tokens"`
	Index  uint64  `json:"index"`
}

type WhoamiRequest struct {
	ReadOptions
}

type WhoamiResponse struct {
	Token
	Index uint64 `json:"index"`
}

// Health is the answer of GET /v1/sys/health.
type Health struct {
	NodeID       string   `json:"node_id"`
	Role         string   `json:"role"`
	LeaderID     string   `json:"leader_id"`
	AppliedIndex uint64   `json:"applied_index"`
	Initialized  bool     `json:"initialized"`
	Warnings     []string `json:"warnings"`
}

// Member is one server in the cluster listing.
type Member struct {
	NodeID       string     `json:"node_id"`
	ClusterAddr  string     `json:"cluster_addr"`
	HTTPAddr     string     `json:"http_addr"`
	GossipAddr   string     `json:"gossip_addr"`
	Suffrage     string     `json:"suffrage"`
	State        string     `json:"state"`
	LastContact  *time.Time `json:"last_contact,omitempty"`
	AppliedIndex uint64     `json:"applied_index"`
	Leader       bool       `json:"leader"`
}

type ClusterRequest struct {
	ReadOptions
}

type ClusterResponse struct {
	Members []Member `json:"members"`
	Index   uint64   `json:"index"`
}

type JoinRequest struct {
	Addr string `json:"addr"`
}

type RemovePeerRequest struct {
	NodeID string `json:"node_id"`
}

type TransferLeadershipRequest struct {
	NodeID string `json:"node_id,omitempty"`
}

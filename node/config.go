package node

import (
	"crypto/tls"
	"path/filepath"
	"time"

	"github.com/cofferhq/coffer/kms"
	"github.com/hashicorp/go-hclog"
)

// Config configures one node.
type Config struct {
	NodeID      string
	DataDir     string // ignored when Dev
	Dev         bool   // single in-memory node
	HTTPAddr    string // advertised to peers through gossip
	ClusterAddr string // Raft + forwarding RPC listener
	GossipAddr  string // memberlist listener
	Advertise   string // host to advertise instead of the bind host
	Bootstrap   bool
	Join        []string

	// RaftLogStore is LogStoreWAL, LogStoreBolt or LogStoreAuto (the WAL
	// for a new data dir, else the store the data dir holds).
	RaftLogStore string

	// Automated snapshot files (0 interval: off); SnapshotDir defaults to
	// DATA_DIR/snapshots-auto, SnapshotRetain to 7.
	SnapshotInterval time.Duration
	SnapshotRetain   int
	SnapshotDir      string

	RootKeys  *kms.RootKeys
	AuditFile string
	// Cluster port TLS, server and dialing side (mutual TLS when set). The
	// certificate must be a node certificate for NodeID (URI SAN
	// urn:coffer:node:<NodeID>, see transport.NodeURIPrefix); only peers
	// with node certificates are accepted. Without TLS, peers prove
	// membership with a key derived from RootKeys.
	ServerTLS *tls.Config
	ClientTLS *tls.Config

	Logger hclog.Logger

	// Tuning; zero values take defaults.
	HeartbeatTimeout     time.Duration
	ElectionTimeout      time.Duration
	LeaderLeaseTimeout   time.Duration
	SnapshotThreshold    uint64
	SnapshotCommands     uint64        // also snapshot once this many commands were applied since the last one
	RaftSnapshotInterval time.Duration // how often Raft checks SnapshotThreshold (jittered up to 2×)
	TrailingLogs         uint64
	LogSegmentSize       int           // WAL segment file size (default 64 MiB)
	StabilizationPeriod  time.Duration // how long a new server stays a non-voter
	DeadServerCleanup    bool          // remove servers failed longer than DeadServerThreshold
	DeadServerThreshold  time.Duration // default 5m
	ReconcileInterval    time.Duration
	GossipProbe          time.Duration // memberlist probe interval (tests shorten it)

	// Now is the leader's clock: it stamps every log entry and decides when
	// a key's deletion date has passed (default time.Now; tests inject one).
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.HeartbeatTimeout == 0 {
		// A follower calls an election after 1-2× this without the
		// leader. With 1 s, writes resumed 2.1-3.1 s after a docker kill
		// of the leader on a slow day (the ≤ 3 s goal); heartbeats take
		// raft's fast path, so load does not delay them.
		c.HeartbeatTimeout = 750 * time.Millisecond
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = time.Second
	}
	if c.LeaderLeaseTimeout == 0 {
		c.LeaderLeaseTimeout = 500 * time.Millisecond
	}
	if c.SnapshotThreshold == 0 {
		// A restarted node restores the last snapshot, then replays the log
		// after it (~3,000 entries/s at a million secrets); a snapshot
		// writes the whole state (~1.2 s of encoding and 570 MB at a million
		// secrets). Checking every 30 s for 8k new entries keeps the replay
		// near 3 s at the cost of a snapshot every 30-60 s under full load.
		c.SnapshotThreshold = 8192
	}
	if c.SnapshotCommands == 0 {
		// Raft counts entries, and one entry carries from one to a
		// thousand commands (group commit), so 8k entries may be hundreds
		// of thousands of commands to replay. The node also snapshots
		// after this many commands, or an eighth of the stored versions
		// for large states (snaptrigger.go). 65,536 snapshotted a small
		// state under full load every 8-14 s, at 0.35-0.65 s of a core
		// each.
		c.SnapshotCommands = 131072
	}
	if c.RaftSnapshotInterval == 0 {
		c.RaftSnapshotInterval = 30 * time.Second
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if c.StabilizationPeriod == 0 {
		c.StabilizationPeriod = 5 * time.Second
	}
	if c.SnapshotRetain == 0 {
		c.SnapshotRetain = 7
	}
	if c.SnapshotDir == "" && c.DataDir != "" {
		c.SnapshotDir = filepath.Join(c.DataDir, "snapshots-auto")
	}
	if c.DeadServerThreshold == 0 {
		c.DeadServerThreshold = 5 * time.Minute
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

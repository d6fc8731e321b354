package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/audit"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/fsm"
	"github.com/cofferhq/coffer/kms"
	"github.com/cofferhq/coffer/transport"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// Node is one running Coffer server.
type Node struct {
	cfg    Config
	logger hclog.Logger

	fsm     *fsm.FSM
	raft    *raft.Raft
	mux     *transport.Mux
	rpc     *transport.RPCClient
	ml      *memberlist.Memberlist
	gossip  *gossipDelegate
	keys    *kms.MaterialCache
	sink    *audit.FileSink
	closers []func() error

	prop *proposer
	logs raft.LogStore // read by WaitApplied
	meta *dataDirMeta

	// Read-index rounds (readrounds.go): asking the leader, and as the
	// leader confirming leadership.
	remoteReads, leaderReads *readRounds
	started                  atomic.Bool // raft and the proposer exist: RPCs can be served

	shutdownCh chan struct{}
	wg         sync.WaitGroup
	closeOnce  sync.Once

	kmsDuties keyDuties             // keytimer.go
	readyTerm atomic.Uint64         // term in which this leader committed an entry (linearizable reads)
	fatal     atomic.Pointer[error] // set when the node stopped taking part (foreign data)
	leaderMu  sync.Mutex
	leaderCh  chan struct{} // closed at each leader change (metrics.go)
}

// New starts a node: it opens (or creates) the data dir, starts Raft and the
// cluster port, and joins or bootstraps as configured.
func New(cfg Config) (*Node, error) {
	cfg.setDefaults()
	if cfg.RootKeys == nil {
		return nil, errors.New("a root key is required (--root-key-file)")
	}
	if cfg.NodeID == "" {
		return nil, errors.New("a node id is required (--node-id)")
	}
	n := &Node{cfg: cfg, logger: cfg.Logger, keys: kms.NewMaterialCache(cfg.RootKeys), shutdownCh: make(chan struct{}), leaderCh: make(chan struct{})}
	n.remoteReads = newReadRounds(n.shutdownCh, apitypes.MaxMinIndexWait, n.askLeaderReadIndex)
	n.leaderReads = newReadRounds(n.shutdownCh, apitypes.MaxMinIndexWait, func(context.Context) (uint64, error) { return n.leaderReadIndex() })
	if err := n.start(); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// logCacheEntries is how many of the newest Raft entries a node keeps in
// memory: two full AppendEntries batches (MaxAppendEntries 256).
const logCacheEntries = 512

func (n *Node) start() error {
	cfg := n.cfg
	var store audit.Store
	var logs raft.LogStore
	var stable raft.StableStore
	var snaps raft.SnapshotStore
	var trans raft.Transport
	if cfg.Dev {
		store = audit.NewMemoryStore()
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
		_, trans = raft.NewInmemTransport(raft.ServerAddress(cfg.NodeID))
	} else {
		if cfg.DataDir == "" {
			return errors.New("a data dir is required (--data-dir)")
		}
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
		meta, err := openDataDirMeta(cfg.DataDir, cfg.NodeID, cfg.RootKeys)
		if err != nil {
			return err
		}
		n.meta = meta
		auditDB, err := audit.OpenBoltStore(filepath.Join(cfg.DataDir, "audit.db"))
		if err != nil {
			return fmt.Errorf("open audit store: %w", err)
		}
		store = audit.NewBufferedStore(auditDB) // one bbolt transaction per many Raft entries
		ls, kind, err := openLogStore(cfg.DataDir, cfg.RaftLogStore, cfg.LogSegmentSize, n.logger.Named("raft-log"))
		if err != nil {
			return err
		}
		n.closers = append(n.closers, ls.Close)
		// The newest entries stay in memory: a leader replicating them and a
		// follower applying them read them back from the store otherwise
		// (decoding them from the WAL was 14 % of a leader's allocations).
		cached, err := raft.NewLogCache(logCacheEntries, ls)
		if err != nil {
			return fmt.Errorf("raft log cache: %w", err)
		}
		logs, stable = cached, ls
		n.logger.Info("raft log opened", "store", kind)
		if snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, n.logger.Named("snapshots")); err != nil {
			return fmt.Errorf("open snapshot store: %w", err)
		}
		auth := n.clusterAuth()
		if n.mux, err = transport.Listen(cfg.ClusterAddr, auth); err != nil {
			return fmt.Errorf("listen on cluster address: %w", err)
		}
		adv, err := advertiseAddr(cfg.Advertise, n.mux.Addr())
		if err != nil {
			return err
		}
		n.cfg.ClusterAddr = adv.String()
		trans = raft.NewNetworkTransportWithLogger(n.mux.RaftLayer(adv), 8, 10*time.Second, n.logger.Named("raft-net"))
		auth.Logger = n.logger.Named("rpc")
		if n.rpc, err = transport.NewRPCClient(auth); err != nil {
			return err
		}
		n.mux.ServeRPC(n.handleRPC)
	}
	n.closers = append(n.closers, store.Close)
	if cfg.AuditFile != "" {
		sink, err := audit.OpenFileSink(cfg.AuditFile)
		if err != nil {
			return fmt.Errorf("open audit file: %w", err)
		}
		n.sink = sink
		n.closers = append(n.closers, sink.Close)
	}
	n.fsm = fsm.New(store, n.writeAuditFile, n.logger)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = n.logger.Named("raft")
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.RaftSnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.MaxAppendEntries = 256
	rc.BatchApplyCh = true
	n.logs = logs
	hasState, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return fmt.Errorf("inspect raft state: %w", err)
	}
	if n.raft, err = raft.NewRaft(rc, n.fsm, logs, stable, snaps, trans); err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	if err := n.checkRestoredState(); err != nil {
		return err
	}
	n.kmsDuties.seenFP = n.fsm.State().RootFingerprint // as restored from the latest snapshot (keytimer.go)
	if (cfg.Bootstrap || cfg.Dev) && !hasState {
		boot := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: trans.LocalAddr(), Suffrage: raft.Voter}}}
		if err := n.raft.BootstrapCluster(boot).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	n.prop = newProposer(n)
	n.started.Store(true) // handleRPC may use everything above
	n.observeLeaders()
	// Gossip first: the loops below read n.ml and n.gossip, which it sets.
	if !cfg.Dev {
		if err := n.startGossip(); err != nil {
			return err
		}
	}
	n.goLoop(n.leaderLoop)
	if !cfg.Dev {
		n.goLoop(n.auditFillLoop)
	}
	if cfg.SnapshotInterval > 0 && !cfg.Dev {
		n.goEvery(cfg.SnapshotInterval, n.writeAutomatedBackup)
	}
	n.goEvery(cfg.ReconcileInterval, n.kmsDutiesOnce)
	if !cfg.Dev {
		n.goEvery(snapshotCheckEvery, n.snapshotIfBacklog)
	}
	return nil
}

// clusterAuth is this node's identity on the cluster port: its TLS
// certificate (which must be a node certificate for its id) or, without
// TLS, keys derived from the root key (all of them, for a rotation; never
// the root key itself, and distinct from the gossip key).
func (n *Node) clusterAuth() transport.Config {
	return transport.Config{
		NodeID:    n.cfg.NodeID,
		Keys:      n.keys.Root().DeriveKeys("cluster-port"),
		ServerTLS: n.cfg.ServerTLS,
		ClientTLS: n.cfg.ClientTLS,
		Logger:    n.logger,
		OnRefusal: func(reason string) { ClusterAuthRefusals.WithLabelValues(reason).Inc() },
	}
}

// checkRestoredState refuses to run over a state the root key can't open.
func (n *Node) checkRestoredState() error {
	st := n.fsm.State()
	if err := n.checkKeyMaterial(st, "this data dir's"); err != nil { // every key version, naming the missing root key
		return err
	}
	if n.meta != nil && st.ClusterID != "" {
		if err := n.meta.setClusterID(st.ClusterID); err != nil {
			return err
		}
	}
	return nil
}

func advertiseAddr(advertise string, bound net.Addr) (net.Addr, error) {
	tcp, ok := bound.(*net.TCPAddr)
	if !ok {
		return bound, nil
	}
	if advertise == "" {
		if tcp.IP.IsUnspecified() {
			return nil, errors.New("cluster address binds all interfaces: set --advertise to the address peers should dial")
		}
		return bound, nil
	}
	host := advertise
	if h, _, err := net.SplitHostPort(advertise); err == nil {
		host = h
	}
	addr, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(host, fmt.Sprint(tcp.Port)))
	if err != nil {
		return nil, fmt.Errorf("resolve --advertise %q: %w", advertise, err)
	}
	return addr, nil
}

func (n *Node) writeAuditFile(entries []apitypes.AuditEntry) {
	AuditEntriesPerBatch.Observe(float64(len(entries)))
	if n.sink == nil {
		return
	}
	if err := n.sink.Write(entries); err != nil {
		n.logger.Error("audit file write failed", "error", err)
	}
}

func (n *Node) goLoop(fn func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		fn()
	}()
}

// goEvery runs fn every d until the node shuts down.
func (n *Node) goEvery(d time.Duration, fn func()) {
	n.goLoop(func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-n.shutdownCh:
				return
			case <-t.C:
			}
			fn()
		}
	})
}

// Close stops the node; it is safe to call more than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		close(n.shutdownCh)
		if n.ml != nil {
			_ = n.ml.Leave(time.Second)
			_ = n.ml.Shutdown()
		}
		if n.raft != nil {
			if err := n.raft.Shutdown().Error(); err != nil {
				n.logger.Warn("raft shutdown", "error", err)
			}
		}
		if n.prop != nil {
			n.prop.close()
		}
		if n.mux != nil {
			_ = n.mux.Close()
		}
		if n.rpc != nil {
			n.rpc.Close()
		}
		n.wg.Wait()
		for i := len(n.closers) - 1; i >= 0; i-- {
			if err := n.closers[i](); err != nil {
				n.logger.Warn("close", "error", err)
			}
		}
	})
	return nil
}

// ID returns the node id.
func (n *Node) ID() string { return n.cfg.NodeID }

// Logger returns the node's logger.
func (n *Node) Logger() hclog.Logger { return n.logger }

// State returns the node's current applied state (stale read).
func (n *Node) State() *fsm.State { return n.fsm.State() }

// Keys returns the cache of unwrapped key material.
func (n *Node) Keys() *kms.MaterialCache { return n.keys }

// AuditStore returns the node-local audit store.
func (n *Node) AuditStore() audit.Store { return n.fsm.AuditStore() }

// IsLeader reports whether this node is the Raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// ClusterAddr returns the advertised cluster address.
func (n *Node) ClusterAddr() string { return n.cfg.ClusterAddr }

// TakeSnapshot forces a Raft snapshot (and log compaction) now.
func (n *Node) TakeSnapshot() error { return n.raft.Snapshot().Error() }

// CommandsSinceSnapshot is what a restart of this node would replay.
func (n *Node) CommandsSinceSnapshot() uint64 { return n.fsm.CommandsSinceSnapshot() }

// LastSnapshotIndex is the log index of this node's latest Raft snapshot
// (0 if it has none).
func (n *Node) LastSnapshotIndex() uint64 {
	idx, _ := strconv.ParseUint(n.raft.Stats()["last_snapshot_index"], 10, 64) // "0" without one
	return idx
}

// leaderLoop performs leader duties: cluster init on a fresh cluster and
// membership reconciliation.
func (n *Node) leaderLoop() {
	ticker := time.NewTicker(n.cfg.ReconcileInterval)
	defer ticker.Stop()
	for {
		select {
		case <-n.shutdownCh:
			return
		case <-n.raft.LeaderCh():
		case <-ticker.C:
		}
		if n.meta != nil && n.fsm.State().ClusterID != "" {
			if err := n.meta.setClusterID(n.fsm.State().ClusterID); err != nil && n.fatal.Load() == nil {
				// This data dir belongs to another cluster: stop taking part
				// rather than mix two clusters' logs.
				n.logger.Error("stopping Raft: this node holds another cluster's data", "error", err)
				n.fatal.Store(&err)
				go n.raft.Shutdown()
				continue
			}
		}
		n.announceClusterID()
		if !n.IsLeader() {
			continue
		}
		if n.fsm.State().ClusterID == "" {
			if err := n.initCluster(); err != nil {
				n.logger.Warn("cluster init failed; will retry", "error", err)
			}
		}
		n.reconcileMembers()
	}
}

func (n *Node) initCluster() error {
	if err := n.raft.Barrier(5 * time.Second).Error(); err != nil {
		return err
	}
	if n.fsm.State().ClusterID != "" {
		return nil
	}
	material, err := kms.NewKeyMaterial()
	if err != nil {
		return err
	}
	wrapped, err := n.keys.Root().WrapKeyMaterial("default", 1, material)
	clear(material)
	if err != nil {
		return err
	}
	env, err := fsm.NewEnvelope(fsm.CmdInitCluster, &fsm.InitCluster{
		ClusterID: randomHex(16), DefaultKey: wrapped, RootFingerprint: n.keys.Root().Fingerprint(),
	}, "", nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := n.Propose(ctx, env)
	if err != nil {
		return err
	}
	if res.Err != nil && res.Err.Code != errs.AlreadyExists {
		return res.Err
	}
	n.logger.Info("cluster initialized", "cluster_id", n.fsm.State().ClusterID)
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}

// RandomID returns 128 random bits as hex (uids, accessors, request ids).
func RandomID() string { return randomHex(16) }

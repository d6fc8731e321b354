package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"
)

// gossipMeta is what a node tells its peers about itself through memberlist.
type gossipMeta struct {
	NodeID          string `msgpack:"id"`
	ClusterAddr     string `msgpack:"ca"`
	HTTPAddr        string `msgpack:"ha"`
	RootFingerprint string `msgpack:"fp"` // root key check value: peers under another root key are refused
	Version         string `msgpack:"v"`
	// ClusterID is the cluster whose data this node holds ("" for a fresh
	// node): a server with another cluster's data is never admitted.
	ClusterID string `msgpack:"cid,omitempty"`

	// RootFingerprints are all the root keys the node holds (oldest first):
	// during a root key rotation, peers that share any key are one cluster.
	RootFingerprints []string `msgpack:"fps,omitempty"`
}

var hclogStdOpts = hclog.StandardLoggerOptions{InferLevels: true}

// Version is the software version gossiped to peers.
var Version = "dev"

// memberHealth is what the leader has seen of a server through gossip.
type memberHealth struct {
	aliveSince time.Time // start of the current alive streak; zero when not alive
	lastAlive  time.Time
}

type gossipDelegate struct {
	base      gossipMeta
	announced atomic.Value // cluster id last broadcast
	fp        string
	fps       []string // all root keys held, for sameRoot
	n         *Node

	mu      sync.Mutex
	health  map[raft.ServerID]memberHealth // leader's view, for stabilization and cleanup
	removed map[raft.ServerID]time.Time    // recently removed: not re-admitted for a while
	addrs   map[raft.ServerID]string       // last gossip address seen, to rejoin after a partition
}

// NodeMeta is computed on each gossip broadcast, so a fresh node starts
// announcing its cluster id once it has one.
func (d *gossipDelegate) NodeMeta(limit int) []byte {
	m := d.base
	m.ClusterID = d.n.clusterID()
	b, err := msgpack.Marshal(&m)
	if err != nil || len(b) > limit {
		return nil
	}
	return b
}
func (d *gossipDelegate) NotifyMsg([]byte)                           {}
func (d *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(join bool) []byte                { return nil }
func (d *gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

// NotifyAlive refuses peers of another cluster (another root key).
func (d *gossipDelegate) NotifyAlive(peer *memberlist.Node) error {
	m, err := decodeMeta(peer.Meta)
	if err != nil {
		return fmt.Errorf("peer %s: %w", peer.Name, err)
	}
	if !d.sameRoot(m) {
		d.n.logger.Warn("refusing gossip peer under a different root key", "peer", peer.Name, "addr", peer.Address())
		return fmt.Errorf("peer %s belongs to another cluster (different root key)", peer.Name)
	}
	return nil
}

// sameRoot reports whether a peer shares a root key with this node: during
// a root key rotation some nodes hold old+new while others hold old only.
func (d *gossipDelegate) sameRoot(m gossipMeta) bool {
	if m.RootFingerprint == d.fp {
		return true
	}
	for _, fp := range append(m.RootFingerprints, m.RootFingerprint) {
		if slices.Contains(d.fps, fp) {
			return true
		}
	}
	return false
}

func decodeMeta(b []byte) (gossipMeta, error) {
	var m gossipMeta
	if err := msgpack.Unmarshal(b, &m); err != nil || m.NodeID == "" {
		return m, errors.New("missing or malformed node metadata")
	}
	return m, nil
}

func (n *Node) startGossip() error {
	host, portStr, err := net.SplitHostPort(n.cfg.GossipAddr)
	if err != nil {
		return fmt.Errorf("bad --gossip-addr %q: %w", n.cfg.GossipAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("bad --gossip-addr port %q", portStr)
	}
	base := gossipMeta{
		NodeID: n.cfg.NodeID, ClusterAddr: n.cfg.ClusterAddr, HTTPAddr: n.cfg.HTTPAddr,
		RootFingerprint: n.keys.Root().Fingerprint(), RootFingerprints: n.keys.Root().Fingerprints(), Version: Version,
	}
	d := &gossipDelegate{base: base, fp: n.keys.Root().Fingerprint(), fps: n.keys.Root().Fingerprints(), n: n, health: map[raft.ServerID]memberHealth{}, removed: map[raft.ServerID]time.Time{}, addrs: map[raft.ServerID]string{}}
	mc := memberlist.DefaultLANConfig()
	mc.Name = n.cfg.NodeID
	mc.BindAddr, mc.BindPort = host, port
	if n.cfg.Advertise != "" {
		ah := n.cfg.Advertise
		if h, _, err := net.SplitHostPort(ah); err == nil {
			ah = h
		}
		// memberlist needs an IP: resolve a host name (a compose service).
		ips, err := net.LookupIP(ah)
		if err != nil || len(ips) == 0 {
			return fmt.Errorf("resolve --advertise %q: %v", ah, err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ips[0].String(), port
	}
	if n.cfg.GossipProbe > 0 {
		mc.ProbeInterval = n.cfg.GossipProbe
		mc.GossipInterval = n.cfg.GossipProbe / 5
	}
	// Gossip is encrypted with a key derived from the newest root key; keys
	// derived from older root keys still decrypt during a root key rotation.
	// A node under another root key can't read or join the gossip pool.
	derived := n.keys.Root().DeriveKeys("gossip")
	kr, err := memberlist.NewKeyring(derived[:len(derived)-1], derived[len(derived)-1])
	if err != nil {
		return fmt.Errorf("gossip keyring: %w", err)
	}
	mc.Keyring = kr
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	mc.Delegate = d
	mc.Alive = d
	// A logger without its own prefix, so hclog sees "[DEBUG]" and maps the level.
	mc.Logger = n.logger.Named("gossip").StandardLogger(&hclogStdOpts)
	if n.ml, err = memberlist.Create(mc); err != nil {
		return fmt.Errorf("start gossip on %s: %w", n.cfg.GossipAddr, err)
	}
	n.gossip = d
	if len(n.cfg.Join) > 0 {
		n.goLoop(n.joinLoop)
	}
	n.goEvery(10*time.Second, n.rejoinLostMembers)
	return nil
}

// joinLoop retries --join until a member answers.
func (n *Node) joinLoop() {
	backoff := 200 * time.Millisecond
	for {
		if _, err := n.ml.Join(n.cfg.Join); err == nil {
			n.logger.Info("joined gossip pool", "via", n.cfg.Join)
			return
		} else {
			n.logger.Warn("join failed; retrying", "via", n.cfg.Join, "error", err)
		}
		select {
		case <-n.shutdownCh:
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// Join makes this node contact a gossip address; the leader then admits the
// servers it learns of.
func (n *Node) Join(addr string) error {
	if n.ml == nil {
		return errs.New(errs.FailedPrecondition, "this node runs without gossip (dev mode)")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errs.New(errs.InvalidArgument, "addr %q must be host:port (a node's gossip address)", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return errs.New(errs.InvalidArgument, "addr %q: bad port", addr)
	}
	if _, err := net.LookupHost(host); err != nil {
		return errs.New(errs.InvalidArgument, "addr %q: can't resolve %s", addr, host)
	}
	if _, err := n.ml.Join([]string{addr}); err != nil {
		return errs.New(errs.Unavailable, "join %s: %v", addr, err)
	}
	return nil
}

// reconcileMembers (leader only) keeps the Raft configuration in line with
// gossip, autopilot-style: an alive gossip member missing from the
// configuration joins as a non-voter; a non-voter alive for the whole
// stabilization period becomes a voter; with DeadServerCleanup, a server
// failed for longer than DeadServerThreshold is removed when a healthy
// majority remains.
func (n *Node) reconcileMembers() {
	if n.ml == nil || n.gossip == nil {
		return
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return
	}
	servers := map[raft.ServerID]raft.Server{}
	for _, s := range cf.Configuration().Servers {
		servers[s.ID] = s
	}
	now := time.Now()
	d := n.gossip
	alive := map[raft.ServerID]gossipMeta{}
	for _, m := range n.ml.Members() {
		meta, err := decodeMeta(m.Meta)
		if err != nil || !d.sameRoot(meta) {
			continue
		}
		if own := n.clusterID(); meta.ClusterID != "" && own != "" && meta.ClusterID != own {
			n.logger.Warn("not admitting a server holding another cluster's data", "node", meta.NodeID, "its_cluster", meta.ClusterID)
			continue
		}
		if m.State == memberlist.StateAlive {
			alive[raft.ServerID(meta.NodeID)] = meta
			d.mu.Lock()
			d.addrs[raft.ServerID(meta.NodeID)] = m.Address()
			d.mu.Unlock()
		}
	}
	d.mu.Lock()
	for id := range servers {
		h := d.health[id]
		if _, ok := alive[id]; ok || string(id) == n.cfg.NodeID {
			if h.aliveSince.IsZero() {
				h.aliveSince = now
			}
			h.lastAlive = now
		} else {
			h.aliveSince = time.Time{}
			if h.lastAlive.IsZero() {
				h.lastAlive = now // start the failure clock when first noticed
			}
		}
		d.health[id] = h
	}
	for id := range alive {
		if _, ok := servers[id]; !ok {
			h := d.health[id]
			if h.aliveSince.IsZero() {
				h.aliveSince = now
			}
			h.lastAlive = now
			d.health[id] = h
		}
	}
	health := maps.Clone(d.health)
	d.mu.Unlock()

	for id, meta := range alive {
		s, inConfig := servers[id]
		if !inConfig || s.Suffrage == raft.Nonvoter {
			// Gossip only proves the root key: admit and promote a server
			// only once it answers on the cluster port (mutual TLS) as
			// itself, and promote it only once it has caught up.
			if !n.reachable(id, meta.ClusterAddr, !inConfig) {
				continue
			}
		}
		switch {
		case !inConfig && n.recentlyRemoved(id, now):
			continue
		case !inConfig:
			n.logger.Info("adding server as non-voter", "node", meta.NodeID, "addr", meta.ClusterAddr)
			if err := n.raft.AddNonvoter(id, raft.ServerAddress(meta.ClusterAddr), 0, 5*time.Second).Error(); err != nil {
				n.logger.Warn("add non-voter failed", "node", meta.NodeID, "error", err)
			}
		case s.Address != raft.ServerAddress(meta.ClusterAddr):
			n.logger.Info("server address changed; updating", "node", meta.NodeID, "addr", meta.ClusterAddr)
			// Re-adding with the same suffrage only updates the address
			// (a container restarted with a new IP keeps its vote).
			add := n.raft.AddNonvoter
			if s.Suffrage == raft.Voter {
				add = n.raft.AddVoter
			}
			if err := add(id, raft.ServerAddress(meta.ClusterAddr), 0, 5*time.Second).Error(); err != nil {
				n.logger.Warn("update server address failed", "node", meta.NodeID, "error", err)
			}
		case s.Suffrage == raft.Nonvoter && now.Sub(health[id].aliveSince) >= n.cfg.StabilizationPeriod:
			n.logger.Info("promoting server to voter", "node", meta.NodeID)
			if err := n.raft.AddVoter(id, s.Address, 0, 5*time.Second).Error(); err != nil {
				n.logger.Warn("promote failed", "node", meta.NodeID, "error", err)
			}
		}
	}
	if n.cfg.DeadServerCleanup {
		n.removeDeadServer(servers, alive, health, now)
	}
}

// removeDeadServer removes at most one server failed for longer than the
// threshold, and only while the voters still alive are a majority of the
// configuration: removing a dead server then never costs availability.
func (n *Node) removeDeadServer(servers map[raft.ServerID]raft.Server, alive map[raft.ServerID]gossipMeta, health map[raft.ServerID]memberHealth, now time.Time) {
	voters, healthy := 0, 0
	for id, s := range servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if _, ok := alive[id]; ok || string(id) == n.cfg.NodeID {
			healthy++
		}
	}
	for id, s := range servers {
		if _, ok := alive[id]; ok || string(id) == n.cfg.NodeID {
			continue
		}
		if now.Sub(health[id].lastAlive) < n.cfg.DeadServerThreshold {
			continue
		}
		if s.Suffrage == raft.Voter && healthy <= voters/2 {
			n.logger.Warn("not removing failed server: too few healthy voters would remain", "node", id, "healthy", healthy, "voters", voters)
			return
		}
		n.logger.Warn("removing server failed for longer than the threshold", "node", id, "threshold", n.cfg.DeadServerThreshold)
		if err := n.raft.RemoveServer(id, 0, 5*time.Second).Error(); err != nil {
			n.logger.Warn("remove failed server", "node", id, "error", err)
		}
		return
	}
}

// Members lists the Raft servers with gossip addresses and status.
func (n *Node) Members(ctx context.Context) ([]apitypes.Member, error) {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, errs.New(errs.Unavailable, "read configuration: %v", err)
	}
	gossip := map[string]*memberlist.Node{}
	if n.ml != nil {
		for _, m := range n.ml.Members() {
			gossip[m.Name] = m
		}
	}
	_, leaderID := n.raft.LeaderWithID()
	servers := cf.Configuration().Servers
	out := make([]apitypes.Member, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		m := apitypes.Member{NodeID: string(s.ID), ClusterAddr: string(s.Address), Suffrage: "voter", State: "unknown", Leader: s.ID == leaderID}
		if s.Suffrage != raft.Voter {
			m.Suffrage = "nonvoter"
		}
		if g, ok := gossip[string(s.ID)]; ok {
			m.GossipAddr = g.Address()
			m.State = map[memberlist.NodeStateType]string{memberlist.StateAlive: "alive", memberlist.StateSuspect: "suspect", memberlist.StateDead: "failed", memberlist.StateLeft: "left"}[g.State]
			if meta, err := decodeMeta(g.Meta); err == nil {
				m.HTTPAddr = meta.HTTPAddr
			}
		} else if n.ml != nil {
			m.State = "failed"
		}
		if string(s.ID) == n.cfg.NodeID {
			m.HTTPAddr, m.State = n.cfg.HTTPAddr, "alive"
			if n.ml != nil {
				m.GossipAddr = n.ml.LocalNode().Address()
			}
		}
		out[i] = m
		wg.Add(1)
		go func(i int, id, addr string) {
			defer wg.Done()
			st, err := n.peerStatus(ctx, id, addr)
			if err != nil {
				return
			}
			out[i].AppliedIndex = st.AppliedIndex
			if st.LastContact != 0 {
				t := time.Unix(0, st.LastContact).UTC()
				out[i].LastContact = &t
			}
		}(i, string(s.ID), string(s.Address))
	}
	wg.Wait()
	sort.Slice(out, func(a, b int) bool { return out[a].NodeID < out[b].NodeID })
	return out, nil
}

// Role returns leader, follower or nonvoter.
func (n *Node) Role() string {
	if n.raft.State() == raft.Leader {
		return "leader"
	}
	if cf := n.raft.GetConfiguration(); cf.Error() == nil {
		for _, s := range cf.Configuration().Servers {
			if string(s.ID) == n.cfg.NodeID && s.Suffrage != raft.Voter {
				return "nonvoter"
			}
		}
	}
	return "follower"
}

// LeaderID returns the current leader's id, "" if none is known.
func (n *Node) LeaderID() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// Health reports whether this node is serving and why not.
func (n *Node) Health() (apitypes.Health, bool) {
	st := n.fsm.State()
	h := apitypes.Health{NodeID: n.cfg.NodeID, Role: n.Role(), LeaderID: n.LeaderID(), AppliedIndex: n.AppliedIndex(), Initialized: st.Initialized, Warnings: []string{}}
	serving := true
	if e := n.fatal.Load(); e != nil {
		h.Warnings = append(h.Warnings, "not serving: "+(*e).Error())
		serving = false
	}
	if h.LeaderID == "" {
		h.Warnings = append(h.Warnings, "no leader: the cluster has no quorum or is electing one")
		serving = false
	}
	if st.ClusterID == "" {
		h.Warnings = append(h.Warnings, "cluster not formed yet: this node has not applied the cluster's init entry")
		serving = false
	} else if !st.Initialized {
		h.Warnings = append(h.Warnings, "not initialized: run `coffer operator init` to create the root token")
	}
	h.Warnings = append(h.Warnings, n.kmsWarnings(st)...) // keytimer.go
	if e := n.fsm.AuditStoreError(); e != "" {
		h.Warnings = append(h.Warnings, "audit store failing on this node (the replicated trail is intact; this node's audit queries and verification miss entries until it is fixed and restarted): "+e)
	}
	return h, serving
}

// RemovePeer removes a server from the Raft configuration (leader only).
func (n *Node) RemovePeer(ctx context.Context, id string) error {
	if id == "" {
		return errs.New(errs.InvalidArgument, "node_id is required")
	}
	if n.raft.State() != raft.Leader {
		_, err := n.callLeader(ctx, rpcRemovePeer, []byte(id))
		return err
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return errs.New(errs.Unavailable, "%v", err)
	}
	found := false
	for _, s := range cf.Configuration().Servers {
		found = found || string(s.ID) == id
	}
	if !found {
		return errs.New(errs.NotFound, "node %q is not a member", id)
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
		return errs.New(errs.Unavailable, "remove %s: %v", id, err)
	}
	if d := n.gossip; d != nil {
		d.mu.Lock()
		d.removed[raft.ServerID(id)] = time.Now()
		delete(d.health, raft.ServerID(id))
		d.mu.Unlock()
	}
	return nil
}

// TransferLeadership hands leadership to id, or to the most up-to-date
// voter when id is empty (leader only).
func (n *Node) TransferLeadership(ctx context.Context, id string) error {
	if n.raft.State() != raft.Leader {
		_, err := n.callLeader(ctx, rpcTransfer, []byte(id))
		return err
	}
	var f raft.Future
	if id == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		cf := n.raft.GetConfiguration()
		if err := cf.Error(); err != nil {
			return errs.New(errs.Unavailable, "%v", err)
		}
		var addr raft.ServerAddress
		for _, s := range cf.Configuration().Servers {
			if string(s.ID) == id && s.Suffrage == raft.Voter {
				addr = s.Address
			}
		}
		if addr == "" {
			return errs.New(errs.NotFound, "node %q is not a voter", id)
		}
		f = n.raft.LeadershipTransferToServer(raft.ServerID(id), addr)
	}
	if err := f.Error(); err != nil {
		return errs.New(errs.Unavailable, "leadership transfer: %v", err)
	}
	return nil
}

// Indexes returns Raft's commit index and the applied index (AppliedIndex).
func (n *Node) Indexes() (commit, applied uint64) { return n.raft.CommitIndex(), n.AppliedIndex() }

// clusterID is the cluster this node's data belongs to: from the state, or
// from the data dir (a node whose log has not been replayed yet).
func (n *Node) clusterID() string {
	if id := n.fsm.State().ClusterID; id != "" {
		return id
	}
	if n.meta != nil {
		return n.meta.clusterID()
	}
	return ""
}

// announceClusterID re-broadcasts this node's gossip metadata once it knows
// its cluster id (memberlist only asks for metadata when told to).
func (n *Node) announceClusterID() {
	if n.ml == nil || n.gossip == nil {
		return
	}
	id := n.clusterID()
	if id == "" || n.gossip.announced.Load() == id {
		return
	}
	if err := n.ml.UpdateNode(time.Second); err != nil {
		n.logger.Debug("gossip metadata update", "error", err)
		return
	}
	n.gossip.announced.Store(id)
}

// reachable checks a server over the cluster port: it must complete the
// (mutual TLS) handshake and answer as id; unless admitting, it must also
// be within a few thousand entries of this leader's commit index.
func (n *Node) reachable(id raft.ServerID, addr string, admitting bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := n.peerStatus(ctx, "", addr)
	if err != nil || st.NodeID != string(id) {
		n.logger.Warn("server not admitted or promoted: its cluster port does not answer as it (TLS or network)", "node", id, "addr", addr, "error", err)
		return false
	}
	if admitting {
		return true
	}
	return st.AppliedIndex+4096 >= n.raft.CommitIndex()
}

// recentlyRemoved keeps a removed server out for a minute, so that a node
// removed while still running is not re-admitted at once.
func (n *Node) recentlyRemoved(id raft.ServerID, now time.Time) bool {
	d := n.gossip
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.removed[id]
	if ok && now.Sub(at) > time.Minute {
		delete(d.removed, id)
		return false
	}
	return ok
}

// rejoinLostMembers re-contacts servers of the Raft configuration that
// gossip lost (memberlist forgets dead members after a while: after a long
// partition the pools would stay split although Raft healed). It runs every
// 10 s.
func (n *Node) rejoinLostMembers() {
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	alive := map[string]bool{}
	for _, m := range n.ml.Members() {
		if m.State == memberlist.StateAlive {
			alive[m.Name] = true
		}
	}
	var addrs []string
	n.gossip.mu.Lock()
	for _, s := range cf.Configuration().Servers {
		if a, ok := n.gossip.addrs[s.ID]; ok && !alive[string(s.ID)] && string(s.ID) != n.cfg.NodeID {
			addrs = append(addrs, a)
		}
	}
	n.gossip.mu.Unlock()
	if len(addrs) == 0 && len(alive) < len(cf.Configuration().Servers) {
		addrs = n.cfg.Join
	}
	if len(addrs) > 0 {
		if _, err := n.ml.Join(addrs); err == nil {
			n.logger.Info("re-contacted lost gossip members", "addrs", addrs)
		}
	}
}

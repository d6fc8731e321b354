package node

import (
	"errors"
	"time"

	"github.com/hashicorp/raft"
)

// snapshotCheckEvery is how often snapshotIfBacklog runs.
const snapshotCheckEvery = 2 * time.Second

// snapshotIfBacklog takes a Raft snapshot once more commands than
// snapshotCommandLimit were applied since the last one. Raft's own trigger
// counts log entries, which group commit makes anywhere from one to a
// thousand commands, so it alone can't bound what a restarted node replays.
func (n *Node) snapshotIfBacklog() {
	backlog := n.fsm.CommandsSinceSnapshot()
	if backlog < snapshotCommandLimit(n.cfg.SnapshotCommands, n.fsm.State().VersionCount) {
		return
	}
	start := time.Now()
	err := n.raft.Snapshot().Error()
	switch {
	case err == nil:
		n.logger.Info("snapshot taken", "commands_since_last", backlog, "took", time.Since(start).Round(time.Millisecond))
	case errors.Is(err, raft.ErrNothingNewToSnapshot), errors.Is(err, raft.ErrRaftShutdown):
	default:
		n.logger.Warn("snapshot failed", "commands_since_last", backlog, "error", err)
	}
}

// snapshotCommandLimit is the replay backlog that triggers a snapshot:
// at least floor, and an eighth of the stored versions, since a snapshot costs
// in proportion to the state (~3 s of a core at a million secrets) and a
// replay in proportion to the commands: under heavy load a large state is
// then snapshotted every ~10-20 s rather than every few seconds, and its
// replay stays near the time its snapshot takes to restore.
func snapshotCommandLimit(floor uint64, versions int) uint64 {
	return max(floor, uint64(max(versions, 0))/8)
}

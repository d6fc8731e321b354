// Package node runs one Coffer server: Raft (raft-wal log and stable store,
// or raft-boltdb/v2 for data dirs that hold one; file snapshots), bootstrap and membership through memberlist, group
// commit of commands and forwarding to the leader, read consistency
// (stale, min_index, leader) and shutdown. It knows nothing of HTTP or JSON.
package node

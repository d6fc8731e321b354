// Package node runs one Coffer server: Raft (raft-boltdb/v2 log and stable
// store, file snapshots), bootstrap and membership through memberlist, group
// commit of commands and forwarding to the leader, read consistency
// (stale, min_index, leader) and shutdown. It knows nothing of HTTP or JSON.
package node

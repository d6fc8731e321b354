// Package audit owns Coffer's audit trail below the state machine: the hash
// chain over entries (ComputeHash, Head, VerifyEntries), the node-local
// append-only store the FSM writes applied entries to (Store, with a bbolt
// implementation for servers and an in-memory one for dev mode and tests),
// the queryAudit/verifyAudit scans over that store, and the JSON-lines sink
// behind --audit-file.
//
// Entries travel through the Raft log and get their seq and hash assigned
// deterministically in fsm.Apply (via Head.Append); every node then writes them
// to its own Store. The trail is deliberately not part of Raft snapshots (it
// grows forever): a snapshot carries only the chain Head. Store writes are
// idempotent by seq, so replaying the Raft log after a crash rewrites the same
// entries harmlessly.
//
// Entries never hold a secret value, token or key material; this package only
// hashes, stores and filters what it is given.
package audit

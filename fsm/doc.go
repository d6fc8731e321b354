// Package fsm is Coffer's replicated state machine: the command types and
// their msgpack encoding, Apply dispatch, the state (secrets, versions, KMS
// keys, tokens, audit chain head) and Snapshot/Restore.
//
// The state is a set of copy-on-write trees (a B-tree for secrets, radix
// trees for the small tables) behind an atomic pointer: Apply builds a new
// version per log entry and readers load it without locks. Apply
// never reads the clock or randomness and never sees plaintext: every command
// carries the leader's timestamp, generated ids and ciphertexts.
package fsm

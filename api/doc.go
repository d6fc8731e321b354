// Package api is Coffer's HTTP API: routing of POST /v1/<action>, strict
// request decoding and validation, authentication and authorization, audit
// entries for every request that reaches an action, and the one place where
// errors become HTTP statuses. It never touches Raft directly: it builds
// commands (encrypting values first) and hands them to node.
package api

// Package apitypes holds the HTTP API's request and answer types (SPEC §2).
// It is a leaf package: the server's api package and the client SDK both
// import it, so the SDK never links the server.
package apitypes

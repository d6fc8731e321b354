// Package transport owns Coffer's inter-node networking: one TCP listener on
// the cluster port, optionally wrapped in mutual TLS, that carries both Raft's
// stream layer and the internal forwarding RPC.
//
// Every accepted connection is TLS-handshaken (when a server config is given)
// and then routed by its first byte: ByteRaft connections are handed to the
// raft.StreamLayer returned by Mux.RaftLayer, ByteRPC connections to the
// handler installed with Mux.ServeRPC. Dialers write the byte right after the
// handshake, so one port, one certificate and one firewall rule serve both.
//
// The forwarding RPC is deliberately dumb: a request is a method number and an
// opaque body, a response is an opaque body or an *errs.Error (code and
// message). Frames are a 4-byte big-endian length followed by the payload and
// are capped at MaxFrameSize. The package never looks inside a body, so it
// cannot know what a secret is; callers (node) define the methods and encode
// the bodies.
//
// RPCClient keeps a small pool of persistent connections per peer. Each
// connection carries one request at a time, which keeps the protocol free of
// request ids and makes a broken connection's blast radius one call.
package transport

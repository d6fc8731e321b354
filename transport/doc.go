// Package transport owns Coffer's inter-node networking: one TCP listener on
// the cluster port that carries both Raft's stream layer and the internal
// forwarding RPC, open only to members of the cluster.
//
// Invariant: nothing but an authentication handshake is read from a peer
// before it has proven membership, and a dialer proves itself and checks the
// server the same way before sending anything (auth.go). With TLS, proof is
// a certificate of the cluster CA carrying the node marking (URI SAN
// urn:coffer:node:<id>); without TLS, a mutual HMAC challenge-response keyed
// with a root-key-derived key (handshake.go). The peer's node id is bound
// to the connection: RPC handlers see it (PeerID), and every Raft RPC on an
// accepted connection must name it in its header or the connection is closed
// (raftfilter.go). Refusals are logged with the peer address and reported
// through Config.OnRefusal.
//
// After authentication a connection is routed by its protocol byte (sent
// inside the handshake, or right after TLS): ByteRaft connections are handed
// to the raft.StreamLayer returned by Mux.RaftLayer, ByteRPC connections to
// the handler installed with Mux.ServeRPC. One port, one certificate and one
// firewall rule serve both.
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

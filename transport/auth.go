package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// NodeURIPrefix starts the URI SAN that marks a certificate as a node's:
// "urn:coffer:node:<node-id>". With TLS, the cluster port accepts only
// certificates carrying exactly one such SAN (the client certificate of
// `coffer operator tls` has none), and the node id in it is the peer's
// authenticated id.
const NodeURIPrefix = "urn:coffer:node:"

// maxNodeIDLen bounds a node id on the wire (one length byte) and in a
// certificate.
const maxNodeIDLen = 255

// Refusal reasons passed to Config.OnRefusal (and used as metric labels).
const (
	RefusedHandshake   = "handshake"   // malformed, truncated, oversized or timed-out handshake
	RefusedKey         = "key"         // challenge-response under a key we don't hold
	RefusedTLS         = "tls"         // TLS handshake failed (no certificate, unknown CA...)
	RefusedCertificate = "certificate" // valid certificate without the node marking
	RefusedRaftHeader  = "raft_header" // Raft RPC naming a server other than the authenticated peer
)

// Config is a node's identity on the cluster port, shared by the listener
// (Listen) and the dialers (RaftLayer's Dial, NewRPCClient).
//
// With TLS (ServerTLS and ClientTLS set), peers prove membership with a
// node certificate (see NodeURIPrefix) and the node id comes from it. Without
// TLS, both sides run a mutual HMAC challenge-response (handshake.go) keyed
// with Keys, which must be derived from the root key.
type Config struct {
	NodeID    string
	Keys      [][]byte    // cluster-port keys, oldest first; required without TLS
	ServerTLS *tls.Config // must require and verify client certificates
	ClientTLS *tls.Config
	Logger    hclog.Logger
	// OnRefusal, if set, is called once per refused peer or Raft RPC with
	// one of the Refused* reasons (node counts them in a metric).
	OnRefusal func(reason string)
}

func (c *Config) tlsMode() bool { return c.ServerTLS != nil || c.ClientTLS != nil }

// validate checks that the configuration authenticates every peer; it is
// what makes a node refuse to start with a certificate that isn't its own.
func (c *Config) validate(listening bool) error {
	if err := checkNodeID(c.NodeID); err != nil {
		return fmt.Errorf("cluster port: node id: %w", err)
	}
	if !c.tlsMode() {
		if len(c.Keys) == 0 {
			return errors.New("cluster port: no key to authenticate peers (derive one from the root key)")
		}
		for _, k := range c.Keys {
			if len(k) < 32 {
				return errors.New("cluster port: key shorter than 32 bytes")
			}
		}
		return nil
	}
	if c.ClientTLS == nil || (listening && c.ServerTLS == nil) {
		return errors.New("cluster port: TLS needs both a server and a client configuration")
	}
	ct := c.ClientTLS
	if len(ct.Certificates) == 0 && ct.GetClientCertificate == nil {
		return errors.New("cluster port: the client TLS configuration has no certificate")
	}
	if ct.InsecureSkipVerify && ct.VerifyPeerCertificate == nil && ct.VerifyConnection == nil {
		return errors.New("cluster port: the client TLS configuration verifies no server certificate")
	}
	if !listening {
		return nil
	}
	st := c.ServerTLS
	if st.ClientAuth != tls.RequireAndVerifyClientCert || st.ClientCAs == nil {
		return errors.New("cluster port: TLS must require and verify client certificates against the cluster CA")
	}
	if len(st.Certificates) == 0 {
		return errors.New("cluster port: the server TLS configuration has no certificate")
	}
	leaf := st.Certificates[0].Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(st.Certificates[0].Certificate[0]); err != nil {
			return fmt.Errorf("cluster port: parse own certificate: %w", err)
		}
	}
	id, err := NodeIDFromCert(leaf)
	if err != nil {
		return fmt.Errorf("this node's TLS certificate is not a node certificate for --node-id %q (%v): it needs the URI SAN %s%s; certificates made by an older `coffer operator tls` must be regenerated", c.NodeID, err, NodeURIPrefix, c.NodeID)
	}
	if id != c.NodeID {
		return fmt.Errorf("this node's TLS certificate is for node %q, not --node-id %q (URI SAN %s%s expected)", id, c.NodeID, NodeURIPrefix, c.NodeID)
	}
	return nil
}

func (c *Config) logger() hclog.Logger {
	if c.Logger == nil {
		return hclog.NewNullLogger()
	}
	return c.Logger
}

func (c *Config) refused(reason string) {
	if c.OnRefusal != nil {
		c.OnRefusal(reason)
	}
}

// checkNodeID accepts what can travel in the handshake and in a URI SAN:
// 1-255 printable ASCII characters without spaces.
func checkNodeID(id string) error {
	if id == "" || len(id) > maxNodeIDLen {
		return fmt.Errorf("must be 1 to %d characters", maxNodeIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return errors.New("must be printable ASCII without spaces")
		}
	}
	return nil
}

// NodeIDFromCert returns the node id of a node certificate: the one URI SAN
// starting with NodeURIPrefix. A certificate with none (a client
// certificate) or several is not a node certificate.
func NodeIDFromCert(cert *x509.Certificate) (string, error) {
	var id string
	n := 0
	for _, u := range cert.URIs {
		s := u.String()
		if !strings.HasPrefix(s, NodeURIPrefix) {
			continue
		}
		n++
		id = strings.TrimPrefix(s, NodeURIPrefix)
	}
	switch {
	case n == 0:
		return "", errors.New("no " + NodeURIPrefix + "<node-id> URI SAN")
	case n > 1:
		return "", errors.New("more than one " + NodeURIPrefix + " URI SAN")
	}
	if err := checkNodeID(id); err != nil {
		return "", fmt.Errorf("node id in certificate %w", err)
	}
	return id, nil
}

// peerNodeID returns the authenticated node id of a completed TLS
// connection's peer (its chain was verified by the handshake).
func peerNodeID(tc *tls.Conn) (string, error) {
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "", errors.New("peer presented no certificate")
	}
	return NodeIDFromCert(certs[0])
}

// authConn is a connection whose peer proved membership; peer is its node id.
type authConn struct {
	net.Conn
	peer string
}

type peerKey struct{}

// PeerID returns the authenticated node id of the peer whose forwarded
// request ctx belongs to ("" outside an RPC handler).
func PeerID(ctx context.Context) string {
	s, _ := ctx.Value(peerKey{}).(string)
	return s
}

// Peer returns the authenticated node id of a connection accepted from the
// cluster port ("" for any other connection).
func Peer(c net.Conn) string {
	switch c := c.(type) {
	case *authConn:
		return c.peer
	case *raftFilterConn:
		return c.peer
	}
	return ""
}

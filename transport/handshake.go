package transport

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
)

// The cluster port's challenge-response without TLS: both sides prove they
// hold a key derived from the cluster's root key, before the server reads
// anything else from the client and before the client sends anything that
// matters. Messages (all sizes bounded, the whole exchange under the
// handshake deadline):
//
//	server hello:  magic "CFCP" | version 1 | nonceS[32] | len | serverID
//	client hello:  magic "CFCP" | version 1 | proto | nonceC[32] | len | clientID | n | n × MAC[32]
//	server finish: MAC[32]
//
// The client sends one MAC per key it holds, newest first (at most
// maxHandshakeKeys): during a root key rotation nodes hold different sets
// of keys, and any key both sides hold proves membership. Each MAC is
// HMAC-SHA256(key, label(direction) | nonceS | nonceC | proto | len |
// serverID | len | clientID); the server answers with the MAC of the other
// direction under the first of its keys (newest first) that matched. The
// direction label stops a MAC being reflected back; the fresh nonces of both
// sides stop replays; the ids and protocol byte are bound to the MACs, so
// the authenticated client id can't be swapped afterwards.
//
// It authenticates the connection's start only: the traffic after it is
// neither encrypted nor integrity-protected (use --tls-* off loopback).
const (
	handshakeVersion = 1
	nonceSize        = 32
	macSize          = sha256.Size
	maxHandshakeKeys = 8
	labelC2S         = "coffer cluster-port v1 client->server\x00"
	labelS2C         = "coffer cluster-port v1 server->client\x00"
)

var handshakeMagic = [4]byte{'C', 'F', 'C', 'P'}

type serverHello struct {
	nonce [nonceSize]byte
	id    string
}

type clientHello struct {
	proto byte
	nonce [nonceSize]byte
	id    string
	macs  [][macSize]byte
}

// handshakeError is a refused handshake; reason is one of the Refused*
// values. quiet marks a peer that sent nothing at all (a port scan or health
// check), logged at Debug only.
type handshakeError struct {
	reason string
	quiet  bool
	err    error
}

func (e *handshakeError) Error() string { return e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

func malformed(format string, args ...any) error {
	return &handshakeError{reason: RefusedHandshake, err: fmt.Errorf(format, args...)}
}

func (h *serverHello) encode() []byte {
	b := make([]byte, 0, 4+1+nonceSize+1+len(h.id))
	b = append(b, handshakeMagic[:]...)
	b = append(b, handshakeVersion)
	b = append(b, h.nonce[:]...)
	b = append(b, byte(len(h.id)))
	return append(b, h.id...)
}

func (h *clientHello) encode() []byte {
	b := make([]byte, 0, 4+2+nonceSize+1+len(h.id)+1+macSize*len(h.macs))
	b = append(b, handshakeMagic[:]...)
	b = append(b, handshakeVersion, h.proto)
	b = append(b, h.nonce[:]...)
	b = append(b, byte(len(h.id)))
	b = append(b, h.id...)
	b = append(b, byte(len(h.macs)))
	for _, m := range h.macs {
		b = append(b, m[:]...)
	}
	return b
}

// readHeader reads the magic and version common to both hellos.
func readHeader(r io.Reader, first []byte) error {
	if _, err := io.ReadFull(r, first); err != nil {
		return err
	}
	if [4]byte(first[:4]) != handshakeMagic {
		return malformed("not a cluster-port handshake (bad magic)")
	}
	if first[4] != handshakeVersion {
		return malformed("unsupported handshake version %d", first[4])
	}
	return nil
}

func readID(r io.Reader, n byte) (string, error) {
	if n == 0 {
		return "", malformed("empty node id")
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	id := string(b)
	if err := checkNodeID(id); err != nil {
		return "", malformed("node id %w", err)
	}
	return id, nil
}

// readServerHello decodes a server hello; it never reads past it.
func readServerHello(r io.Reader) (*serverHello, error) {
	var b [4 + 1 + nonceSize + 1]byte
	if err := readHeader(r, b[:]); err != nil {
		return nil, err
	}
	h := &serverHello{}
	copy(h.nonce[:], b[5:5+nonceSize])
	id, err := readID(r, b[len(b)-1])
	if err != nil {
		return nil, err
	}
	h.id = id
	return h, nil
}

// readClientHello decodes a client hello; it never reads past it.
func readClientHello(r io.Reader) (*clientHello, error) {
	var b [4 + 1 + 1 + nonceSize + 1]byte
	if err := readHeader(r, b[:]); err != nil {
		return nil, err
	}
	h := &clientHello{proto: b[5]}
	if h.proto != ByteRaft && h.proto != ByteRPC {
		return nil, malformed("unknown protocol byte %d", h.proto)
	}
	copy(h.nonce[:], b[6:6+nonceSize])
	id, err := readID(r, b[len(b)-1])
	if err != nil {
		return nil, err
	}
	h.id = id
	var n [1]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	if n[0] == 0 || n[0] > maxHandshakeKeys {
		return nil, malformed("%d MACs in client hello (1 to %d)", n[0], maxHandshakeKeys)
	}
	macs := make([]byte, int(n[0])*macSize)
	if _, err := io.ReadFull(r, macs); err != nil {
		return nil, err
	}
	h.macs = make([][macSize]byte, n[0])
	for i := range h.macs {
		copy(h.macs[i][:], macs[i*macSize:])
	}
	return h, nil
}

func handshakeMAC(key []byte, label string, s *serverHello, c *clientHello) [macSize]byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	m.Write(s.nonce[:])
	m.Write(c.nonce[:])
	m.Write([]byte{c.proto, byte(len(s.id))})
	m.Write([]byte(s.id))
	m.Write([]byte{byte(len(c.id))})
	m.Write([]byte(c.id))
	var out [macSize]byte
	m.Sum(out[:0])
	return out
}

// newestFirst returns up to maxHandshakeKeys keys, newest first (Config.Keys
// is oldest first, as kms.RootKeys.DeriveKeys returns them).
func newestFirst(keys [][]byte) [][]byte {
	out := make([][]byte, 0, min(len(keys), maxHandshakeKeys))
	for i := len(keys) - 1; i >= 0 && len(out) < maxHandshakeKeys; i-- {
		out = append(out, keys[i])
	}
	return out
}

// serverHandshake runs the server side on c (under the caller's deadline)
// and returns the client's authenticated id and protocol byte. On error the
// connection must be closed; nothing after the client hello was read.
func serverHandshake(c net.Conn, cfg *Config) (peer string, proto byte, err error) {
	s := &serverHello{id: cfg.NodeID}
	if _, err := rand.Read(s.nonce[:]); err != nil {
		return "", 0, err
	}
	if _, err := c.Write(s.encode()); err != nil {
		return "", 0, classify(err, true)
	}
	cr := &countingReader{r: c}
	h, err := readClientHello(cr)
	if err != nil {
		return "", 0, classify(err, cr.n == 0)
	}
	keys := newestFirst(cfg.Keys)
	for _, k := range keys {
		want := handshakeMAC(k, labelC2S, s, h)
		matched := false
		for i := range h.macs {
			if hmac.Equal(want[:], h.macs[i][:]) {
				matched = true
			}
		}
		if !matched {
			continue
		}
		fin := handshakeMAC(k, labelS2C, s, h)
		if _, err := c.Write(fin[:]); err != nil {
			return "", 0, classify(err, false)
		}
		return h.id, h.proto, nil
	}
	return "", 0, &handshakeError{reason: RefusedKey, err: fmt.Errorf("peer claiming to be node %q proved no key of this cluster (another root key?)", h.id)}
}

// clientHandshake runs the client side on c (under the caller's deadline)
// and returns the server's authenticated id.
func clientHandshake(c net.Conn, cfg *Config, proto byte) (string, error) {
	s, err := readServerHello(c)
	if err != nil {
		return "", classify(err, false)
	}
	h := &clientHello{proto: proto, id: cfg.NodeID}
	if _, err := rand.Read(h.nonce[:]); err != nil {
		return "", err
	}
	keys := newestFirst(cfg.Keys)
	for _, k := range keys {
		h.macs = append(h.macs, handshakeMAC(k, labelC2S, s, h))
	}
	if _, err := c.Write(h.encode()); err != nil {
		return "", classify(err, false)
	}
	var fin [macSize]byte
	if _, err := io.ReadFull(c, fin[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err) {
			// The server hangs up on a client whose MACs it can't verify.
			return "", &handshakeError{reason: RefusedKey, err: fmt.Errorf("node %q refused our cluster key (another root key?): %w", s.id, err)}
		}
		return "", classify(err, false)
	}
	for _, k := range keys {
		want := handshakeMAC(k, labelS2C, s, h)
		if hmac.Equal(want[:], fin[:]) {
			return s.id, nil
		}
	}
	return "", &handshakeError{reason: RefusedKey, err: fmt.Errorf("server claiming to be node %q proved no key of this cluster (another root key?)", s.id)}
}

// classify wraps an I/O or decoding error as a handshakeError.
func classify(err error, nothingRead bool) error {
	var he *handshakeError
	if errors.As(err, &he) {
		return err
	}
	quiet := nothingRead && (errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) || isReset(err))
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("truncated handshake: %w", err)
	}
	return &handshakeError{reason: RefusedHandshake, quiet: quiet, err: err}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

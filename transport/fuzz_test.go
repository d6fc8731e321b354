package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/hashicorp/raft"
)

// FuzzHandshakeDecode feeds arbitrary bytes to both hello decoders: they
// never panic, never read past a hello, and what they accept re-encodes to
// the bytes they consumed.
func FuzzHandshakeDecode(f *testing.F) {
	s := &serverHello{id: "n1"}
	c := &clientHello{proto: ByteRaft, id: "n2", macs: make([][macSize]byte, 2)}
	f.Add(s.encode())
	f.Add(c.encode())
	f.Add([]byte("CFCP\x01"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		if h, err := readServerHello(r); err == nil {
			if used := len(data) - r.Len(); !bytes.Equal(h.encode(), data[:used]) {
				t.Fatalf("server hello re-encodes differently")
			}
		}
		r = bytes.NewReader(data)
		if h, err := readClientHello(r); err == nil {
			if used := len(data) - r.Len(); !bytes.Equal(h.encode(), data[:used]) {
				t.Fatalf("client hello re-encodes differently")
			}
			if checkNodeID(h.id) != nil || len(h.macs) == 0 || len(h.macs) > maxHandshakeKeys {
				t.Fatalf("accepted a hello out of bounds: %q, %d MACs", h.id, len(h.macs))
			}
		}
	})
}

// FuzzRaftRPCFilter feeds arbitrary streams to the Raft RPC filter: it never
// panics, and what it passes on is a prefix of the input made of whole
// requests, each naming the peer (checked by re-parsing).
func FuzzRaftRPCFilter(f *testing.F) {
	for _, seed := range raftSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fc := newRaftFilterConn(nopConn{r: bytes.NewReader(data)}, "p", func(string, string, string) {})
		out, err := io.ReadAll(fc)
		if !bytes.HasPrefix(data, out) {
			t.Fatalf("filter passed bytes that were not sent")
		}
		if err != nil && !errors.Is(err, errRefusedHeader) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("unexpected error %v", err)
		}
		// Everything passed on parses again as requests from "p" (with their
		// snapshot data), and ends on a request boundary unless data ran out.
		p := parser{buf: out}
		for p.pos < len(out) {
			id, size, err := parseRaftRPC(&p)
			if err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) && len(out) == len(data) {
					return // cut inside snapshot data at the end of the input
				}
				t.Fatalf("passed bytes don't re-parse: %v", err)
			}
			if string(id) != "p" {
				t.Fatalf("passed a request from %q", id)
			}
			p.pos += int(min(size, int64(len(out)-p.pos)))
		}
	})
}

func raftSeeds(tb testing.TB) [][]byte {
	h := raft.RPCHeader{ProtocolVersion: 3, ID: []byte("p"), Addr: []byte("127.0.0.1:1")}
	vote := encodeRaftRPC(tb, rpcRequestVote, &raft.RequestVoteRequest{RPCHeader: h, Term: 5})
	app := encodeRaftRPC(tb, rpcAppendEntries, &raft.AppendEntriesRequest{RPCHeader: h, Term: 5,
		Entries: []*raft.Log{{Index: 1, Term: 5, Data: []byte("data")}}})
	snap := append(encodeRaftRPC(tb, rpcInstallSnapshot, &raft.InstallSnapshotRequest{RPCHeader: h, Size: 3, Configuration: []byte("c")}), "xyz"...)
	other := encodeRaftRPC(tb, rpcTimeoutNow, &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{ID: []byte("q")}})
	return [][]byte{vote, app, snap, append(append([]byte{}, app...), vote...), other,
		encodeRaftRPC(tb, rpcRequestPreVote, &raft.RequestPreVoteRequest{RPCHeader: h, Term: 2})}
}

// nopConn is a net.Conn reading from r (the filter uses only Read,
// RemoteAddr and Close).
type nopConn struct {
	r io.Reader
	net.Conn
}

func (c nopConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c nopConn) RemoteAddr() net.Addr       { return &net.TCPAddr{} }
func (c nopConn) Close() error               { return nil }

package transport

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// raftPair runs two real NetworkTransports on two muxes: a (node id aID)
// dials b. b's RPCs are answered by serve.
func raftPair(t *testing.T, aID string, ref *refusals, serve func(raft.RPC)) (ta *raft.NetworkTransport, bAddr raft.ServerAddress) {
	t.Helper()
	a := startMuxCfg(t, "127.0.0.1:0", Config{NodeID: aID, Keys: testKeys}, nil, testConfig())
	b := startMuxCfg(t, "127.0.0.1:0", Config{NodeID: "b", Keys: testKeys, OnRefusal: ref.add}, nil, testConfig())
	ta = raft.NewNetworkTransport(a.RaftLayer(nil), 3, 5*time.Second, io.Discard)
	tb := raft.NewNetworkTransport(b.RaftLayer(nil), 3, 5*time.Second, io.Discard)
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ta.Close(); tb.Close() })
	go func() {
		for {
			select {
			case rpc := <-tb.Consumer():
				serve(rpc)
			case <-done:
				return
			}
		}
	}()
	return ta, raft.ServerAddress(b.Addr().String())
}

func header(id string) raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(id), Addr: []byte("127.0.0.1:1")}
}

func TestRaftHeaderMustNameAuthenticatedPeer(t *testing.T) {
	var ref refusals
	got := make(chan any, 4)
	ta, b := raftPair(t, "a", &ref, func(rpc raft.RPC) {
		got <- rpc.Command
		rpc.Respond(&raft.RequestVoteResponse{Term: 1}, nil)
	})
	var resp raft.RequestVoteResponse
	if err := ta.RequestVote("b", b, &raft.RequestVoteRequest{RPCHeader: header("a"), Term: 1}, &resp); err != nil {
		t.Fatalf("vote from the authenticated peer: %v", err)
	}
	<-got
	for _, claimed := range []string{"n1", ""} {
		err := ta.RequestVote("b", b, &raft.RequestVoteRequest{RPCHeader: header(claimed), Term: 99, LeadershipTransfer: true}, &resp)
		if err == nil {
			t.Fatalf("RequestVote claiming %q was answered", claimed)
		}
	}
	var pv raft.RequestPreVoteResponse
	if err := ta.RequestPreVote("b", b, &raft.RequestPreVoteRequest{RPCHeader: header("n1"), Term: 99}, &pv); err == nil {
		t.Fatal("RequestPreVote claiming another id was answered")
	}
	var tn raft.TimeoutNowResponse
	if err := ta.TimeoutNow("b", b, &raft.TimeoutNowRequest{RPCHeader: header("n1")}, &tn); err == nil {
		t.Fatal("TimeoutNow claiming another id was answered")
	}
	select {
	case c := <-got:
		t.Fatalf("raft saw a refused RPC: %#v", c)
	default:
	}
	if !ref.has(RefusedRaftHeader) {
		t.Fatal("refusal not counted")
	}
}

// Pipelined AppendEntries (many in flight on one connection) and heartbeats
// pass the filter in order.
func TestRaftFilterPipelinedAppendEntries(t *testing.T) {
	var ref refusals
	ta, b := raftPair(t, "a", &ref, func(rpc raft.RPC) {
		req := rpc.Command.(*raft.AppendEntriesRequest)
		var last uint64
		if len(req.Entries) > 0 {
			last = req.Entries[len(req.Entries)-1].Index
		}
		rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: last, Success: true}, nil)
	})
	p, err := ta.AppendEntriesPipeline("b", b)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const n = 200
	go func() {
		for i := 1; i <= n; i++ {
			data := make([]byte, i*37)
			rand.Read(data)
			req := &raft.AppendEntriesRequest{RPCHeader: header("a"), Term: 2, PrevLogEntry: uint64(i - 1),
				Entries: []*raft.Log{{Index: uint64(i), Term: 2, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}}}
			if _, err := p.AppendEntries(req, &raft.AppendEntriesResponse{}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := 1; i <= n; i++ {
		select {
		case f := <-p.Consumer():
			if err := f.Error(); err != nil {
				t.Fatal(err)
			}
			if got := f.Response().LastLog; got != uint64(i) {
				t.Fatalf("response %d for entry %d", got, i)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("pipeline stalled at %d", i)
		}
	}
	var hb raft.AppendEntriesResponse
	if err := ta.AppendEntries("b", b, &raft.AppendEntriesRequest{RPCHeader: header("a"), Term: 2}, &hb); err != nil || !hb.Success {
		t.Fatalf("heartbeat: %+v, %v", hb, err)
	}
}

// InstallSnapshot's raw data follows the request on the stream: it must
// reach Raft byte for byte, and the connection must carry the next RPC.
func TestRaftFilterInstallSnapshotStreams(t *testing.T) {
	snap := make([]byte, 3<<20+17)
	rand.Read(snap)
	var ref refusals
	got := make(chan []byte, 1)
	ta, b := raftPair(t, "a", &ref, func(rpc raft.RPC) {
		switch rpc.Command.(type) {
		case *raft.InstallSnapshotRequest:
			data, err := io.ReadAll(rpc.Reader)
			got <- data
			rpc.Respond(&raft.InstallSnapshotResponse{Term: 3, Success: err == nil}, nil)
		case *raft.AppendEntriesRequest:
			rpc.Respond(&raft.AppendEntriesResponse{Term: 3, Success: true}, nil)
		}
	})
	req := &raft.InstallSnapshotRequest{RPCHeader: header("a"), SnapshotVersion: raft.SnapshotVersionMax, Term: 3,
		LastLogIndex: 10, LastLogTerm: 3, Size: int64(len(snap)), Configuration: []byte("conf")}
	var resp raft.InstallSnapshotResponse
	if err := ta.InstallSnapshot("b", b, req, &resp, bytes.NewReader(snap)); err != nil || !resp.Success {
		t.Fatalf("InstallSnapshot: %+v, %v", resp, err)
	}
	if data := <-got; !bytes.Equal(data, snap) {
		t.Fatalf("raft read %d bytes of snapshot, want the %d sent", len(data), len(snap))
	}
	// A snapshot claiming another sender is refused before its data.
	req.RPCHeader = header("n1")
	if err := ta.InstallSnapshot("b", b, req, &resp, bytes.NewReader(snap)); err == nil {
		t.Fatal("InstallSnapshot claiming another id succeeded")
	}
}

// The filter hands Raft exactly the bytes sent, across requests split at
// any point, and refuses malformed requests without passing a byte on.
func TestRaftFilterConnBytes(t *testing.T) {
	vote := encodeRaftRPC(t, rpcRequestVote, &raft.RequestVoteRequest{RPCHeader: header("p"), Term: 5})
	snapReq := encodeRaftRPC(t, rpcInstallSnapshot, &raft.InstallSnapshotRequest{RPCHeader: header("p"), Size: 5})
	stream := append(append(append(append([]byte{}, vote...), snapReq...), "ABCDE"...), vote...)
	for _, chunk := range []int{1, 3, 7, 1 << 20} {
		srv, cli := net.Pipe()
		go func() {
			for b := stream; len(b) > 0; {
				k := min(chunk, len(b))
				cli.Write(b[:k])
				b = b[k:]
			}
			cli.Close()
		}()
		f := newRaftFilterConn(srv, "p", func(string, string, string) { t.Error("refused") })
		out, err := io.ReadAll(f)
		if err != nil || !bytes.Equal(out, stream) {
			t.Fatalf("chunk %d: got %d bytes (%v), want the %d sent", chunk, len(out), err, len(stream))
		}
	}
	bad := map[string][]byte{
		"unknown type":   append([]byte{9}, vote[1:]...),
		"array, not map": encodeRaftRPC(t, rpcRequestVote, []any{1, "p"}),
		"duplicate ID":   {rpcTimeoutNow, 0x82, 0xa2, 'I', 'D', 0xa1, 'p', 0xa2, 'I', 'D', 0xa1, 'q'},
		"ID as array":    {rpcTimeoutNow, 0x81, 0xa2, 'I', 'D', 0x91, 'p'},
		"negative Size":  {rpcInstallSnapshot, 0x82, 0xa2, 'I', 'D', 0xa1, 'p', 0xa4, 'S', 'i', 'z', 'e', 0xff},
	}
	for name, msg := range bad {
		srv, cli := net.Pipe()
		go func() { cli.Write(msg); cli.Close() }()
		refused := false
		f := newRaftFilterConn(srv, "p", func(string, string, string) { refused = true })
		out, err := io.ReadAll(f)
		if len(out) != 0 || !errors.Is(err, errRefusedHeader) || !refused {
			t.Errorf("%s: passed %d bytes, err %v, refused %v", name, len(out), err, refused)
		}
	}
}

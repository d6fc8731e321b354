package transport

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

func BenchmarkRPCCall(b *testing.B) {
	m := startMux(b, nil, nil, func(_ context.Context, _ uint8, body []byte) ([]byte, error) {
		return body, nil
	})
	c := newClient(b, nil)
	addr := m.Addr().String()
	body := make([]byte, 64)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Call(ctx, addr, 1, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRPCCallParallel(b *testing.B) {
	m := startMux(b, nil, nil, func(_ context.Context, _ uint8, body []byte) ([]byte, error) {
		return body, nil
	})
	c := newClient(b, nil)
	addr := m.Addr().String()
	body := make([]byte, 64)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Call(context.Background(), addr, 1, body); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// loopConn replays one request forever (the filter reads it as a stream of
// identical requests, like a follower's AppendEntries connection); a read
// returns at most the rest of the current request, as a socket read of
// requests arriving one by one would.
type loopConn struct {
	net.Conn
	msg []byte
	off int
}

func (c *loopConn) Read(p []byte) (int, error) {
	n := copy(p, c.msg[c.off:])
	c.off = (c.off + n) % len(c.msg)
	return n, nil
}

// BenchmarkRaftFilter is the cost the header check adds per Raft RPC on an
// accepted connection: a heartbeat, and AppendEntries of 64 entries of
// 512 bytes (a follower under write load), read through the filter as
// Raft's 256 KiB bufio.Reader reads it.
func BenchmarkRaftFilter(b *testing.B) {
	h := raft.RPCHeader{ProtocolVersion: 3, ID: []byte("n1"), Addr: []byte("127.0.0.1:7701")}
	entries := make([]*raft.Log, 64)
	for i := range entries {
		entries[i] = &raft.Log{Index: uint64(i + 1), Term: 2, Type: raft.LogCommand, Data: make([]byte, 512), AppendedAt: time.Now()}
	}
	for name, req := range map[string]*raft.AppendEntriesRequest{
		"heartbeat":    {RPCHeader: h, Term: 2},
		"append64x512": {RPCHeader: h, Term: 2, PrevLogEntry: 10, PrevLogTerm: 2, LeaderCommitIndex: 9, Entries: entries},
	} {
		msg := encodeRaftRPC(b, rpcAppendEntries, req)
		b.Run(name+"/filtered", func(b *testing.B) {
			f := newRaftFilterConn(&loopConn{msg: msg}, "n1", func(string, string, string) { b.Fatal("refused") })
			benchRead(b, f, len(msg))
		})
		b.Run(name+"/raw", func(b *testing.B) {
			benchRead(b, &loopConn{msg: msg}, len(msg))
		})
		// For scale: what Raft itself then spends decoding the request.
		b.Run(name+"/raft-decode", func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				var req raft.AppendEntriesRequest
				if err := codec.NewDecoderBytes(msg[1:], &codec.MsgpackHandle{}).Decode(&req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchRead(b *testing.B, r io.Reader, msgLen int) {
	buf := make([]byte, 256<<10)
	b.SetBytes(int64(msgLen))
	b.ReportAllocs()
	for b.Loop() {
		for got := 0; got < msgLen; {
			n, err := r.Read(buf[:min(len(buf), msgLen-got)])
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
}

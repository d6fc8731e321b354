package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
)

// raftFilterConn is an accepted Raft connection that shows Raft an RPC only
// after checking that its header names the authenticated peer: otherwise a
// member could speak as another (a RequestVote "from n1"). It knows
// hashicorp/raft v1.7.3's NetworkTransport wire format: per RPC one type
// byte, then the request encoded by go-msgpack's MsgpackHandle (a struct is
// a map keyed by field name, the embedded RPCHeader's fields inlined, so
// its "ID" sits among the request's keys, sorted after "Entries"), and for
// InstallSnapshot, Size raw bytes of snapshot after the request. Pipelined
// AppendEntries are simply consecutive requests; heartbeats are
// AppendEntries on their own connection. Responses go the other way and are
// not touched.
//
// Each request is read whole into buf and parsed (skipping what isn't
// needed) before a byte of it reaches Raft, so a refused RPC never reaches
// it. The parser accepts only what go-msgpack would decode to the same ID:
// a map at the top, string keys, exactly one "ID" key holding a string or
// bin; anything else closes the connection.
type raftFilterConn struct {
	net.Conn
	peer      string
	onRefusal func(peer, remote, why string)

	p        parser // p.buf holds the request being checked and bytes read ahead
	out      int    // p.buf[out:ready] is approved and not yet read by Raft
	ready    int    // end of the approved bytes
	snapLeft int64  // snapshot bytes still to pass through
	err      error  // sticky: the connection is done
}

// Raft RPC type bytes of hashicorp/raft's NetworkTransport (v1.7.3).
const (
	rpcAppendEntries byte = iota
	rpcRequestVote
	rpcInstallSnapshot
	rpcTimeoutNow
	rpcRequestPreVote
)

const (
	filterInitialBuf = 16 << 10
	filterKeepBuf    = 1 << 20 // a buffer grown past this by a big request is dropped after it
	maxMsgpackDepth  = 32
)

func newRaftFilterConn(c net.Conn, peer string, onRefusal func(peer, remote, why string)) *raftFilterConn {
	return &raftFilterConn{Conn: c, peer: peer, onRefusal: onRefusal, p: parser{buf: make([]byte, 0, filterInitialBuf), r: c}}
}

// errRefusedHeader marks a Raft RPC refused for its header.
var errRefusedHeader = errors.New("raft RPC refused")

func (f *raftFilterConn) Read(p []byte) (int, error) {
	for {
		if f.out < f.ready {
			n := copy(p, f.p.buf[f.out:f.ready])
			f.out += n
			return n, nil
		}
		if f.err != nil {
			return 0, f.err
		}
		if f.snapLeft > 0 {
			if k := min(int64(len(f.p.buf)-f.ready), f.snapLeft); k > 0 {
				f.ready += int(k)
				f.snapLeft -= k
				continue
			}
			n, err := f.Conn.Read(p[:min(int64(len(p)), f.snapLeft)])
			f.snapLeft -= int64(n)
			if err == io.EOF && f.snapLeft > 0 {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		f.compact()
		if err := f.next(); err != nil {
			f.err = err
			if errors.Is(err, errRefusedHeader) {
				f.Conn.Close()
			}
			continue
		}
	}
}

// compact drops what Raft has read, keeping bytes read ahead.
func (f *raftFilterConn) compact() {
	rest := len(f.p.buf) - f.ready
	if cap(f.p.buf) > filterKeepBuf && rest <= filterInitialBuf {
		nb := make([]byte, rest, filterInitialBuf)
		copy(nb, f.p.buf[f.ready:])
		f.p.buf = nb
	} else {
		f.p.buf = f.p.buf[:copy(f.p.buf, f.p.buf[f.ready:])]
	}
	f.out, f.ready, f.p.pos = 0, 0, 0
}

// next reads and checks one request, then marks it ready.
func (f *raftFilterConn) next() error {
	if err := f.p.fill(1); err != nil {
		return err // io.EOF between RPCs is a normal hang-up
	}
	id, size, err := parseRaftRPC(&f.p)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		var pe *parseError
		if !errors.As(err, &pe) {
			return err
		}
		f.onRefusal(f.peer, f.RemoteAddr().String(), pe.msg)
		return fmt.Errorf("%w: %s", errRefusedHeader, pe.msg)
	}
	if string(id) != f.peer {
		why := fmt.Sprintf("header names server %q, not the authenticated peer", truncate(string(id), 64))
		f.onRefusal(f.peer, f.RemoteAddr().String(), why)
		return fmt.Errorf("%w: %s", errRefusedHeader, why)
	}
	f.ready = f.p.pos
	f.snapLeft = size
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// parseError is a request the filter refuses (as opposed to an I/O error).
type parseError struct{ msg string }

func (e *parseError) Error() string { return e.msg }

func refuse(format string, args ...any) error {
	return &parseError{msg: fmt.Sprintf(format, args...)}
}

// parser decodes just enough msgpack to find the header and skip the rest.
// It reads buf[pos:]; when more is needed it reads from r (nil: the input is
// all in buf). The buffer grows with what actually arrives, never with a
// length a peer claims; bytes read past the current request stay in buf for
// the next one.
type parser struct {
	buf []byte
	pos int
	r   io.Reader
}

// fill makes sure n bytes are buffered past pos.
func (p *parser) fill(n int) error {
	if len(p.buf)-p.pos >= n {
		return nil
	}
	return p.refill(n)
}

func (p *parser) refill(n int) error {
	if p.r == nil {
		return io.ErrUnexpectedEOF
	}
	for len(p.buf)-p.pos < n {
		if len(p.buf) == cap(p.buf) {
			p.buf = slices.Grow(p.buf, max(cap(p.buf), filterInitialBuf))
		}
		k, err := p.r.Read(p.buf[len(p.buf):cap(p.buf)])
		p.buf = p.buf[:len(p.buf)+k]
		if err != nil {
			if len(p.buf)-p.pos >= n {
				return nil // the error comes back on the next read
			}
			return err
		}
	}
	return nil
}

// parseRaftRPC parses one request at the source's cursor and leaves the
// cursor after it. It returns the header's server id and, for
// InstallSnapshot, the size of the snapshot data that follows. id points
// into the parser's buffer (valid until the next compaction).
func parseRaftRPC(p *parser) (id []byte, snapSize int64, err error) {
	t, err := p.byte()
	if err != nil {
		return nil, 0, err
	}
	if t > rpcRequestPreVote {
		return nil, 0, refuse("unknown Raft RPC type %d", t)
	}
	n, err := p.mapLen()
	if err != nil {
		return nil, 0, err
	}
	haveID, haveSize := false, false
	for i := 0; i < n; i++ {
		key, err := p.str()
		if err != nil {
			return nil, 0, err
		}
		switch {
		case string(key) == "ID":
			if haveID {
				return nil, 0, refuse("duplicate ID in Raft RPC header")
			}
			v, err := p.str()
			if err != nil {
				return nil, 0, err
			}
			id, haveID = v, true
		case string(key) == "Size" && t == rpcInstallSnapshot:
			if haveSize {
				return nil, 0, refuse("duplicate Size in InstallSnapshot")
			}
			haveSize = true
			if snapSize, err = p.int(); err != nil {
				return nil, 0, err
			}
		case string(key) == "RPCHeader":
			return nil, 0, refuse("nested RPCHeader in Raft RPC")
		default:
			if err := p.skip(0); err != nil {
				return nil, 0, err
			}
		}
	}
	if len(id) == 0 {
		return nil, 0, refuse("Raft RPC without a server ID")
	}
	return id, snapSize, nil
}

func (p *parser) byte() (byte, error) {
	if p.pos >= len(p.buf) {
		if err := p.refill(1); err != nil {
			return 0, err
		}
	}
	b := p.buf[p.pos]
	p.pos++
	return b, nil
}

// take returns the next n bytes; the slice is valid until the next fill.
func (p *parser) take(n int) ([]byte, error) {
	if n < 0 {
		return nil, refuse("negative length")
	}
	if err := p.fill(n); err != nil {
		return nil, err
	}
	b := p.buf[p.pos : p.pos+n]
	p.pos += n
	return b, nil
}

func (p *parser) uint(n int) (uint64, error) {
	b, err := p.take(n)
	if err != nil {
		return 0, err
	}
	switch n {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), nil
	}
	return binary.BigEndian.Uint64(b), nil
}

func (p *parser) mapLen() (int, error) {
	b, err := p.byte()
	if err != nil {
		return 0, err
	}
	switch {
	case b >= 0x80 && b <= 0x8f:
		return int(b & 0x0f), nil
	case b == 0xde:
		n, err := p.uint(2)
		return int(n), err
	case b == 0xdf:
		n, err := p.uint(4)
		return int(n), err
	}
	return 0, refuse("Raft RPC is not a msgpack map (0x%02x)", b)
}

// str reads a str or bin (what go-msgpack decodes into a string or []byte
// key or field).
func (p *parser) str() ([]byte, error) {
	b, err := p.byte()
	if err != nil {
		return nil, err
	}
	var n uint64
	switch {
	case b >= 0xa0 && b <= 0xbf:
		n = uint64(b & 0x1f)
	case b == 0xd9 || b == 0xc4:
		n, err = p.uint(1)
	case b == 0xda || b == 0xc5:
		n, err = p.uint(2)
	case b == 0xdb || b == 0xc6:
		n, err = p.uint(4)
	default:
		return nil, refuse("expected a msgpack string, got 0x%02x", b)
	}
	if err != nil {
		return nil, err
	}
	return p.take(int(n))
}

// int reads a non-negative integer that fits an int64.
func (p *parser) int() (int64, error) {
	b, err := p.byte()
	if err != nil {
		return 0, err
	}
	var v uint64
	switch {
	case b <= 0x7f:
		return int64(b), nil
	case b >= 0xcc && b <= 0xcf:
		v, err = p.uint(1 << (b - 0xcc))
	case b >= 0xd0 && b <= 0xd3:
		v, err = p.uint(1 << (b - 0xd0))
		if err == nil {
			w := 8 << (b - 0xd0)
			if w < 64 && v>>(w-1) != 0 || w == 64 && v>>63 != 0 {
				return 0, refuse("negative Size")
			}
		}
	default:
		return 0, refuse("expected a msgpack integer, got 0x%02x", b)
	}
	if err != nil {
		return 0, err
	}
	if v > math.MaxInt64 {
		return 0, refuse("Size out of range")
	}
	return int64(v), nil
}

// skip passes over one value of any type.
func (p *parser) skip(depth int) error {
	if depth > maxMsgpackDepth {
		return refuse("msgpack nested deeper than %d", maxMsgpackDepth)
	}
	b, err := p.byte()
	if err != nil {
		return err
	}
	switch {
	case b <= 0x7f || b >= 0xe0: // fixint
		return nil
	case b <= 0x8f:
		return p.skipN(2*int(b&0x0f), depth)
	case b <= 0x9f:
		return p.skipN(int(b&0x0f), depth)
	case b <= 0xbf:
		_, err := p.take(int(b & 0x1f))
		return err
	}
	var n uint64
	switch b {
	case 0xc0, 0xc2, 0xc3:
		return nil
	case 0xc4, 0xd9: // bin8, str8
		n, err = p.uint(1)
	case 0xc5, 0xda:
		n, err = p.uint(2)
	case 0xc6, 0xdb:
		n, err = p.uint(4)
	case 0xc7, 0xc8, 0xc9: // ext8/16/32: length, type, data
		n, err = p.uint(1 << (b - 0xc7))
		n++
	case 0xca, 0xce, 0xd2: // float32, uint32, int32
		n = 4
	case 0xcb, 0xcf, 0xd3:
		n = 8
	case 0xcc, 0xd0:
		n = 1
	case 0xcd, 0xd1:
		n = 2
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1/2/4/8/16 plus the type byte
		n = 1 + 1<<(b-0xd4)
	case 0xdc, 0xde:
		k, err := p.uint(2)
		if err != nil {
			return err
		}
		if b == 0xde {
			k *= 2
		}
		return p.skipN(int(k), depth)
	case 0xdd, 0xdf:
		k, err := p.uint(4)
		if err != nil {
			return err
		}
		if b == 0xdf {
			k *= 2
		}
		return p.skipN(int(k), depth)
	default: // 0xc1 is never used
		return refuse("invalid msgpack byte 0x%02x", b)
	}
	if err != nil {
		return err
	}
	_, err = p.take(int(n))
	return err
}

func (p *parser) skipN(n, depth int) error {
	for i := 0; i < n; i++ {
		if err := p.skip(depth + 1); err != nil {
			return err
		}
	}
	return nil
}

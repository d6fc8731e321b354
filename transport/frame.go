package transport

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/cofferhq/coffer/errs"
)

// First bytes written by a dialer right after the (optional) TLS handshake;
// they select the protocol for the rest of the connection.
const (
	ByteRaft byte = 1
	ByteRPC  byte = 2
)

// MaxFrameSize is the largest RPC frame payload accepted in either direction.
// It bounds the memory a peer can make us allocate with one length prefix.
const MaxFrameSize = 64 << 20

const (
	frameHeaderLen = 4
	// Request payload: method (1) + timeout in milliseconds (4) + body.
	reqHeaderLen = 5
	// Response payload: status (1) + body, or status + code length (1) +
	// code + message for errors.
	statusOK    byte = 0
	statusError byte = 1
)

// maxRequestBody is the largest body Call can send in one frame.
const maxRequestBody = MaxFrameSize - reqHeaderLen

// readFrame reads one length-prefixed frame. n reports how many bytes were
// consumed, so callers can tell "nothing arrived" from "cut mid-frame".
func readFrame(r io.Reader) (payload []byte, n int, err error) {
	var hdr [frameHeaderLen]byte
	n, err = io.ReadFull(r, hdr[:])
	if err != nil {
		return nil, n, err
	}
	size := binary.BigEndian.Uint32(hdr[:])
	if size > MaxFrameSize {
		return nil, n, fmt.Errorf("frame of %d bytes exceeds limit of %d", size, MaxFrameSize)
	}
	if size <= eagerAllocLimit {
		payload = make([]byte, size)
		m, err := io.ReadFull(r, payload)
		n += m
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return payload, n, err
	}
	// Grow with the bytes that actually arrive: a bare length prefix must
	// not buy 64 MiB of memory per connection.
	var buf bytes.Buffer
	buf.Grow(eagerAllocLimit)
	m, err := buf.ReadFrom(io.LimitReader(r, int64(size)))
	n += int(m)
	if err == nil && m < int64(size) {
		err = io.ErrUnexpectedEOF
	}
	return buf.Bytes(), n, err
}

// eagerAllocLimit is the largest frame whose buffer is allocated up front.
const eagerAllocLimit = 1 << 20

func putFrameHeader(dst []byte, payloadLen int) {
	binary.BigEndian.PutUint32(dst, uint32(payloadLen))
}

// encodeRequestHeader returns the frame header and request header for a body;
// the body itself is written separately to avoid copying large payloads.
// prefix, when non-zero, is the protocol byte of a fresh connection, sent in
// the same write as the first request to save a packet.
func encodeRequestHeader(prefix byte, method uint8, timeout time.Duration, bodyLen int) []byte {
	buf := make([]byte, 0, 1+frameHeaderLen+reqHeaderLen)
	if prefix != 0 {
		buf = append(buf, prefix)
	}
	var tmp [frameHeaderLen]byte
	putFrameHeader(tmp[:], reqHeaderLen+bodyLen)
	buf = append(buf, tmp[:]...)
	buf = append(buf, method)
	return binary.BigEndian.AppendUint32(buf, timeoutMillis(timeout))
}

// timeoutMillis encodes the caller's remaining time; 0 means "no deadline".
// A relative duration rather than a timestamp keeps clock skew between nodes
// out of the picture.
func timeoutMillis(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	ms := d.Milliseconds()
	switch {
	case ms < 1:
		return 1
	case ms > int64(^uint32(0)):
		return ^uint32(0)
	}
	return uint32(ms)
}

func decodeRequest(p []byte) (method uint8, timeout time.Duration, body []byte, err error) {
	if len(p) < reqHeaderLen {
		return 0, 0, nil, fmt.Errorf("request frame of %d bytes is too short", len(p))
	}
	ms := binary.BigEndian.Uint32(p[1:reqHeaderLen])
	return p[0], time.Duration(ms) * time.Millisecond, p[reqHeaderLen:], nil
}

// encodeResponse builds a whole response frame (header included).
func encodeResponse(body []byte, herr *errs.Error) []byte {
	if herr == nil {
		buf := make([]byte, frameHeaderLen+1+len(body))
		putFrameHeader(buf, 1+len(body))
		buf[frameHeaderLen] = statusOK
		copy(buf[frameHeaderLen+1:], body)
		return buf
	}
	code := string(herr.Code)
	if len(code) > 255 {
		code = code[:255]
	}
	msg := herr.Message
	if limit := MaxFrameSize - 2 - len(code); len(msg) > limit {
		msg = msg[:limit]
	}
	n := 2 + len(code) + len(msg)
	buf := make([]byte, frameHeaderLen, frameHeaderLen+n)
	putFrameHeader(buf, n)
	buf = append(buf, statusError, byte(len(code)))
	buf = append(buf, code...)
	return append(buf, msg...)
}

// decodeResponse returns the body, or the remote error, or a protocol error
// (perr) when the frame is malformed.
func decodeResponse(p []byte) (body []byte, remote *errs.Error, perr error) {
	if len(p) < 1 {
		return nil, nil, fmt.Errorf("empty response frame")
	}
	switch p[0] {
	case statusOK:
		return p[1:], nil, nil
	case statusError:
		if len(p) < 2 || len(p) < 2+int(p[1]) {
			return nil, nil, fmt.Errorf("truncated error frame")
		}
		cl := int(p[1])
		return nil, &errs.Error{Code: errs.Code(p[2 : 2+cl]), Message: string(p[2+cl:])}, nil
	default:
		return nil, nil, fmt.Errorf("unknown response status %d", p[0])
	}
}

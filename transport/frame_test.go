package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/cofferhq/coffer/errs"
)

func frame(payloadLen int, payload []byte) []byte {
	hdr := make([]byte, frameHeaderLen)
	putFrameHeader(hdr, payloadLen)
	return append(hdr, payload...)
}

func TestReadFrame(t *testing.T) {
	big := bytes.Repeat([]byte{7}, 3<<20) // past the eager allocation limit
	for _, tc := range []struct {
		name    string
		in      []byte
		want    []byte
		wantErr error
		wantN   int
	}{
		{"empty payload", frame(0, nil), []byte{}, nil, 4},
		{"small", frame(3, []byte("abc")), []byte("abc"), nil, 7},
		{"large", frame(len(big), big), big, nil, 4 + len(big)},
		{"nothing", nil, nil, io.EOF, 0},
		{"cut header", []byte{0, 0}, nil, io.ErrUnexpectedEOF, 2},
		{"cut small payload", frame(10, []byte("abc")), nil, io.ErrUnexpectedEOF, 7},
		{"cut large payload", frame(2<<20, []byte("abc")), nil, io.ErrUnexpectedEOF, 7},
		{"too large", frame(MaxFrameSize+1, nil), nil, errors.New("any"), 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, n, err := readFrame(bytes.NewReader(tc.in))
			if n != tc.wantN {
				t.Errorf("n = %d, want %d", n, tc.wantN)
			}
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("err = %v", err)
			case tc.wantErr != nil && err == nil:
				t.Fatalf("err = nil, want %v", tc.wantErr)
			case tc.wantErr == io.EOF || tc.wantErr == io.ErrUnexpectedEOF:
				if err != tc.wantErr {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			}
			if tc.wantErr == nil && !bytes.Equal(got, tc.want) {
				t.Fatalf("payload of %d bytes differs", len(got))
			}
		})
	}
}

func TestResponseEncoding(t *testing.T) {
	p, _, err := readFrame(bytes.NewReader(encodeResponse([]byte("body"), nil)))
	if err != nil {
		t.Fatal(err)
	}
	if body, remote, perr := decodeResponse(p); perr != nil || remote != nil || string(body) != "body" {
		t.Fatalf("ok response decoded to %q, %v, %v", body, remote, perr)
	}
	p, _, err = readFrame(bytes.NewReader(encodeResponse(nil, errs.New(errs.NotFound, "no such thing"))))
	if err != nil {
		t.Fatal(err)
	}
	if _, remote, perr := decodeResponse(p); perr != nil || remote == nil || *remote != (errs.Error{Code: errs.NotFound, Message: "no such thing"}) {
		t.Fatalf("error response decoded to %v, %v", remote, perr)
	}
	for _, bad := range [][]byte{{}, {statusError}, {statusError, 9, 'x'}, {42}} {
		if _, _, perr := decodeResponse(bad); perr == nil {
			t.Errorf("decodeResponse(%v) accepted a malformed frame", bad)
		}
	}
}

func TestRequestEncoding(t *testing.T) {
	hdr := encodeRequestHeader(ByteRPC, 200, 1500*time.Millisecond, 3)
	if hdr[0] != ByteRPC {
		t.Fatalf("prefix = %d", hdr[0])
	}
	p, _, err := readFrame(bytes.NewReader(append(hdr[1:], "abc"...)))
	if err != nil {
		t.Fatal(err)
	}
	method, timeout, body, err := decodeRequest(p)
	if err != nil || method != 200 || timeout != 1500*time.Millisecond || string(body) != "abc" {
		t.Fatalf("decoded %d %v %q %v", method, timeout, body, err)
	}
	if _, _, _, err := decodeRequest([]byte{1, 2}); err == nil {
		t.Fatal("short request accepted")
	}
	for d, want := range map[time.Duration]uint32{0: 0, -time.Second: 0, time.Microsecond: 1, 60 * 24 * time.Hour: ^uint32(0)} {
		if got := timeoutMillis(d); got != want {
			t.Errorf("timeoutMillis(%v) = %d, want %d", d, got, want)
		}
	}
}

func TestConnAlive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if !connAlive(client) {
		t.Fatal("idle open conn reported dead")
	}
	server.Close()
	waitFor(t, "peer close to be seen", func() bool { return !connAlive(client) })
}

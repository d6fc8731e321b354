package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/hashicorp/raft"
)

// RaftLayer returns the raft.StreamLayer of the cluster port: Accept yields
// connections whose first byte was ByteRaft, Dial connects (over TLS when the
// mux has a client config) and writes ByteRaft. Addr returns advertise when
// it is non-nil, else the bound address. Closing the layer stops only Raft's
// side of the port; Mux.Close stops everything.
func (m *Mux) RaftLayer(advertise net.Addr) raft.StreamLayer {
	if advertise == nil {
		advertise = m.ln.Addr()
	}
	return &raftLayer{virtualListener: m.raftLn, m: m, advertise: advertise}
}

type raftLayer struct {
	*virtualListener
	m         *Mux
	advertise net.Addr
}

func (l *raftLayer) Addr() net.Addr { return l.advertise }

func (l *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	// The protocol byte goes with the handshake: raft may only read on this
	// connection (e.g. InstallSnapshot waits), and the server routes nothing
	// until it arrives.
	c, err := dial(ctx, string(address), &l.m.auth, ByteRaft)
	if err != nil {
		return nil, fmt.Errorf("dial raft %s: %w", address, err)
	}
	return c, nil
}

// maxDialTime bounds the TCP connect of a dial.
const maxDialTime = 2 * time.Second

// dial opens a TCP connection to addr, proves this node's membership,
// checks the server's, and selects proto, all bounded by ctx (or the
// handshake timeout if ctx has no deadline, so a black-holed peer cannot
// hang a dial forever).
func dial(ctx context.Context, addr string, cfg *Config, proto byte) (net.Conn, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultHandshakeTimeout)
		defer cancel()
	}
	// A dead peer whose address no longer answers (a killed container)
	// drops SYNs instead of refusing: don't let one dial eat the caller's
	// whole deadline.
	d := net.Dialer{Timeout: maxDialTime}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c, err := authenticateServer(ctx, raw, addr, cfg, proto)
	if err != nil {
		raw.Close()
		var he *handshakeError
		if errors.As(err, &he) && !he.quiet && he.reason != RefusedHandshake {
			cfg.logger().Named("transport").Warn("cluster port: peer did not prove membership", "remote", addr, "reason", he.reason, "error", err)
			cfg.refused(he.reason)
		}
		return nil, err
	}
	return c, nil
}

func authenticateServer(ctx context.Context, raw net.Conn, addr string, cfg *Config, proto byte) (net.Conn, error) {
	dl, _ := ctx.Deadline()
	raw.SetDeadline(dl)
	// A cancelled ctx must interrupt a handshake blocked on a silent server.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c, err := handshakeWith(ctx, raw, addr, cfg, proto)
	if err != nil {
		return nil, err
	}
	if !stop() {
		return nil, ctx.Err() // the deadline was (being) cut short
	}
	raw.SetDeadline(time.Time{})
	return c, nil
}

func handshakeWith(ctx context.Context, raw net.Conn, addr string, cfg *Config, proto byte) (net.Conn, error) {
	if cfg.ClientTLS == nil {
		if _, err := clientHandshake(raw, cfg, proto); err != nil {
			return nil, fmt.Errorf("cluster handshake with %s: %w", addr, err)
		}
		return raw, nil
	}
	tcfg := cfg.ClientTLS
	if tcfg.ServerName == "" && !tcfg.InsecureSkipVerify {
		// Same default as tls.Dial: verify the peer against the host we
		// dialled (an IP SAN for typical cluster certificates).
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		tcfg = tcfg.Clone()
		tcfg.ServerName = host
	}
	tc := tls.Client(raw, tcfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		quiet := errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil
		return nil, &handshakeError{reason: RefusedTLS, quiet: quiet, err: fmt.Errorf("TLS handshake with %s: %w", addr, err)}
	}
	if _, err := peerNodeID(tc); err != nil {
		return nil, &handshakeError{reason: RefusedCertificate, err: fmt.Errorf("%s presented a certificate that is not a node certificate: %w", addr, err)}
	}
	if _, err := tc.Write([]byte{proto}); err != nil {
		return nil, fmt.Errorf("cluster port %s: %w", addr, err)
	}
	return tc, nil
}

package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
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
	c, err := dial(ctx, string(address), l.m.clientTLS)
	if err != nil {
		return nil, err
	}
	// Raft's first write usually follows at once, but the byte must be sent
	// now: raft may only read on this connection (e.g. InstallSnapshot
	// waits), and the server routes nothing until it arrives.
	if dl, ok := ctx.Deadline(); ok {
		c.SetWriteDeadline(dl)
	}
	if _, err := c.Write([]byte{ByteRaft}); err != nil {
		c.Close()
		return nil, fmt.Errorf("dial raft %s: %w", address, err)
	}
	c.SetWriteDeadline(time.Time{})
	return c, nil
}

// dial opens a TCP connection to addr and, with a TLS config, completes the
// handshake, all bounded by ctx (or the handshake timeout if ctx has no
// deadline, so a black-holed peer cannot hang a dial forever).
// maxDialTime bounds the TCP connect of a dial.
const maxDialTime = 2 * time.Second

func dial(ctx context.Context, addr string, clientTLS *tls.Config) (net.Conn, error) {
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
	if clientTLS == nil {
		return raw, nil
	}
	cfg := clientTLS
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		// Same default as tls.Dial: verify the peer against the host we
		// dialled (an IP SAN for typical cluster certificates).
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			raw.Close()
			return nil, err
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	return tc, nil
}

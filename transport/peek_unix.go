//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package transport

import (
	"crypto/tls"
	"net"
	"syscall"
)

// connAlive reports whether an idle connection is still usable, without
// blocking: a non-blocking MSG_PEEK on the socket sees a peer's FIN (read of
// 0), a reset (error) or unsolicited bytes (e.g. a TLS close_notify), all of
// which mean the peer is gone. Only EAGAIN ("nothing to read") means alive.
// A read with an expired deadline cannot do this: Go fails it before
// touching the socket.
func connAlive(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true // cannot tell; the retry-once path covers it
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true // never wait for readability
	})
	return err == nil && alive
}

// Package sockq tells how much a peer has sent on a connection that the
// process has not read yet: the socket's receive queue. For a media
// server's event connection that is the backlog of events waiting for
// callctl.
package sockq

import (
	"net"
	"syscall"
)

// Unread returns the bytes waiting in c's receive queue; ok is false when
// the system or the connection cannot say (not a socket, closed, or a
// system without the query).
func Unread(c net.Conn) (n int, ok bool) {
	sc, isSys := c.(syscall.Conn)
	if !isSys {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var qerr error
	if err := rc.Control(func(fd uintptr) { n, qerr = unread(fd) }); err != nil || qerr != nil {
		return 0, false
	}
	return n, true
}

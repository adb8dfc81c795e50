package sockq

import (
	"syscall"
	"unsafe"
)

// unread asks the kernel for the bytes queued on the socket (SIOCINQ, the
// same request number as TIOCINQ).
func unread(fd uintptr) (int, error) {
	var n int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, uintptr(syscall.TIOCINQ), uintptr(unsafe.Pointer(&n))); errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

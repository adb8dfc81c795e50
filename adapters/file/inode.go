package file

import (
	"os"
	"syscall"
)

// inode tells a file from the one that replaced it at the same path.
func inode(st os.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Ino
	}
	return 0
}

//go:build linux && (amd64 || arm64)

package cgroupfs

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// fstatat is fstatat(2) without following symlinks, with a NUL-terminated
// name: unix.Fstatat copies the name to the heap, once per cgroup directory
// on every scrape.
func (raw fileSys) fstatat(dirfd int, name []byte, st *unix.Stat_t) error {
	for {
		var e unix.Errno
		if raw {
			_, _, e = unix.RawSyscall6(unix.SYS_NEWFSTATAT, uintptr(dirfd), uintptr(unsafe.Pointer(&name[0])),
				uintptr(unsafe.Pointer(st)), unix.AT_SYMLINK_NOFOLLOW, 0, 0)
		} else {
			_, _, e = unix.Syscall6(unix.SYS_NEWFSTATAT, uintptr(dirfd), uintptr(unsafe.Pointer(&name[0])),
				uintptr(unsafe.Pointer(st)), unix.AT_SYMLINK_NOFOLLOW, 0, 0)
		}
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		default:
			return e
		}
	}
}

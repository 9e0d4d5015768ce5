//go:build linux && !(amd64 || arm64)

package cgroupfs

import "golang.org/x/sys/unix"

// fstatat is fstatat(2) without following symlinks; on these architectures
// always through unix.Fstatat (stat64 layouts differ).
func (fileSys) fstatat(dirfd int, name []byte, st *unix.Stat_t) error {
	_, err := retryEINTR(func() (int, error) {
		return 0, unix.Fstatat(dirfd, string(trimNUL(name)), st, unix.AT_SYMLINK_NOFOLLOW)
	})
	return err
}

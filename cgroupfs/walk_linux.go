package cgroupfs

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Directory walks use getdents(2) directly: os.File.ReadDir builds a
// DirEntry per entry (a v1 cgroup directory holds ~30 files for every
// subdirectory) and cost ~29 us per cgroup directory against ~12 us here.

// dirBufSize holds a v1 cgroup directory's entries in one getdents call.
const dirBufSize = 8 << 10

// forEachDirent calls fn with the name (NUL-terminated, aliasing buf) of
// every subdirectory entry of the open directory fd, "." and ".." excluded.
func forEachDirent(fd int, path string, buf []byte, fn func(name []byte)) error {
	for {
		n, err := retryEINTR(func() (int, error) { return unix.Getdents(fd, buf) })
		if err != nil {
			return fmt.Errorf("%w: getdents %s: %w", ErrFileRead, path, err)
		}
		if n == 0 {
			return nil
		}
		for off := 0; off < n; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
			if off+19 > n {
				return fmt.Errorf("%w: getdents %s: short record", ErrFileRead, path)
			}
			reclen := int(*(*uint16)(unsafe.Pointer(&buf[off+16])))
			if reclen < 20 || off+reclen > n {
				return fmt.Errorf("%w: getdents %s: bad record length %d", ErrFileRead, path, reclen)
			}
			typ := buf[off+18]
			name := buf[off+19 : off+reclen]
			if i := indexNUL(name); i >= 0 {
				name = name[:i+1]
			}
			off += reclen
			if typ != unix.DT_DIR || isDots(name) {
				continue
			}
			fn(name)
		}
	}
}

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// isDots reports "." and ".." (with their NUL).
func isDots(z []byte) bool {
	return len(z) >= 2 && z[0] == '.' && (z[1] == 0 || len(z) >= 3 && z[1] == '.' && z[2] == 0)
}

func trimNUL(z []byte) []byte {
	if n := len(z); n > 0 && z[n-1] == 0 {
		return z[:n-1]
	}
	return z
}

// listDirs returns the names of the subdirectories of dir, never following
// symlinks (the entry type comes from getdents, not stat).
func listDirs(dir string) ([]string, error) {
	fd, err := retryEINTR(func() (int, error) {
		return unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	})
	if err != nil {
		return nil, &iofs.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	buf := getBuf()
	defer putBuf(buf)
	var out []string
	err = forEachDirent(fd, dir, (*buf)[:cap(*buf)], func(name []byte) {
		out = append(out, string(trimNUL(name)))
	})
	if err != nil {
		return nil, err
	}
	sortStrings(out) // stable output; getdents order is arbitrary
	return out, nil
}

// isCgroupFS reports whether dir is on a cgroup file system (v1 or v2),
// whose directories have st_nlink = 2 + number of subdirectories (kernfs
// sets it from its own count; the pre-kernfs 3.10 cgroupfs kept it the
// Unix way too).
func isCgroupFS(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Type == unix.CGROUP_SUPER_MAGIC || st.Type == unix.CGROUP2_SUPER_MAGIC
}

// countDirsNlink counts the directories below root (root excluded) using
// st_nlink: a directory with nlink 2 has no subdirectory, so it is never
// opened or listed. A v1 node's ~4000 cgroups are mostly leaves (container
// cgroups): they cost one fstatat (~1 us) each instead of open + getdents +
// close (~12 us; ~29 us with os.ReadDir). Only valid where isCgroupFS.
// Directories that vanish meanwhile are not counted; other errors are
// appended to errs (the count is then too small). rec, if not nil, keeps
// the listings of the directories it wants (the pod tree).
func countDirsNlink(root string, errs *[]error, rec *listings) (uint64, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, &iofs.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, &iofs.PathError{Op: "fstat", Path: root, Err: err}
	}
	w := nlinkWalk{errs: errs, rec: rec}
	w.visit(fd, root, uint64(st.Nlink))
	return w.count, nil
}

type nlinkWalk struct {
	count uint64
	errs  *[]error
	rec   *listings
	depth int
	bufs  [][]byte // one getdents buffer per depth, reused
}

func (w *nlinkWalk) visit(fd int, path string, nlink uint64) {
	if nlink == 2 {
		return
	}
	if w.depth == len(w.bufs) {
		w.bufs = append(w.bufs, make([]byte, dirBufSize))
	}
	buf := w.bufs[w.depth]
	w.depth++
	defer func() { w.depth-- }()
	keep := w.rec.wants(path)
	var names []string
	err := forEachDirent(fd, path, buf, func(z []byte) {
		if keep {
			names = append(names, string(trimNUL(z)))
		}
		var st unix.Stat_t
		if err := fstatatZ(fd, z, &st); err != nil {
			if !errors.Is(err, unix.ENOENT) {
				*w.errs = append(*w.errs, &iofs.PathError{Op: "fstatat", Path: path + "/" + string(trimNUL(z)), Err: err})
			}
			return
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return
		}
		w.count++
		if st.Nlink == 2 {
			return
		}
		childPath := path + "/" + string(trimNUL(z))
		child, err := openatZ(fd, z, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW)
		if err != nil {
			if !errors.Is(err, unix.ENOENT) {
				err = &iofs.PathError{Op: "open", Path: childPath, Err: err}
				*w.errs = append(*w.errs, err)
				w.rec.fail(childPath, err)
			}
			return
		}
		defer unix.Close(child)
		w.visit(child, childPath, uint64(st.Nlink))
	})
	if err != nil && !errors.Is(err, unix.ENOENT) {
		*w.errs = append(*w.errs, err)
		w.rec.fail(path, err)
		return
	}
	if keep {
		w.rec.keep(path, names)
	}
}

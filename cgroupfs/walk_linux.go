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
//
// known (if not nil) remembers each directory's subdirectories between
// calls, so a directory whose subdirectories did not change is not listed
// again (see dirCache). Directories that vanish meanwhile are not counted;
// other errors are appended to errs (the count is then too small). rec, if
// not nil, keeps the listings of the directories it wants (the pod tree).
func countDirsNlink(root string, errs *[]error, rec *listings, known *dirCache) (uint64, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, &iofs.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, &iofs.PathError{Op: "fstat", Path: root, Err: err}
	}
	known.lock()
	defer known.unlock()
	w := nlinkWalk{errs: errs, rec: rec, known: known}
	w.visit(fd, root, kidOf(&st))
	known.prune()
	return w.count, nil
}

type nlinkWalk struct {
	count   uint64
	errs    *[]error
	rec     *listings
	known   *dirCache
	depth   int
	scratch []walkScratch // one per depth, reused
}

type walkScratch struct {
	buf  []byte // getdents
	kids []kid
}

// kid is what the walk needs of a subdirectory's stat.
type kid struct {
	id    dirID
	nlink uint64
	dir   bool // false: gone, unreadable or no longer a directory
}

func kidOf(st *unix.Stat_t) kid {
	return kid{id: statID(st), nlink: uint64(st.Nlink), dir: st.Mode&unix.S_IFMT == unix.S_IFDIR}
}

func (w *nlinkWalk) visit(fd int, path string, self kid) {
	if self.nlink == 2 {
		return
	}
	if w.depth == len(w.scratch) {
		w.scratch = append(w.scratch, walkScratch{buf: make([]byte, dirBufSize)})
	}
	s := &w.scratch[w.depth]
	w.depth++
	defer func() { w.depth-- }()
	names, ok := w.subdirs(fd, path, self, s)
	if !ok {
		return
	}
	// A deeper visit may grow w.scratch and move it: keep this level's
	// stats by value (their backing array is this level's alone).
	kids := s.kids
	if w.rec.wants(path) {
		w.rec.keep(path, names)
	}
	for i, name := range names {
		k := kids[i]
		if !k.dir {
			continue
		}
		w.count++
		if k.nlink != 2 {
			w.descend(fd, path, name, k)
		}
	}
}

// subdirs returns the sorted names of the subdirectories of fd, with their
// stats in s.kids. It trusts the cached names when nlink still counts that
// many subdirectories and every one of them still exists: then the set is
// exactly those names (one that was replaced would be missing). Anything
// else lists the directory.
func (w *nlinkWalk) subdirs(fd int, path string, self kid, s *walkScratch) ([]string, bool) {
	if names, ok := w.known.get(self.id, self.nlink-2); ok {
		var errs []error
		var all bool
		if s.kids, errs, all = statKids(fd, path, names, s.kids[:0]); all && errs == nil {
			return names, true
		}
	}
	names, err := listNames(fd, path, s.buf)
	if err != nil {
		if !errors.Is(err, unix.ENOENT) {
			*w.errs = append(*w.errs, err)
			w.rec.fail(path, err)
		}
		return nil, false
	}
	var errs []error
	s.kids, errs, _ = statKids(fd, path, names, s.kids[:0])
	*w.errs = append(*w.errs, errs...)
	w.known.put(self.id, names)
	return names, true
}

func (w *nlinkWalk) descend(fd int, path, name string, k kid) {
	childPath := path + "/" + name
	child, err := retryEINTR(func() (int, error) {
		return unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	})
	if err != nil {
		if !errors.Is(err, unix.ENOENT) {
			err = &iofs.PathError{Op: "open", Path: childPath, Err: err}
			*w.errs = append(*w.errs, err)
			w.rec.fail(childPath, err)
		}
		return
	}
	defer unix.Close(child)
	w.visit(child, childPath, k)
}

// listNames lists the subdirectories of fd, sorted.
func listNames(fd int, path string, buf []byte) ([]string, error) {
	var names []string
	err := forEachDirent(fd, path, buf, func(z []byte) {
		names = append(names, string(trimNUL(z)))
	})
	sortStrings(names)
	return names, err
}

// statKids fstatats every name below fd into kids (appended, one per name).
// all is false when any name is gone, unreadable or not a directory; errs
// holds the failures other than gone.
func statKids(fd int, path string, names []string, kids []kid) (_ []kid, errs []error, all bool) {
	all = true
	for _, name := range names {
		var st unix.Stat_t
		_, err := retryEINTR(func() (int, error) { return 0, unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) })
		if err != nil {
			if !errors.Is(err, unix.ENOENT) {
				errs = append(errs, &iofs.PathError{Op: "fstatat", Path: path + "/" + name, Err: err})
			}
			kids, all = append(kids, kid{}), false
			continue
		}
		k := kidOf(&st)
		all = all && k.dir
		kids = append(kids, k)
	}
	return kids, errs, all
}

package cgroupfs

import (
	"fmt"
	"io/fs"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cgDir is one open cgroup directory. Files are opened relative to it
// (openat), which saves the path walk of every file of a deep pod cgroup
// and the *os.File allocation of os.Open.
type cgDir struct {
	fd     int
	parent string // the absolute path is parent, or parent/name: see path
	name   string
	seq    bool // on a cgroup file system: see read
}

// path is the directory's absolute path, for errors. It is built only
// when asked: a scrape reads ~3000 container directories and builds none.
func (d cgDir) path() string {
	if d.name == "" {
		return d.parent
	}
	return d.parent + "/" + d.name
}

func openDir(path string) (cgDir, error) {
	fd, err := retryEINTR(func() (int, error) {
		return unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	})
	if err != nil {
		return cgDir{fd: -1}, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return cgDir{fd: fd, parent: path}, nil
}

// openDirAt opens the cgroup directory name below parent, around the
// scheduler when parent is on a cgroup file system (as read does).
func openDirAt(parent cgDir, name string) (cgDir, error) {
	const flags = unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC | unix.O_NOFOLLOW
	d := cgDir{fd: -1, parent: parent.path(), name: name}
	if len(name) > unix.NAME_MAX || strings.IndexByte(name, 0) >= 0 {
		return d, &fs.PathError{Op: "open", Path: d.path(), Err: unix.EINVAL}
	}
	sys := goSys
	if parent.seq {
		sys = rawSys
	}
	var z [unix.NAME_MAX + 1]byte // the name NUL-terminated on the stack: unix.Openat copies it to the heap
	fd, err := sys.openat(parent.fd, nulTerminated(&z, name), flags)
	if err != nil {
		return d, &fs.PathError{Op: "open", Path: d.path(), Err: err}
	}
	d.fd, d.seq = fd, parent.seq
	return d, nil
}

func (d cgDir) close() {
	if d.fd < 0 {
		return
	}
	if d.seq {
		rawSys.close(d.fd)
		return
	}
	unix.Close(d.fd)
}

// read reads the file name of d into buf. The returned slice aliases *buf.
//
// Every file of a cgroup file system is a seq_file, whose read returns the
// whole content when it fits the buffer, so there a short read is the end:
// one read(2) instead of the usual read-until-0, which costs a second
// syscall per file. A read that fills the buffer, and any file elsewhere
// (test fixtures, FIFOs), is read to EOF.
//
// On a cgroup file system the open, read and close also go around the Go
// scheduler (RawSyscall, see rawSys): the collecting goroutine makes ~36,000
// of them a scrape at 1000 pods, and through syscall.Syscall each one
// entered and left the scheduler's syscall state, and every 10 ms sysmon
// found the goroutine in one, took its P away and went back to polling every
// 20 us (~5 % of a scrape in sysmon's nanosleep). Measured by A/B of two
// servers scraped in turn at 1000 pods: 164.5 -> 158.25 and 168.5 ->
// 162.75 ms a scrape. This is safe only because a cgroup file's show
// function does no I/O and waits on no other process: a slow one (a v1
// memory.stat over many dying memcgs) holds one P and delays a GC pause by
// as long, where a file on a network or FUSE file system could hold them
// forever; d.seq is set only after statfs said cgroup.
func (d cgDir) read(name fileName, buf *[]byte) ([]byte, error) {
	sys := goSys
	if d.seq {
		sys = rawSys
	}
	fd, err := sys.openat(d.fd, name.z, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: d.path() + "/" + name.s, Err: err}
	}
	defer sys.close(fd)
	b := (*buf)[:cap(*buf)]
	n, err := sys.read(fd, b)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w: %w", d.path(), name.s, ErrFileRead, err)
	}
	if n < len(b) && d.seq || n == 0 {
		return b[:n], nil
	}
	*buf = b[:n]
	b, err = readMore(func(p []byte) (int, error) { return sys.read(fd, p) }, buf)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", d.path(), name.s, err)
	}
	return b, nil
}

// fileSys is how the cgroup file reads and the live-memcg walk make their
// system calls: true goes around the scheduler (RawSyscall). Each call converts its pointer in the syscall's
// own argument list, which keeps the memory alive and in place.
type fileSys bool

const (
	goSys  fileSys = false
	rawSys fileSys = true
)

func (raw fileSys) openat(dirfd int, name []byte, flags int) (int, error) {
	for {
		var r uintptr
		var e unix.Errno
		if raw {
			r, _, e = unix.RawSyscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(&name[0])), uintptr(flags), 0, 0, 0)
		} else {
			r, _, e = unix.Syscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(&name[0])), uintptr(flags), 0, 0, 0)
		}
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return -1, e
		}
		return int(r), nil
	}
}

func (raw fileSys) read(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		var r uintptr
		var e unix.Errno
		if raw {
			r, _, e = unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		} else {
			r, _, e = unix.Syscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		}
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(r), nil
	}
}

func (raw fileSys) getdents(fd int, buf []byte) (int, error) {
	if len(buf) == 0 {
		return 0, unix.EINVAL
	}
	for {
		var r uintptr
		var e unix.Errno
		if raw {
			r, _, e = unix.RawSyscall(unix.SYS_GETDENTS64, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		} else {
			r, _, e = unix.Syscall(unix.SYS_GETDENTS64, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		}
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(r), nil
	}
}

func (raw fileSys) close(fd int) {
	if raw {
		unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
		return
	}
	unix.Close(fd)
}

// id is the identity of the cgroup directory (see dirID): it tells a
// cgroup from one created again under the same path. fstat of an O_PATH
// fd costs ~0.3 us.
func (d cgDir) id() (dirID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return dirID{}, &fs.PathError{Op: "fstat", Path: d.path(), Err: err}
	}
	return statID(&st), nil
}

func statID(st *unix.Stat_t) dirID { return dirID{ino: st.Ino, ctime: st.Ctim.Nano()} }

func readPath(path string, buf *[]byte) ([]byte, error) {
	fd, err := retryEINTR(func() (int, error) { return unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0) })
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	b, err := readInto(func(p []byte) (int, error) {
		return retryEINTR(func() (int, error) { return unix.Read(fd, p) })
	}, buf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

func retryEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if err != unix.EINTR {
			if n < 0 {
				n = 0
			}
			return n, err
		}
	}
}

// dirChangeTime is the inode change time of a cgroup directory: set at mkdir
// and on attribute changes, the closest the kernel gives to a creation time.
func dirChangeTime(path string) (time.Time, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return time.Time{}, &fs.PathError{Op: "lstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return time.Time{}, &fs.PathError{Op: "lstat", Path: path, Err: fs.ErrInvalid}
	}
	return time.Unix(st.Ctim.Unix()), nil
}

package cgroupfs

import (
	"fmt"
	"io/fs"
	"time"

	"golang.org/x/sys/unix"
)

// cgDir is one open cgroup directory. Files are opened relative to it
// (openat), which saves the path walk of every file of a deep pod cgroup
// and the *os.File allocation of os.Open.
type cgDir struct {
	fd     int
	parent string // the absolute path is parent, or parent/name: see path
	name   string
}

// path is the directory's absolute path, for errors. It is built only
// when asked, so the happy path builds no strings.
func (d cgDir) path() string {
	if d.name == "" {
		return d.parent
	}
	return d.parent + "/" + d.name
}

const dirFlags = unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC | unix.O_NOFOLLOW

func openDir(path string) (cgDir, error) {
	fd, err := retryEINTR(func() (int, error) { return unix.Open(path, dirFlags, 0) })
	if err != nil {
		return cgDir{fd: -1}, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return cgDir{fd: fd, parent: path}, nil
}

// openDirAt opens the cgroup directory name below parent.
func openDirAt(parent cgDir, name string) (cgDir, error) {
	d := cgDir{fd: -1, parent: parent.path(), name: name}
	fd, err := retryEINTR(func() (int, error) { return unix.Openat(parent.fd, name, dirFlags, 0) })
	if err != nil {
		return d, &fs.PathError{Op: "open", Path: d.path(), Err: err}
	}
	d.fd = fd
	return d, nil
}

func (d cgDir) close() {
	if d.fd >= 0 {
		unix.Close(d.fd)
	}
}

// read reads the file name of d into buf. The returned slice aliases *buf.
//
// seqFile says d is on a cgroup file system, whose files are seq_files: a
// read returns the whole content when it fits the buffer, so a short read
// is the end, and one read(2) does what read-until-0 does in two. A read
// that fills the buffer, and any file elsewhere (test fixtures, FIFOs), is
// read to EOF.
func (d cgDir) read(name string, buf *[]byte, seqFile bool) ([]byte, error) {
	fd, err := retryEINTR(func() (int, error) {
		return unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: d.path() + "/" + name, Err: err}
	}
	defer unix.Close(fd)
	read := func(p []byte) (int, error) { return retryEINTR(func() (int, error) { return unix.Read(fd, p) }) }
	b := (*buf)[:cap(*buf)]
	n, err := read(b)
	if err == nil && (n == 0 || seqFile && n < len(b)) {
		return b[:n], nil
	}
	if err == nil {
		*buf = b[:n]
		b, err = readMore(read, buf)
	}
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", d.path(), name, err)
	}
	return b, nil
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

//go:build !linux

package cgroupfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// cgDir is one cgroup directory; off Linux files are opened by path.
type cgDir struct {
	fd     int
	parent string
	name   string
}

func (d cgDir) path() string {
	if d.name == "" {
		return d.parent
	}
	return d.parent + "/" + d.name
}

func openDir(path string) (cgDir, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return cgDir{fd: -1}, err
	}
	if !st.IsDir() {
		return cgDir{fd: -1}, &fs.PathError{Op: "open", Path: path, Err: fs.ErrInvalid}
	}
	return cgDir{fd: -1, parent: path}, nil
}

// openDirAt opens the cgroup directory name below parent by its path.
func openDirAt(parent cgDir, name string) (cgDir, error) {
	return openDir(parent.path() + "/" + name)
}

func (d cgDir) close() {}

func (d cgDir) read(name string, buf *[]byte, _ bool) ([]byte, error) {
	return readPath(filepath.Join(d.path(), name), buf)
}

// ino is unsupported off Linux, so nothing is cached there.
func (d cgDir) id() (dirID, error) { return dirID{}, errors.ErrUnsupported }

func readPath(path string, buf *[]byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readInto(func(p []byte) (int, error) {
		n, err := f.Read(p)
		if n == 0 && err != nil && err.Error() == "EOF" {
			return 0, nil
		}
		return n, err
	}, buf)
}

// dirChangeTime is the directory's modification time off Linux.
func dirChangeTime(path string) (time.Time, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return time.Time{}, err
	}
	if !st.IsDir() {
		return time.Time{}, &fs.PathError{Op: "lstat", Path: path, Err: fs.ErrInvalid}
	}
	return st.ModTime(), nil
}

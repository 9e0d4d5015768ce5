package cgroupfs

import (
	"fmt"
	"sync"
)

// maxFileSize caps every pseudo-file read: /proc and cgroup files report sizes
// of 0 or 4096, so the read itself is bounded instead of trusting Stat.
const maxFileSize = 1 << 20

// bufPool holds read buffers so the hot path (Memory for thousands of
// cgroups) does not allocate one per file.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) <= maxFileSize+1 {
		*b = (*b)[:0]
		bufPool.Put(b)
	}
}

// readInto reads r to EOF into (*buf)[:0], growing it up to maxFileSize. A
// longer file is an ErrFileRead, not a silent truncation.
// The caller adds the path to the error, so the happy path builds no strings.
func readInto(read func([]byte) (int, error), buf *[]byte) ([]byte, error) {
	*buf = (*buf)[:0]
	return readMore(read, buf)
}

// readMore is readInto keeping the len(*buf) bytes already read.
func readMore(read func([]byte) (int, error), buf *[]byte) ([]byte, error) {
	b := *buf
	for {
		if len(b) == cap(b) {
			if cap(b) > maxFileSize {
				*buf = b
				return nil, fmt.Errorf("%w: larger than %d bytes", ErrFileRead, maxFileSize)
			}
			nb := make([]byte, len(b), min(2*cap(b)+512, maxFileSize+1))
			copy(nb, b)
			b = nb
		}
		n, err := read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			*buf = b
			return nil, fmt.Errorf("%w: %w", ErrFileRead, err)
		}
		if n == 0 {
			*buf = b
			return b, nil
		}
	}
}

// ReadFile reads one pseudo-file with one bounded read (1 MiB cap). Errors
// wrap ErrFileRead or the fs error (fs.ErrNotExist, fs.ErrPermission) with the path.
func ReadFile(path string) ([]byte, error) {
	buf := make([]byte, 0, 4096)
	return readPath(path, &buf)
}

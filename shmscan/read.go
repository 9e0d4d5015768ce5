package shmscan

import (
	"fmt"
	"io"
)

// readCap bounds every pseudo-file read: a mount table larger than this is
// not one shmscan can serve within a scrape anyway.
const readCap = 1 << 20

// readAllCapped reads r to EOF, failing with ErrTooBig beyond readCap.
func readAllCapped(r io.Reader, path string) ([]byte, error) {
	return readAllCappedInto(r, path, new([]byte))
}

// readAllCappedInto is readAllCapped into *buf, which it may grow (and
// keeps grown); the result aliases *buf.
func readAllCappedInto(r io.Reader, path string, buf *[]byte) ([]byte, error) {
	b := (*buf)[:0]
	for {
		if len(b) > readCap {
			return nil, fmt.Errorf("read %s: %w (%d bytes)", path, ErrTooBig, readCap)
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // grow
			*buf = b
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			*buf = b
			return b, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	}
}

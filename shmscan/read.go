package shmscan

import (
	"fmt"
	"io"
)

// readCap bounds every pseudo-file read: a mount table larger than this is
// not one shmscan can serve within a scrape anyway.
const readCap = 1 << 20

func readAllCapped(r io.Reader, path string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, readCap+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > readCap {
		return nil, fmt.Errorf("read %s: %w (%d bytes)", path, ErrTooBig, readCap)
	}
	return data, nil
}

package shmscan

import (
	"fmt"
	"io"
	"os"
)

// readCap bounds every pseudo-file read: a mount table larger than this is
// not one shmscan can serve within a scrape anyway.
const readCap = 1 << 20

// readCapped reads a /proc file in one pass, without Stat (proc files report
// size 0), failing with ErrTooBig beyond readCap.
func readCapped(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	return readAllCapped(f, path)
}

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

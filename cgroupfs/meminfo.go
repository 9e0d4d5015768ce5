package cgroupfs

import (
	"bytes"
	"fmt"
	"strconv"
)

// MemTotal reads MemTotal of <proc>/meminfo in bytes: the node's RAM as
// the kernel counts it (totalram), of which a tmpfs mounted without size=
// gets half.
func (fs *FS) MemTotal() (uint64, error) {
	path := fs.procPath("meminfo")
	data, err := ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	n, err := ParseMemTotal(data)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// ParseMemTotal takes the "MemTotal:  24683748 kB" line of /proc/meminfo.
func ParseMemTotal(data []byte) (uint64, error) {
	for line := range bytes.Lines(data) {
		rest, ok := bytes.CutPrefix(line, []byte("MemTotal:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, parseError("meminfo MemTotal", line)
		}
		kb, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil || kb > (1<<64-1)/1024 {
			return 0, parseError("meminfo MemTotal", line)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("%w: meminfo: no MemTotal line", ErrFileParse)
}

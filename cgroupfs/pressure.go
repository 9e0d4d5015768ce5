package cgroupfs

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
)

// nodePressureFile is the node's memory PSI under the proc root.
const nodePressureFile = "pressure/memory"

// NodePressure reads the node's memory pressure, <proc>/pressure/memory.
// It returns nil and no error when the kernel keeps no PSI: without
// CONFIG_PSI or booted with psi=0 there is no /proc/pressure.
func (fs *FS) NodePressure() (*PSI, error) {
	path := fs.procPath(nodePressureFile)
	data, err := ReadFile(path)
	if err != nil {
		if noPSI(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	p, err := ParsePSI(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &p, nil
}

// noPSI says whether a pressure file's read error means the kernel keeps
// no PSI: the file is missing (6.1 hides the cgroup files when booted with
// psi=0), or it exists and the read fails with EOPNOTSUPP (5.10 keeps the
// cgroup files and refuses to show them).
func noPSI(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.EOPNOTSUPP)
}

package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/shmwatch/shmwatch/cgroupfs"
)

// checkDir says clearly which flag names a path that is not a directory, so
// a wrong --host-root or --cgroup-root stops the command instead of reading
// as a node with no pods.
func checkDir(flag, value, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("--%s=%s: %w", flag, value, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("--%s=%s: %s is not a directory", flag, value, path)
	}
	return nil
}

// checkRoots checks --host-root (with its --procfs) before the hierarchy is
// looked up.
func (f *nodeFlags) checkRoots() error {
	if f.hostRoot != "" {
		if err := checkDir("host-root", f.hostRoot, f.hostRoot); err != nil {
			return err
		}
	}
	return checkDir("procfs", f.procfs, f.path(f.procfs))
}

// checkCgroupRoot checks that --cgroup-root exists in the memory hierarchy.
func (f *nodeFlags) checkCgroupRoot(h cgroupfs.Hierarchy) error {
	return checkDir("cgroup-root", f.cgroupRoot, filepath.Join(h.MemoryRoot, f.cgroupRoot))
}

package cgroupfs

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// DetectHierarchy finds the memory controller from <procRoot>/self/mountinfo:
// a v1 mount whose super options name "memory" is v1 (hybrid when a cgroup2
// mount exists too); otherwise a cgroup2 mount whose cgroup.controllers lists
// memory is v2. Mount points are returned as this process sees them.
func DetectHierarchy(procRoot string) (Hierarchy, error) {
	path := filepath.Join(procRoot, "self", "mountinfo")
	data, err := ReadFile(path)
	if err != nil {
		return Hierarchy{}, err
	}
	mounts, err := parseMountinfo(data)
	if err != nil {
		return Hierarchy{}, fmt.Errorf("%w: %s: %w", ErrFileParse, path, err)
	}
	return hierarchyFromMounts(mounts, func(dir string) ([]byte, error) {
		return ReadFile(filepath.Join(dir, "cgroup.controllers"))
	})
}

// hierarchyFromMounts decides the mode; controllers reads a cgroup2 mount's
// cgroup.controllers (a function so fuzzing and tests need no real mounts).
func hierarchyFromMounts(mounts []*mountinfo.Info, controllers func(dir string) ([]byte, error)) (Hierarchy, error) {
	var v1Memory string
	var v2 []string
	localEvents := map[string]bool{}
	for _, m := range mounts {
		if m.Mountpoint == "" {
			continue // a malformed line: no directory to read the tree from
		}
		switch m.FSType {
		case "cgroup":
			// Only the hierarchy root counts: a bind mount of a sub-cgroup
			// (Root != "/") is not where the memory tree starts.
			if v1Memory == "" && m.Root == "/" && hasOption(m.VFSOptions, "memory") {
				v1Memory = m.Mountpoint
			}
		case "cgroup2":
			if m.Root == "/" {
				v2 = append(v2, m.Mountpoint)
				localEvents[m.Mountpoint] = hasOption(m.VFSOptions, "memory_localevents")
			}
		}
	}
	if v1Memory != "" {
		h := Hierarchy{Mode: ModeV1, MemoryRoot: v1Memory}
		if len(v2) > 0 {
			h.Mode, h.UnifiedRoot = ModeHybrid, v2[0]
		}
		return h, nil
	}
	var errs []error
	for _, dir := range v2 {
		c, err := controllers(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range bytes.Fields(c) {
			if string(f) == "memory" {
				return Hierarchy{Mode: ModeV2, MemoryRoot: dir, LocalEvents: localEvents[dir]}, nil
			}
		}
	}
	if len(errs) > 0 {
		return Hierarchy{}, fmt.Errorf("%w: %w", ErrNoMemory, errs[0])
	}
	return Hierarchy{}, ErrNoMemory
}

func hasOption(opts, want string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

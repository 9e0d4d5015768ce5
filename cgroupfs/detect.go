package cgroupfs

import (
	"bytes"
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
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
//
// Only a hierarchy's root counts: a bind mount of a sub-cgroup is not where
// the tree starts. Inside a cgroup namespace (a container's on cgroup v2,
// by containerd's default) mountinfo shows roots relative to the
// namespace: its own cgroup is "/" and the hierarchy's root "/..", "/../..".
// So a root that only climbs is the real one and wins over "/": the
// DaemonSet's host mount over the container's own /sys/fs/cgroup.
func hierarchyFromMounts(mounts []*mountinfo.Info, controllers func(dir string) ([]byte, error)) (Hierarchy, error) {
	var v1Memory []*mountinfo.Info
	var v2 []*mountinfo.Info
	for _, m := range mounts {
		if m.Mountpoint == "" || (m.Root != "/" && !upOnly(m.Root)) {
			continue // malformed (no directory to read), or a sub-cgroup
		}
		switch {
		case m.FSType == "cgroup" && hasOption(m.VFSOptions, "memory"):
			v1Memory = append(v1Memory, m)
		case m.FSType == "cgroup2":
			v2 = append(v2, m)
		}
	}
	sortRealRootFirst(v1Memory)
	sortRealRootFirst(v2)
	if len(v1Memory) > 0 {
		h := Hierarchy{Mode: ModeV1, MemoryRoot: v1Memory[0].Mountpoint}
		if len(v2) > 0 {
			h.Mode, h.UnifiedRoot = ModeHybrid, v2[0].Mountpoint
		}
		return h, nil
	}
	var errs []error
	for _, m := range v2 {
		dir := m.Mountpoint
		c, err := controllers(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range bytes.Fields(c) {
			if string(f) == "memory" {
				return Hierarchy{Mode: ModeV2, MemoryRoot: dir, LocalEvents: hasOption(m.VFSOptions, "memory_localevents")}, nil
			}
		}
	}
	if len(errs) > 0 {
		return Hierarchy{}, fmt.Errorf("%w: %w", ErrNoMemory, errs[0])
	}
	return Hierarchy{}, ErrNoMemory
}

// sortRealRootFirst puts mounts whose root only climbs ("/..": the
// hierarchy's root seen from a cgroup namespace) before "/" (the
// namespace's own root there), in mount order otherwise.
func sortRealRootFirst(ms []*mountinfo.Info) {
	slices.SortStableFunc(ms, func(a, b *mountinfo.Info) int {
		return cmp.Compare(b2i(a.Root == "/"), b2i(b.Root == "/"))
	})
}

// upOnly says whether a cgroup path only climbs: "/..", "/../..", ...
func upOnly(root string) bool {
	segs := strings.Split(root, "/")
	if len(segs) < 2 || segs[0] != "" {
		return false
	}
	for _, seg := range segs[1:] {
		if seg != ".." {
			return false
		}
	}
	return true
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func hasOption(opts, want string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

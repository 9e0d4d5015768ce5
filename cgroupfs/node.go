package cgroupfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// memcgIDMax is the memcg id space of kernels that do not recycle ids (< 4.7).
const memcgIDMax = 65535

// Node reads the node-wide memcg leak signals and kmem state. Each signal
// that cannot be read is nil with an entry in Errors.
func (fs *FS) Node() Node {
	return fs.node(nil)
}

// node is Node; on v1, rec (if not nil) keeps the walk's pod-tree listings.
func (fs *FS) node(rec *listings) Node {
	n := Node{Mode: fs.Hierarchy.Mode}
	rel, err := fs.readProc("sys/kernel/osrelease")
	if err != nil {
		n.Errors = append(n.Errors, FieldError{Field: "osrelease", Path: fs.procPath("sys/kernel/osrelease"), Err: err})
	} else {
		n.KernelRelease = strings.TrimSpace(string(rel))
	}
	if cmdline, err := fs.readProc("cmdline"); err != nil {
		n.Errors = append(n.Errors, FieldError{Field: "cmdline", Path: fs.procPath("cmdline"), Err: err})
	} else {
		n.NoKmem = hasNoKmem(cmdline)
	}
	if psi, err := fs.NodePressure(); err != nil {
		n.Errors = append(n.Errors, FieldError{Field: "pressure", Path: fs.procPath(nodePressureFile), Err: err})
	} else {
		n.PSI = psi
	}
	if total, err := fs.MemTotal(); err != nil {
		n.Errors = append(n.Errors, FieldError{Field: "meminfo", Path: fs.procPath("meminfo"), Err: err})
	} else {
		n.MemTotal = &total
	}
	if fs.v1() {
		fs.nodeV1(&n, rec)
	} else {
		fs.nodeV2(&n)
	}
	return n
}

func (fs *FS) procPath(name string) string { return filepath.Join(fs.ProcRoot, name) }

func (fs *FS) readProc(name string) ([]byte, error) { return ReadFile(fs.procPath(name)) }

// hasNoKmem reports cgroup.memory=nokmem; the option takes a comma list
// (cgroup.memory=nosocket,nokmem).
func hasNoKmem(cmdline []byte) bool {
	for _, f := range bytes.Fields(bytes.ReplaceAll(cmdline, []byte{0}, []byte(" "))) {
		if v, ok := bytes.CutPrefix(f, []byte("cgroup.memory=")); ok {
			for _, o := range bytes.Split(v, []byte(",")) {
				if string(o) == "nokmem" {
					return true
				}
			}
		}
	}
	return false
}

// memoryNumCgroups is /proc/cgroups num_cgroups of the memory controller:
// live plus dying memcgs.
func (fs *FS) memoryNumCgroups() (uint64, error) {
	p := fs.procPath("cgroups")
	data, err := ReadFile(p)
	if err != nil {
		return 0, err
	}
	cs, err := ParseProcCgroups(data)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p, err)
	}
	for _, c := range cs {
		if c.Name == "memory" {
			return c.NumCgroups, nil
		}
	}
	return 0, fmt.Errorf("%w: %s: no memory line", ErrFileParse, p)
}

// nodeV1 computes dying = num_cgroups - live directories. Both are read
// again when num_cgroups moved during the walk, so a cgroup created or
// removed meanwhile does not show up as a dying one (or a negative count).
func (fs *FS) nodeV1(n *Node, rec *listings) {
	if _, err := os.Lstat(filepath.Join(fs.Hierarchy.MemoryRoot, "memory.kmem.usage_in_bytes")); err == nil {
		n.KmemFiles = true
	}
	procPath := fs.procPath("cgroups")
	for attempt := 0; ; attempt++ {
		before, err := fs.memoryNumCgroups()
		if err != nil {
			n.Errors = append(n.Errors, FieldError{Field: "num_cgroups", Path: procPath, Err: err})
			return
		}
		live, walkErrs, err := fs.countLive(true, rec)
		if err != nil {
			n.Errors = append(n.Errors, FieldError{Field: "live", Path: fs.Hierarchy.MemoryRoot, Err: err})
			return
		}
		after, err := fs.memoryNumCgroups()
		if err != nil {
			n.Errors = append(n.Errors, FieldError{Field: "num_cgroups", Path: procPath, Err: err})
			return
		}
		if (before != after || live > after) && attempt < 4 {
			continue
		}
		if walkErrs != nil {
			// An unreadable subtree makes live too small and dying too big.
			n.Errors = append(n.Errors, FieldError{Field: "live", Path: fs.Hierarchy.MemoryRoot, Err: walkErrs})
			return
		}
		if live > after {
			n.Errors = append(n.Errors, FieldError{Field: "dying", Path: procPath,
				Err: fmt.Errorf("%w: %d live memory cgroups but num_cgroups %d", ErrFileParse, live, after)})
			return
		}
		n.LiveMemcgs = &live
		dying := after - live
		n.DyingMemcgs = &dying
		fs.idHeadroom(n, after)
		return
	}
}

// idHeadroom sets MemcgIDHeadroom on kernels < 4.7, whose memcg ids
// (max 65535) stay taken until a dying memcg is freed.
func (fs *FS) idHeadroom(n *Node, numCgroups uint64) {
	if recycles, ok := KernelAtLeast(n.KernelRelease, 4, 7); !ok || recycles {
		return
	}
	h := int64(memcgIDMax) - int64(numCgroups)
	n.MemcgIDHeadroom = &h
}

// KernelAtLeast says whether a kernel release like "3.10.0-1160.el7.x86_64"
// is at least major.minor; ok is false when the release does not parse.
func KernelAtLeast(release string, major, minor int) (atLeast, ok bool) {
	maj, min, ok := kernelVersion(release)
	return ok && (maj > major || maj == major && min >= minor), ok
}

// kernelVersion parses "major.minor" from a release like 3.10.0-1160.el7.x86_64.
func kernelVersion(release string) (major, minor int, ok bool) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minorStr := parts[1]
	if i := strings.IndexFunc(minorStr, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minorStr = minorStr[:i]
	}
	minor, err2 := strconv.Atoi(minorStr)
	return major, minor, err1 == nil && err2 == nil
}

// nodeV2 reads the root cgroup.stat. Live memcgs come from nr_subsys_memory
// (6.11+, counts the root) or else from a walk counting the directories
// that have memory.current, plus the root.
func (fs *FS) nodeV2(n *Node) {
	p := filepath.Join(fs.Hierarchy.MemoryRoot, "cgroup.stat")
	data, err := ReadFile(p)
	if err != nil {
		n.Errors = append(n.Errors, FieldError{Field: "cgroup.stat", Path: p, Err: err})
		return
	}
	stat, err := ParseEvents(data)
	if err != nil {
		n.Errors = append(n.Errors, FieldError{Field: "cgroup.stat", Path: p, Err: fmt.Errorf("%s: %w", p, err)})
	}
	if v, ok := stat["nr_dying_descendants"]; ok {
		n.DyingMemcgs = &v
	}
	if v, ok := stat["nr_dying_subsys_memory"]; ok {
		n.DyingSubsysMemory = &v
	}
	if v, ok := stat["nr_subsys_memory"]; ok {
		n.LiveMemcgs = &v
		return
	}
	live, walkErrs, err := fs.countLive(false, nil)
	switch {
	case err != nil:
		n.Errors = append(n.Errors, FieldError{Field: "live", Path: fs.Hierarchy.MemoryRoot, Err: err})
	case walkErrs != nil:
		n.Errors = append(n.Errors, FieldError{Field: "live", Path: fs.Hierarchy.MemoryRoot, Err: walkErrs})
	default:
		n.LiveMemcgs = &live
	}
}

// countLive counts the memory cgroup directories, root included. On v1 every
// directory is a memcg; on v2 only those with memory.current (memory enabled
// in the parent's subtree_control).
//
// On a cgroup file system v1 counts with countDirsNlink, which lists only
// directories that have subdirectories: ~10x cheaper than the plain walk
// (114 ms at 1000 pods; see docs/performance.md).
func (fs *FS) countLive(v1 bool, rec *listings) (uint64, error, error) {
	live := uint64(1)
	var errs []error
	if v1 && isCgroupFS(fs.Hierarchy.MemoryRoot) {
		rec.reset()
		n, err := countDirsNlink(fs.Hierarchy.MemoryRoot, &errs, rec, &fs.dirs)
		if err == nil && rec != nil {
			rec.done = true
		}
		return live + n, errors.Join(errs...), err
	}
	err := fs.walk(func(_, _ string, entries []os.DirEntry) {
		if v1 || hasEntry(entries, "memory.current") {
			live++
		}
	}, &errs)
	return live, errors.Join(errs...), err
}

func hasEntry(entries []os.DirEntry, name string) bool {
	for _, e := range entries {
		if e.Name() == name {
			return true
		}
	}
	return false
}

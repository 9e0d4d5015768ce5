package cgroupfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// optionalFile is a memory file that some kernels do not have at all. After
// the first ENOENT in a cgroup that still exists, FS stops opening it.
type optionalFile int

const (
	optKmemUsage optionalFile = iota // v1 memory.kmem.usage_in_bytes (present on the 6.1 and 6.18 captures)
	optKmemLimit                     // v1 memory.kmem.limit_in_bytes (present on the 6.1 and 6.18 captures)
	optPeak                          // v2 memory.peak (5.19+)
	optPressure                      // v2 memory.pressure (PSI off: psi=0)
	numOptional
)

// FS reads the memory cgroup files of one hierarchy. It is safe for
// concurrent use.
type FS struct {
	Hierarchy Hierarchy
	// ProcRoot is the proc mount (/proc, or /host/proc in a container).
	ProcRoot string

	absent [numOptional]atomic.Bool
	kmem   kmemCache
	dirs   dirCache // the live-memcg walk's listings, between walks
	// seqFiles is true when MemoryRoot is a cgroup file system (see cgDir.read).
	seqFiles bool
}

// NewFS detects the hierarchy from <procRoot>/self/mountinfo.
func NewFS(procRoot string) (*FS, error) {
	h, err := DetectHierarchy(procRoot)
	if err != nil {
		return nil, err
	}
	return NewFSAt(h, procRoot), nil
}

// NewFSAt is an FS on an explicit hierarchy (tests, --sysfs prefixes).
func NewFSAt(h Hierarchy, procRoot string) *FS {
	return &FS{Hierarchy: h, ProcRoot: procRoot, seqFiles: isCgroupFS(h.MemoryRoot)}
}

func (fs *FS) v1() bool { return fs.Hierarchy.Mode != ModeV2 }

// abs turns a cgroup path (relative to MemoryRoot, leading slash) into a
// file system path that cannot climb out of MemoryRoot.
func (fs *FS) abs(path string) string {
	if !strings.HasPrefix(path, "/") || strings.Contains(path, "..") || strings.Contains(path, "//") {
		path = filepath.Clean("/" + path)
	}
	if path == "/" {
		return fs.Hierarchy.MemoryRoot
	}
	return fs.Hierarchy.MemoryRoot + path
}

// Fields selects which parts of Memory a read fills; each costs one file
// read per cgroup (~4 us of syscalls; memory.stat ~10-25 us), so a caller
// asks only for what it reports. See docs/performance.md.
type Fields uint16

const (
	// FieldStat is memory.stat: Shmem, File, Anon, InactiveFile, Slab, Sock,
	// and on v2 Kernel; with FieldUsage also WorkingSet.
	FieldStat      Fields = 1 << iota
	FieldLimit            // Limit, Unlimited: v1 memory.limit_in_bytes, v2 memory.max
	FieldUsage            // Usage: v1 memory.usage_in_bytes, v2 memory.current
	FieldPeak             // Peak: v1 memory.max_usage_in_bytes, v2 memory.peak
	FieldEvents           // LimitHits, OOMKills, UnderOOM: v1 memory.failcnt + memory.oom_control; v2 memory.events (+OOMEvents, OOMGroupKills)
	FieldKernel           // Kernel on v1: memory.kmem.usage_in_bytes (v2 takes it from memory.stat)
	FieldKmemLimit        // KmemLimit: v1 memory.kmem.limit_in_bytes, read once per cgroup lifetime (see kmemCache)
	FieldPressure         // PSI: v2 memory.pressure
	FieldDying            // DyingDescendants: v2 cgroup.stat

	// FieldsAll is everything Memory reports.
	FieldsAll = FieldStat | FieldLimit | FieldUsage | FieldPeak | FieldEvents | FieldKernel | FieldKmemLimit | FieldPressure | FieldDying
)

// memReader reads one cgroup's files into m.
type memReader struct {
	fs   *FS
	dir  cgDir
	want Fields
	buf  *[]byte
	m    Memory
}

// MemoryFields reads the memory files behind want of one cgroup; path is
// relative to MemoryRoot with a leading slash. Every field that cannot be
// read, or was not asked for, is nil; one that could not be read has an
// entry in Errors; a vanished cgroup gives one "cgroup" error wrapping
// fs.ErrNotExist. A cgroup asked for nothing (want 0) is not opened.
func (fs *FS) MemoryFields(path string, want Fields) Memory {
	if want == 0 {
		return Memory{}
	}
	dirPath := fs.abs(path)
	d, err := openDir(dirPath)
	if err != nil {
		return Memory{Errors: []FieldError{{Field: "cgroup", Path: dirPath, Err: err}}}
	}
	defer d.close()
	return fs.readMemory(d, want)
}

// PodMemory is MemoryFields of a pod cgroup (podWant) and of each of its
// containers (containerWant), in pod.Containers order. A container cgroup
// is opened relative to the open pod directory: one path component to
// resolve instead of the ~9 of its absolute path.
func (fs *FS) PodMemory(pod Pod, podWant Fields, containerWant func(Container) Fields) (Memory, []Memory) {
	ctrs := make([]Memory, len(pod.Containers))
	dirPath := fs.abs(pod.Path)
	d, err := openDir(dirPath)
	if err != nil {
		for i, ct := range pod.Containers { // gone or unreadable: each says so
			ctrs[i] = fs.MemoryFields(ct.Path, containerWant(ct))
		}
		return Memory{Errors: []FieldError{{Field: "cgroup", Path: dirPath, Err: err}}}, ctrs
	}
	defer d.close()
	podMem := fs.readMemory(d, podWant)
	for i, ct := range pod.Containers {
		name, ok := childName(ct.Path, pod.Path)
		if !ok { // --all-cgroups: the unit is the container
			ctrs[i] = fs.MemoryFields(ct.Path, containerWant(ct))
			continue
		}
		ctrs[i] = fs.memoryAt(d, name, containerWant(ct))
	}
	return podMem, ctrs
}

// childName is the last element of path when path is parent/<one element>.
func childName(path, parent string) (string, bool) {
	if len(path) <= len(parent)+1 || path[len(parent)] != '/' || !strings.HasPrefix(path, parent) {
		return "", false
	}
	name := path[len(parent)+1:]
	return name, !strings.Contains(name, "/")
}

// memoryAt is MemoryFields of the cgroup name below the open directory
// parent.
func (fs *FS) memoryAt(parent cgDir, name string, want Fields) Memory {
	if want == 0 {
		return Memory{}
	}
	d, err := openDirAt(parent, name)
	if err != nil {
		return Memory{Errors: []FieldError{{Field: "cgroup", Path: d.path(), Err: err}}}
	}
	defer d.close()
	return fs.readMemory(d, want)
}

// readMemory reads the files behind want of the open cgroup directory d.
func (fs *FS) readMemory(d cgDir, want Fields) Memory {
	buf := getBuf()
	defer putBuf(buf)
	r := memReader{fs: fs, dir: d, want: want, buf: buf}
	if fs.v1() {
		r.readV1()
	} else {
		r.readV2()
	}
	m := r.m
	if m.Usage != nil && m.InactiveFile != nil {
		ws := uint64(0)
		if *m.Usage > *m.InactiveFile {
			ws = *m.Usage - *m.InactiveFile
		}
		m.WorkingSet = ptr(ws)
	}
	return m
}

// ptr is a pointer to a copy of v: every Memory field is its own, owned
// by the caller.
func ptr(v uint64) *uint64 { return &v }

func (r *memReader) has(f Fields) bool { return r.want&f != 0 }

func (r *memReader) readV1() {
	if r.has(FieldStat) {
		r.stat(true)
	}
	if r.has(FieldLimit) {
		r.limit(nameLimitV1)
	}
	if r.has(FieldUsage) {
		r.counter(nameUsageV1, &r.m.Usage)
	}
	if r.has(FieldPeak) {
		r.counter(namePeakV1, &r.m.Peak)
	}
	if r.has(FieldEvents) {
		r.counter(nameFailcnt, &r.m.LimitHits)
		r.oomControl()
	}
	if r.has(FieldKernel) {
		if data, ok := r.optional(optKmemUsage, nameKmemUsage); ok {
			r.parseCounter(nameKmemUsage, data, &r.m.Kernel)
		}
	}
	if r.has(FieldKmemLimit) {
		r.kmemLimit()
	}
}

// kmemLimit fills KmemLimit from the per-cgroup cache, reading the file
// only the first time this cgroup directory (by inode) is seen.
func (r *memReader) kmemLimit() {
	if r.fs.absent[optKmemLimit].Load() {
		return
	}
	id, idErr := r.dir.id()
	if idErr == nil {
		if v, unlimited, ok := r.fs.kmem.get(id); ok {
			if !unlimited {
				r.m.KmemLimit = ptr(v)
			}
			return
		}
	}
	data, ok := r.optional(optKmemLimit, nameKmemLimit)
	if !ok {
		return
	}
	v, unlimited, err := ParseLimit(data)
	switch {
	case err != nil:
		r.fail(nameKmemLimit, err)
		return
	case !unlimited:
		r.m.KmemLimit = ptr(v)
	}
	if idErr == nil {
		r.fs.kmem.put(id, v, unlimited)
	}
}

func (r *memReader) readV2() {
	if r.has(FieldStat) {
		r.stat(false)
	}
	if r.has(FieldLimit) {
		r.limit(nameMax)
	}
	if r.has(FieldUsage) {
		r.counter(nameCurrent, &r.m.Usage)
	}
	if r.has(FieldPeak) {
		if data, ok := r.optional(optPeak, namePeakV2); ok {
			r.parseCounter(namePeakV2, data, &r.m.Peak)
		}
	}
	if r.has(FieldEvents) {
		r.events()
	}
	if r.has(FieldPressure) {
		if data, ok := r.optional(optPressure, namePressure); ok {
			p, err := ParsePSI(data)
			if err != nil {
				r.fail(namePressure, err)
			} else {
				r.m.PSI = &p
			}
		}
	}
	if r.has(FieldDying) {
		r.cgroupStat()
	}
}

const (
	nameStat      = "memory.stat"
	nameLimitV1   = "memory.limit_in_bytes"
	nameUsageV1   = "memory.usage_in_bytes"
	namePeakV1    = "memory.max_usage_in_bytes"
	nameFailcnt   = "memory.failcnt"
	nameOOMCtl    = "memory.oom_control"
	nameKmemUsage = "memory.kmem.usage_in_bytes"
	nameKmemLimit = "memory.kmem.limit_in_bytes"
	nameMax       = "memory.max"
	nameCurrent   = "memory.current"
	namePeakV2    = "memory.peak"
	nameEvents    = "memory.events"
	namePressure  = "memory.pressure"
	nameCgStat    = "cgroup.stat"
)

// read reads one file; a failure is recorded as a FieldError.
func (r *memReader) read(name string) ([]byte, bool) {
	data, err := r.dir.read(name, r.buf, r.fs.seqFiles)
	if err != nil {
		r.m.Errors = append(r.m.Errors, FieldError{Field: name, Path: r.dir.path() + "/" + name, Err: err})
		return nil, false
	}
	return data, true
}

// optional reads a file this kernel may lack. ENOENT in a cgroup that still
// exists means the kernel has no such file: no error, and FS stops trying.
func (r *memReader) optional(f optionalFile, name string) ([]byte, bool) {
	if r.fs.absent[f].Load() {
		return nil, false
	}
	data, err := r.dir.read(name, r.buf, r.fs.seqFiles)
	if err == nil {
		return data, true
	}
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Lstat(r.dir.path()); serr == nil {
			r.fs.absent[f].Store(true)
			return nil, false
		}
	}
	if f == optPressure && noPSI(err) { // 5.10 booted with psi=0: the file is there, its read is refused
		r.fs.absent[f].Store(true)
		return nil, false
	}
	r.m.Errors = append(r.m.Errors, FieldError{Field: name, Path: r.dir.path() + "/" + name, Err: err})
	return nil, false
}

func (r *memReader) fail(name string, err error) {
	path := r.dir.path() + "/" + name
	r.m.Errors = append(r.m.Errors, FieldError{Field: name, Path: path, Err: fmt.Errorf("%s: %w", path, err)})
}

func (r *memReader) stat(v1 bool) {
	data, ok := r.read(nameStat)
	if !ok {
		return
	}
	var s memStat
	if err := parseMemStat(data, v1, &s); err != nil {
		r.fail(nameStat, err)
	}
	set := func(f statField, dst **uint64) {
		if s.has(f) {
			*dst = ptr(s.v[f])
		}
	}
	set(statShmem, &r.m.Shmem)
	set(statFile, &r.m.File)
	set(statAnon, &r.m.Anon)
	set(statInactiveFile, &r.m.InactiveFile)
	set(statKernel, &r.m.Kernel)
	set(statSlab, &r.m.Slab)
	set(statSock, &r.m.Sock)
}

func (r *memReader) limit(name string) {
	data, ok := r.read(name)
	if !ok {
		return
	}
	v, unlimited, err := ParseLimit(data)
	switch {
	case err != nil:
		r.fail(name, err)
	case unlimited:
		r.m.Unlimited = true
	default:
		r.m.Limit = ptr(v)
	}
}

func (r *memReader) counter(name string, dst **uint64) {
	if data, ok := r.read(name); ok {
		r.parseCounter(name, data, dst)
	}
}

func (r *memReader) parseCounter(name string, data []byte, dst **uint64) {
	v, err := ParseCounter(data)
	if err != nil {
		r.fail(name, err)
		return
	}
	*dst = ptr(v)
}

func (r *memReader) oomControl() {
	data, ok := r.read(nameOOMCtl)
	if !ok {
		return
	}
	oc, err := ParseOOMControl(data)
	if err != nil {
		r.fail(nameOOMCtl, err)
		return
	}
	r.m.UnderOOM = &oc.UnderOOM
	if oc.OOMKill != nil {
		r.m.OOMKills = ptr(*oc.OOMKill)
	}
}

// events reads v2 memory.events without building a map.
func (r *memReader) events() {
	data, ok := r.read(nameEvents)
	if !ok {
		return
	}
	m := &r.m
	err := forEachKV(data, func(k []byte, v uint64) {
		switch string(k) {
		case "max":
			m.LimitHits = ptr(v)
		case "oom":
			m.OOMEvents = ptr(v)
		case "oom_kill":
			m.OOMKills = ptr(v)
		case "oom_group_kill":
			m.OOMGroupKills = ptr(v)
		}
	})
	if err != nil {
		r.fail(nameEvents, err)
	}
}

func (r *memReader) cgroupStat() {
	data, ok := r.read(nameCgStat)
	if !ok {
		return
	}
	m := &r.m
	err := forEachKV(data, func(k []byte, v uint64) {
		if string(k) == "nr_dying_descendants" {
			m.DyingDescendants = ptr(v)
		}
	})
	if err != nil {
		r.fail(nameCgStat, err)
	}
}

// Procs reads the cgroup's cgroup.procs.
func (fs *FS) Procs(path string) ([]int, error) {
	p := fs.abs(path) + "/cgroup.procs"
	buf := getBuf()
	defer putBuf(buf)
	data, err := readPath(p, buf)
	if err != nil {
		return nil, err
	}
	pids, err := ParseProcs(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return pids, nil
}

// Stat returns the cgroup directory's change time (set by mkdir), which the
// agent uses as the age of orphaned cgroups.
func (fs *FS) Stat(path string) (created time.Time, err error) {
	return dirChangeTime(fs.abs(path))
}

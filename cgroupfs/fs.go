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
	optKmemUsage optionalFile = iota // v1 memory.kmem.usage_in_bytes (gone in 6.x with nokmem builds)
	optKmemLimit                     // v1 memory.kmem.limit_in_bytes (removed in 6.x)
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
	return &FS{Hierarchy: h, ProcRoot: procRoot}
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

// memVals backs every pointer of one Memory, so a Memory costs one
// allocation instead of one per field.
type memVals struct {
	u        [16]uint64
	n        int
	underOOM bool
}

func (v *memVals) ptr(x uint64) *uint64 {
	if v.n == len(v.u) { // only a file with duplicate keys gets here
		spill := new(uint64)
		*spill = x
		return spill
	}
	p := &v.u[v.n]
	*p = x
	v.n++
	return p
}

// memReader reads one cgroup's files into m.
type memReader struct {
	fs   *FS
	dir  cgDir
	buf  *[]byte
	vals *memVals
	m    *Memory
}

// Memory reads one cgroup's memory files; path is relative to MemoryRoot with
// a leading slash. Every field that cannot be read is nil and has an entry in
// Errors; a vanished cgroup gives one "cgroup" error wrapping fs.ErrNotExist.
func (fs *FS) Memory(path string) Memory {
	var m Memory
	dirPath := fs.abs(path)
	d, err := openDir(dirPath)
	if err != nil {
		m.Errors = []FieldError{{Field: "cgroup", Path: dirPath, Err: err}}
		return m
	}
	defer d.close()
	buf := getBuf()
	defer putBuf(buf)
	r := memReader{fs: fs, dir: d, buf: buf, vals: new(memVals), m: &m}
	if fs.v1() {
		r.readV1()
	} else {
		r.readV2()
	}
	if m.Usage != nil && m.InactiveFile != nil {
		ws := uint64(0)
		if *m.Usage > *m.InactiveFile {
			ws = *m.Usage - *m.InactiveFile
		}
		m.WorkingSet = r.vals.ptr(ws)
	}
	return m
}

func (r *memReader) readV1() {
	r.stat(true)
	r.limit("memory.limit_in_bytes")
	r.counter("memory.usage_in_bytes", &r.m.Usage)
	r.counter("memory.max_usage_in_bytes", &r.m.Peak)
	r.counter("memory.failcnt", &r.m.LimitHits)
	r.oomControl()
	if data, ok := r.optional(optKmemUsage, "memory.kmem.usage_in_bytes"); ok {
		r.parseCounter("memory.kmem.usage_in_bytes", data, &r.m.Kernel)
	}
	if data, ok := r.optional(optKmemLimit, "memory.kmem.limit_in_bytes"); ok {
		v, unlimited, err := ParseLimit(data)
		switch {
		case err != nil:
			r.fail("memory.kmem.limit_in_bytes", err)
		case !unlimited:
			r.m.KmemLimit = r.vals.ptr(v)
		}
	}
}

func (r *memReader) readV2() {
	r.stat(false)
	r.limit("memory.max")
	r.counter("memory.current", &r.m.Usage)
	if data, ok := r.optional(optPeak, "memory.peak"); ok {
		r.parseCounter("memory.peak", data, &r.m.Peak)
	}
	r.events()
	if data, ok := r.optional(optPressure, "memory.pressure"); ok {
		p, err := ParsePSI(data)
		if err != nil {
			r.fail("memory.pressure", err)
		} else {
			r.m.PSI = &p
		}
	}
	r.cgroupStat()
}

// read reads one file; a failure is recorded as a FieldError.
func (r *memReader) read(name string) ([]byte, bool) {
	data, err := r.dir.read(name, r.buf)
	if err != nil {
		r.m.Errors = append(r.m.Errors, FieldError{Field: name, Path: r.dir.path + "/" + name, Err: err})
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
	data, err := r.dir.read(name, r.buf)
	if err == nil {
		return data, true
	}
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Lstat(r.dir.path); serr == nil {
			r.fs.absent[f].Store(true)
			return nil, false
		}
	}
	r.m.Errors = append(r.m.Errors, FieldError{Field: name, Path: r.dir.path + "/" + name, Err: err})
	return nil, false
}

func (r *memReader) fail(name string, err error) {
	path := r.dir.path + "/" + name
	r.m.Errors = append(r.m.Errors, FieldError{Field: name, Path: path, Err: fmt.Errorf("%s: %w", path, err)})
}

func (r *memReader) stat(v1 bool) {
	data, ok := r.read("memory.stat")
	if !ok {
		return
	}
	var s memStat
	if err := parseMemStat(data, v1, &s); err != nil {
		r.fail("memory.stat", err)
	}
	set := func(f statField, dst **uint64) {
		if s.has(f) {
			*dst = r.vals.ptr(s.v[f])
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
		r.m.Limit = r.vals.ptr(v)
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
	*dst = r.vals.ptr(v)
}

func (r *memReader) oomControl() {
	data, ok := r.read("memory.oom_control")
	if !ok {
		return
	}
	oc, err := ParseOOMControl(data)
	if err != nil {
		r.fail("memory.oom_control", err)
		return
	}
	r.vals.underOOM = oc.UnderOOM
	r.m.UnderOOM = &r.vals.underOOM
	if oc.OOMKill != nil {
		r.m.OOMKills = r.vals.ptr(*oc.OOMKill)
	}
}

// events reads v2 memory.events without building a map.
func (r *memReader) events() {
	data, ok := r.read("memory.events")
	if !ok {
		return
	}
	m, vals := r.m, r.vals
	err := forEachKV(data, func(k []byte, v uint64) {
		switch string(k) {
		case "max":
			m.LimitHits = vals.ptr(v)
		case "oom":
			m.OOMEvents = vals.ptr(v)
		case "oom_kill":
			m.OOMKills = vals.ptr(v)
		case "oom_group_kill":
			m.OOMGroupKills = vals.ptr(v)
		}
	})
	if err != nil {
		r.fail("memory.events", err)
	}
}

func (r *memReader) cgroupStat() {
	data, ok := r.read("cgroup.stat")
	if !ok {
		return
	}
	m, vals := r.m, r.vals
	err := forEachKV(data, func(k []byte, v uint64) {
		if string(k) == "nr_dying_descendants" {
			m.DyingDescendants = vals.ptr(v)
		}
	})
	if err != nil {
		r.fail("cgroup.stat", err)
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

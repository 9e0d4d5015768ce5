package cgroupfs

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
)

// v1UnlimitedFloor is the smallest v1 limit that means "no limit": the kernel
// stores LONG_MAX rounded down to a page (9223372036854771712 with 4 KiB
// pages), and larger pages round lower still, so anything this high is
// treated as the sentinel.
const v1UnlimitedFloor = 0x7FFFFFFFFFFFF000 - 0xFFFF // tolerate 64 KiB pages

// parseUint parses a decimal uint64 from b without allocating.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// kvLine is one "key value" line of a flat keyed file.
type kvLine struct {
	key, val []byte
}

// nextLine splits off the first line of data; a missing final newline is fine.
func nextLine(data []byte) (line, rest []byte) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return data[:i], data[i+1:]
	}
	return data, nil
}

// splitKV splits a "key value" line at its single space.
func splitKV(line []byte) (kvLine, bool) {
	i := bytes.IndexByte(line, ' ')
	if i <= 0 || i == len(line)-1 {
		return kvLine{}, false
	}
	kv := kvLine{key: line[:i], val: line[i+1:]}
	if bytes.IndexByte(kv.val, ' ') >= 0 {
		return kvLine{}, false
	}
	return kv, true
}

// parseError is ErrFileParse with the offending line, shortened.
func parseError(what string, line []byte) error {
	if len(line) > 64 {
		line = line[:64]
	}
	return fmt.Errorf("%w: %s: line %q", ErrFileParse, what, line)
}

// forEachKV calls fn for each "key uint" line of a flat keyed file (memory.events,
// cgroup.stat, memory.stat). It stops at the first malformed line and returns its
// error after fn saw every line before it.
func forEachKV(data []byte, fn func(key []byte, v uint64)) error {
	for len(data) > 0 {
		var line []byte
		line, data = nextLine(data)
		if len(line) == 0 {
			continue
		}
		kv, ok := splitKV(line)
		if !ok {
			return parseError("flat keyed", line)
		}
		v, ok := parseUint(kv.val)
		if !ok {
			return parseError("flat keyed", line)
		}
		fn(kv.key, v)
	}
	return nil
}

// ParseEvents parses a flat keyed file of "key count" lines: memory.events,
// memory.events.local, cgroup.stat. Values parsed before a malformed line are
// returned with the error; a duplicate key is an error too.
func ParseEvents(data []byte) (map[string]uint64, error) {
	out := make(map[string]uint64)
	var dup error
	err := forEachKV(data, func(k []byte, v uint64) {
		if _, seen := out[string(k)]; seen && dup == nil {
			dup = fmt.Errorf("%w: duplicate key %q", ErrFileParse, k)
		}
		out[string(k)] = v
	})
	if err == nil {
		err = dup
	}
	return out, err
}

// MemoryStat is the part of memory.stat that cgroupfs reports. On v1 the
// hierarchical total_* fields are used, so a pod includes its containers. A nil
// field is a key this kernel does not write.
type MemoryStat struct {
	Shmem        *uint64 // v1 total_shmem (absent on 3.10), v2 shmem
	File         *uint64 // v1 total_cache, v2 file
	Anon         *uint64 // v1 total_rss, v2 anon
	InactiveFile *uint64 // v1 total_inactive_file, v2 inactive_file
	Kernel       *uint64 // v2 kernel (5.18+); v1 has no such key
	Slab         *uint64 // v2 slab
	Sock         *uint64 // v2 sock
}

// statField indexes memStat.v.
type statField int

const (
	statShmem statField = iota
	statFile
	statAnon
	statInactiveFile
	statKernel
	statSlab
	statSock
	numStatFields
)

// memStat is memory.stat parsed without allocating: values plus a presence mask.
type memStat struct {
	v    [numStatFields]uint64
	have uint16
}

func (m *memStat) set(f statField, v uint64) bool {
	bit := uint16(1) << f
	dup := m.have&bit != 0
	m.v[f], m.have = v, m.have|bit
	return !dup
}

func (m *memStat) has(f statField) bool { return m.have&(1<<f) != 0 }

// statFieldV1 maps a v1 memory.stat key to the field it fills. The switch on
// string(key) does not allocate; a map of all ~70 keys would, per cgroup.
func statFieldV1(key []byte) (statField, bool) {
	switch string(key) {
	case "total_shmem":
		return statShmem, true
	case "total_cache":
		return statFile, true
	case "total_rss":
		return statAnon, true
	case "total_inactive_file":
		return statInactiveFile, true
	}
	return 0, false
}

func statFieldV2(key []byte) (statField, bool) {
	switch string(key) {
	case "shmem":
		return statShmem, true
	case "file":
		return statFile, true
	case "anon":
		return statAnon, true
	case "inactive_file":
		return statInactiveFile, true
	case "kernel":
		return statKernel, true
	case "slab":
		return statSlab, true
	case "sock":
		return statSock, true
	}
	return 0, false
}

// parseMemStat fills m from data; v1 selects the total_* keys. Fields parsed
// before a malformed line are kept.
func parseMemStat(data []byte, v1 bool, m *memStat) error {
	var dup []byte
	err := forEachKV(data, func(k []byte, v uint64) {
		var f statField
		var ok bool
		if v1 {
			f, ok = statFieldV1(k)
		} else {
			f, ok = statFieldV2(k)
		}
		if ok && !m.set(f, v) && dup == nil {
			dup = k
		}
	})
	if err == nil && dup != nil {
		err = fmt.Errorf("%w: memory.stat: duplicate key %q", ErrFileParse, dup)
	}
	return err
}

// ParseMemoryStat parses memory.stat; v1 selects the hierarchical total_* keys
// of cgroup v1, otherwise the flat keys of cgroup v2 are used. On a malformed
// line it returns the fields read so far and an error wrapping ErrFileParse.
func ParseMemoryStat(data []byte, v1 bool) (MemoryStat, error) {
	var m memStat
	err := parseMemStat(data, v1, &m)
	ptr := func(f statField) *uint64 {
		if !m.has(f) {
			return nil
		}
		v := m.v[f]
		return &v
	}
	return MemoryStat{
		Shmem: ptr(statShmem), File: ptr(statFile), Anon: ptr(statAnon),
		InactiveFile: ptr(statInactiveFile), Kernel: ptr(statKernel),
		Slab: ptr(statSlab), Sock: ptr(statSock),
	}, err
}

// ParseLimit parses a limit file: v1 memory.limit_in_bytes (or
// memory.kmem.limit_in_bytes), v2 memory.max. "max" and the v1 sentinel
// (>= page-rounded LONG_MAX) mean unlimited.
func ParseLimit(data []byte) (limit uint64, unlimited bool, err error) {
	b := bytes.TrimSuffix(data, []byte("\n"))
	if string(b) == "max" {
		return 0, true, nil
	}
	v, ok := parseUint(b)
	if !ok {
		return 0, false, parseError("limit", b)
	}
	if v >= v1UnlimitedFloor {
		return 0, true, nil
	}
	return v, false, nil
}

// ParseCounter parses a file holding one unsigned number and a newline
// (memory.usage_in_bytes, memory.current, memory.failcnt, memory.peak).
func ParseCounter(data []byte) (uint64, error) {
	b := bytes.TrimSuffix(data, []byte("\n"))
	v, ok := parseUint(b)
	if !ok {
		return 0, parseError("counter", b)
	}
	return v, nil
}

// OOMControl is v1 memory.oom_control.
type OOMControl struct {
	OOMKillDisable bool
	UnderOOM       bool
	OOMKill        *uint64 // 4.13+
}

// ParseOOMControl parses v1 memory.oom_control; oom_kill_disable and under_oom
// are required, oom_kill is nil on kernels before 4.13.
func ParseOOMControl(data []byte) (OOMControl, error) {
	var oc OOMControl
	var seen uint8
	var dup bool
	err := forEachKV(data, func(k []byte, v uint64) {
		var bit uint8
		switch string(k) {
		case "oom_kill_disable":
			bit, oc.OOMKillDisable = 1, v != 0
		case "under_oom":
			bit, oc.UnderOOM = 2, v != 0
		case "oom_kill":
			bit = 4
			n := v
			oc.OOMKill = &n
		}
		dup = dup || seen&bit != 0
		seen |= bit
	})
	switch {
	case err != nil:
		return oc, err
	case dup:
		return oc, fmt.Errorf("%w: memory.oom_control: duplicate key", ErrFileParse)
	case seen&3 != 3:
		return oc, fmt.Errorf("%w: memory.oom_control: oom_kill_disable or under_oom missing", ErrFileParse)
	}
	return oc, nil
}

// ParsePSI parses a pressure file (memory.pressure, /proc/pressure/memory):
// a "some" line and an optional "full" line of avg10= avg60= avg300= total=.
func ParsePSI(data []byte) (PSI, error) {
	var p PSI
	var haveSome bool
	for len(data) > 0 {
		var line []byte
		line, data = nextLine(data)
		if len(line) == 0 {
			continue
		}
		kind, rest, _ := bytes.Cut(line, []byte(" "))
		var l PSILine
		if err := parsePSILine(rest, &l); err != nil {
			return PSI{}, err
		}
		switch string(kind) {
		case "some":
			if haveSome {
				return PSI{}, parseError("psi duplicate", line)
			}
			p.Some, haveSome = l, true
		case "full":
			if p.Full != nil {
				return PSI{}, parseError("psi duplicate", line)
			}
			p.Full = &l
		default:
			return PSI{}, parseError("psi", line)
		}
	}
	if !haveSome {
		return PSI{}, fmt.Errorf("%w: psi: no some line", ErrFileParse)
	}
	return p, nil
}

// parsePSILine parses "avg10=0.00 avg60=0.00 avg300=0.00 total=0"; all four are required.
func parsePSILine(b []byte, l *PSILine) error {
	var seen uint8
	for _, f := range bytes.Fields(b) {
		k, v, ok := bytes.Cut(f, []byte("="))
		if !ok {
			return parseError("psi", b)
		}
		var bit uint8
		var err error
		switch string(k) {
		case "avg10":
			bit = 1
			l.Avg10, err = parsePSIAvg(v)
		case "avg60":
			bit = 2
			l.Avg60, err = parsePSIAvg(v)
		case "avg300":
			bit = 4
			l.Avg300, err = parsePSIAvg(v)
		case "total":
			var ok bool
			bit = 8
			if l.TotalMicroseconds, ok = parseUint(v); !ok {
				err = parseError("psi total", v)
			}
		default:
			return parseError("psi", b)
		}
		if err != nil {
			return err
		}
		if seen&bit != 0 {
			return parseError("psi duplicate", b)
		}
		seen |= bit
	}
	if seen != 15 {
		return parseError("psi incomplete", b)
	}
	return nil
}

func parsePSIAvg(v []byte) (float64, error) {
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || f < 0 || f > 100 || math.IsNaN(f) {
		return 0, parseError("psi avg", v)
	}
	return f, nil
}

// ProcCgroup is one line of /proc/cgroups.
type ProcCgroup struct {
	Name       string
	Hierarchy  uint64 // 0 on cgroup v2
	NumCgroups uint64 // live plus dying cgroups using this controller
	Enabled    bool
}

// ParseProcCgroups parses /proc/cgroups (header line, then
// "subsys_name hierarchy num_cgroups enabled", tab separated).
func ParseProcCgroups(data []byte) ([]ProcCgroup, error) {
	var out []ProcCgroup
	for len(data) > 0 {
		var line []byte
		line, data = nextLine(data)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		f := bytes.Fields(line)
		if len(f) != 4 {
			return out, parseError("/proc/cgroups", line)
		}
		h, ok1 := parseUint(f[1])
		n, ok2 := parseUint(f[2])
		e, ok3 := parseUint(f[3])
		if !ok1 || !ok2 || !ok3 || e > 1 {
			return out, parseError("/proc/cgroups", line)
		}
		out = append(out, ProcCgroup{Name: string(f[0]), Hierarchy: h, NumCgroups: n, Enabled: e == 1})
	}
	return out, nil
}

// ParseProcs parses cgroup.procs: one pid per line.
func ParseProcs(data []byte) ([]int, error) {
	var out []int
	for len(data) > 0 {
		var line []byte
		line, data = nextLine(data)
		if len(line) == 0 {
			continue
		}
		v, ok := parseUint(line)
		if !ok || v > math.MaxInt32 {
			return out, parseError("cgroup.procs", line)
		}
		out = append(out, int(v))
	}
	return out, nil
}

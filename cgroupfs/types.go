// Package cgroupfs reads the kernel's memory cgroup files for the pods a
// kubelet runs: where the memory controller lives (v1, v2 or hybrid), which
// cgroups are pods and containers (cgroupfs and systemd drivers; containerd,
// CRI-O and Docker), what each one's memory files say, and the node-wide
// memcg leak signals. It knows nothing about Kubernetes objects or Prometheus.
//
// It does not use containerd/cgroups/v3 for reading: its v1 Stat fails as a
// whole when one kmem file is missing, its paths are fixed rather than rooted
// at a configurable MemoryRoot, and its map-building stat parsing costs
// allocations on the 4000-cgroup hot path; mode detection uses
// moby/sys/mountinfo under a configurable proc root instead.
package cgroupfs

import "errors"

// Mode is where the memory controller lives.
type Mode string

const (
	ModeV1     Mode = "v1"     // memory is a v1 hierarchy, no cgroup2 mount
	ModeV2     Mode = "v2"     // memory is on the unified (cgroup2) hierarchy
	ModeHybrid Mode = "hybrid" // memory is a v1 hierarchy and cgroup2 is mounted too (usually at .../unified)
)

// Hierarchy says where the memory controller's files are, as this process sees them.
type Hierarchy struct {
	Mode Mode
	// MemoryRoot is the directory of the memory hierarchy's root cgroup:
	// /sys/fs/cgroup/memory on v1 and hybrid, /sys/fs/cgroup on v2
	// (or below the --sysfs/--host-root prefix when run in a container).
	MemoryRoot string
	// UnifiedRoot is the cgroup2 mount point in hybrid mode, "" otherwise.
	UnifiedRoot string
	// LocalEvents is true when the v2 memory hierarchy is mounted with
	// memory_localevents: memory.events then counts only the cgroup's own
	// events, not its descendants'.
	LocalEvents bool
}

// QOS is a pod's Kubernetes QoS class, as its cgroup parent says.
type QOS string

const (
	QOSGuaranteed QOS = "guaranteed"
	QOSBurstable  QOS = "burstable"
	QOSBestEffort QOS = "besteffort"
)

// Driver is the kubelet cgroup driver that named a cgroup.
type Driver string

const (
	DriverCgroupfs Driver = "cgroupfs"
	DriverSystemd  Driver = "systemd"
)

// Runtime is the container runtime a container cgroup's name points to.
type Runtime string

const (
	RuntimeUnknown    Runtime = ""
	RuntimeContainerd Runtime = "containerd"
	RuntimeCRIO       Runtime = "crio"
	RuntimeDocker     Runtime = "docker"
)

// Pod is one pod cgroup found under the kubelet's cgroup root.
type Pod struct {
	UID    string // with dashes, as in the API ("_" of systemd names turned back to "-")
	QOS    QOS
	Driver Driver
	// Path is the cgroup path relative to Hierarchy.MemoryRoot, with a
	// leading slash: /kubepods/burstable/pod<uid>,
	// /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice.
	Path       string
	Containers []Container // includes the sandbox (pause) container's cgroup
}

// Container is one container cgroup below a pod cgroup.
type Container struct {
	ID      string // 64-hex id as the runtime names it
	Runtime Runtime
	Path    string // relative to Hierarchy.MemoryRoot, leading slash
}

// Memory is what one cgroup's memory files say. A nil field means this
// kernel or cgroup version does not report it, or it could not be read (see
// Errors); it is never an invented 0. v1 values are hierarchical (total_*)
// so a pod cgroup includes its containers.
type Memory struct {
	// Limit is memory.limit_in_bytes (v1) or memory.max (v2); nil when
	// unlimited (v1 sentinel, v2 "max") or unreadable.
	Limit      *uint64
	Unlimited  bool    // true when Limit is nil because there is no limit
	Usage      *uint64 // v1 memory.usage_in_bytes, v2 memory.current
	Peak       *uint64 // v1 memory.max_usage_in_bytes, v2 memory.peak (5.19+)
	WorkingSet *uint64 // Usage - inactive_file, clamped at 0 (kubelet's definition)

	// From memory.stat (v1: total_* fields).
	Shmem        *uint64 // shmem (absent on 3.10)
	File         *uint64 // v1 total_cache, v2 file
	Anon         *uint64 // v1 total_rss, v2 anon
	InactiveFile *uint64 // v1 total_inactive_file, v2 inactive_file
	Kernel       *uint64 // v2 memory.stat kernel (5.18+); v1 memory.kmem.usage_in_bytes
	Slab         *uint64 // v2 slab; v1 from memory.kmem.slabinfo is not parsed, so nil
	Sock         *uint64 // v2 sock

	LimitHits     *uint64 // v1 memory.failcnt, v2 memory.events max
	OOMEvents     *uint64 // v2 memory.events oom
	OOMKills      *uint64 // v2 memory.events oom_kill, v1 memory.oom_control oom_kill (4.13+)
	OOMGroupKills *uint64 // v2 memory.events oom_group_kill (5.17+)
	UnderOOM      *bool   // v1 memory.oom_control under_oom

	// KmemLimit is v1 memory.kmem.limit_in_bytes when set to a real value
	// (the 3.10-era leak trigger); nil when unlimited or absent.
	KmemLimit *uint64

	PSI *PSI // v2 memory.pressure when present

	// DyingDescendants is v2 cgroup.stat nr_dying_descendants of this cgroup.
	DyingDescendants *uint64

	Errors []FieldError
}

// PSI is one pressure file (memory.pressure).
type PSI struct {
	Some PSILine
	Full *PSILine // absent on the "cpu" file of older kernels; present for memory
}

// PSILine is one line of a pressure file.
type PSILine struct {
	Avg10, Avg60, Avg300 float64
	TotalMicroseconds    uint64
}

// Node is the node-wide memcg picture: leak signals and kmem state.
type Node struct {
	Mode          Mode
	KernelRelease string // from <proc>/sys/kernel/osrelease
	// NoKmem is true when the kernel command line has cgroup.memory=nokmem.
	NoKmem bool
	// KmemFiles is true when v1 memory.kmem.usage_in_bytes exists at the
	// memory root (it does on the 6.1 and 6.18 captures); false on v2.
	KmemFiles bool
	// LiveMemcgs counts memory cgroup directories that exist (root included).
	LiveMemcgs *uint64
	// DyingMemcgs is v1 /proc/cgroups num_cgroups minus LiveMemcgs, v2 root
	// cgroup.stat nr_dying_descendants.
	DyingMemcgs *uint64
	// DyingSubsysMemory is v2 root cgroup.stat nr_dying_subsys_memory (6.11+).
	DyingSubsysMemory *uint64
	// MemcgIDHeadroom is 65535 minus the memcgs counted by /proc/cgroups, only
	// on kernels that do not recycle memcg ids (< 4.7); nil elsewhere.
	MemcgIDHeadroom *int64
	// PSI is the node's memory pressure, /proc/pressure/memory; nil when
	// the kernel keeps no PSI (CONFIG_PSI off, psi=0).
	PSI *PSI
	// MemTotal is /proc/meminfo MemTotal in bytes: a tmpfs mounted without
	// size= gets half of it.
	MemTotal *uint64
	Errors   []FieldError
}

// FieldError is one field that could not be read.
type FieldError struct {
	Field string // e.g. "memory.stat", "limit"
	Path  string // the file's path
	Err   error  // wraps ErrFileRead, ErrFileParse or a fs error (fs.ErrNotExist, fs.ErrPermission)
}

// Error names the field; Err already carries the path.
func (e FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e FieldError) Unwrap() error { return e.Err }

// Sentinel errors, wrapped with %w and the path.
var (
	ErrFileRead  = errors.New("cgroupfs: read failed")
	ErrFileParse = errors.New("cgroupfs: malformed content")
	ErrNoMemory  = errors.New("cgroupfs: no memory cgroup hierarchy mounted")
)

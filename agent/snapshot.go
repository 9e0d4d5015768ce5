package agent

import (
	"time"

	"github.com/shmwatch/shmwatch/cgroupfs"
	"github.com/shmwatch/shmwatch/shmscan"
)

// Snapshot is one collection of the node. It is never modified after
// Collect returns it, so concurrent readers need no locks.
type Snapshot struct {
	Time    time.Time  `json:"time"`
	Node    NodeReport `json:"node"`
	Pods    []Pod      `json:"pods"`
	Orphans []Orphan   `json:"orphans"`
	// OrphansChecked is false when no authoritative pod list (the API,
	// synced) was at hand: then Orphans is empty because nobody looked.
	OrphansChecked bool `json:"orphans_checked"`
	// Phases records how each collection phase went, for the
	// scrape_collector_{duration_seconds,success} metrics.
	Phases []Phase `json:"-"`
	// ReadErrors counts per-field read errors of this collection by field;
	// ReadErrorTotals counts them since the collector started.
	ReadErrors      map[string]int    `json:"-"`
	ReadErrorTotals map[string]uint64 `json:"-"`
	// StuckMounts lists mounts whose statfs hung and are skipped.
	StuckMounts []string `json:"stuck_mounts,omitempty"`
	// GrowthWindow is how long WithGrowth sampled after the collection
	// (seconds); 0: no time to full was estimated.
	GrowthWindow float64 `json:"growth_window_seconds,omitempty"`
}

// Phase is the outcome of one collection phase.
type Phase struct {
	Name     string
	Duration time.Duration
	Err      error
}

// NodeReport is the node-wide part of a snapshot.
type NodeReport struct {
	Name               string   `json:"name"`
	CgroupMode         string   `json:"cgroup_mode"`
	Kernel             string   `json:"kernel"`
	KmemAccounting     string   `json:"kmem_accounting"` // on | off | nokmem
	NoKmem             bool     `json:"nokmem"`
	Memcg              Memcgs   `json:"memcg"`
	KmemLimitedCgroups int      `json:"kmem_limited_cgroups"`
	KmemLimitedPaths   []string `json:"kmem_limited_paths,omitempty"`
	MetadataSource     string   `json:"metadata_source"`
	KubernetesVersion  string   `json:"kubernetes_version,omitempty"`
	AllocatableMemory  *uint64  `json:"allocatable_memory_bytes"`
	Errors             []string `json:"errors,omitempty"`

	// MemoryPressure is /proc/pressure/memory; nil without PSI.
	MemoryPressure *Pressure `json:"memory_pressure"`
	// MemTotal is /proc/meminfo MemTotal: an unsized tmpfs gets half.
	MemTotal *uint64 `json:"mem_total_bytes"`
	// TopSlabCaches are the largest caches of /proc/slabinfo (v1, scan
	// and audit only).
	TopSlabCaches []cgroupfs.SlabCache `json:"top_slab_caches,omitempty"`
	// OOMWatch is the kernel OOM watch's state; nil when none runs.
	OOMWatch *OOMWatchReport `json:"oom_watch,omitempty"`
}

// Memcgs counts memory cgroups on the node.
type Memcgs struct {
	Live       *uint64 `json:"live"`
	Dying      *uint64 `json:"dying"`
	IDHeadroom *int64  `json:"id_headroom"`
}

// Pod is one pod cgroup with what the kernel, the mounts and the API say of it.
type Pod struct {
	UID        string      `json:"uid"`
	Namespace  string      `json:"namespace"`
	Name       string      `json:"name"`
	QOS        string      `json:"qos"`
	Cgroup     string      `json:"cgroup"`
	Orphaned   bool        `json:"orphaned,omitempty"`
	Memory     Memory      `json:"memory"`
	DyingMemcg *uint64     `json:"dying_memcgs,omitempty"`
	Shm        []Shm       `json:"shm"`
	Binding    string      `json:"binding_limit"` // tmpfs | memcg | eviction | ""
	Headroom   *int64      `json:"headroom_bytes"`
	Containers []Container `json:"containers"`
	Errors     []string    `json:"errors,omitempty"`
	// OOM is the pod's OOM kills; nil when no OOM watch runs.
	OOM *PodOOM `json:"oom,omitempty"`

	// MemoryPressure is v2 memory.pressure; nil on v1 and without PSI.
	MemoryPressure *Pressure `json:"memory_pressure"`
	// Kmem is the v1 pod cgroup's kmem accounting (scan and audit only).
	Kmem *Kmem `json:"kmem,omitempty"`
	// MemoryFullIn is the seconds until the working set reaches the
	// limit at the sampled growth rate (WithGrowth); nil when not growing
	// or not sampled.
	MemoryFullIn *float64 `json:"memory_full_in_seconds,omitempty"`

	readErrs []readError // accounted once the pod is known to still exist
}

// Memory is the memory part of a pod or container, in bytes. nil = the
// kernel does not say.
type Memory struct {
	Limit      *uint64 `json:"limit_bytes"`
	Usage      *uint64 `json:"usage_bytes"`
	WorkingSet *uint64 `json:"working_set_bytes"`
	Shmem      *uint64 `json:"shmem_bytes"`
	Kernel     *uint64 `json:"kernel_bytes"`
	Peak       *uint64 `json:"peak_bytes"`
}

// Container is one container cgroup of a pod.
type Container struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Runtime   string   `json:"runtime"`
	Sandbox   bool     `json:"sandbox"`
	Memory    Memory   `json:"memory"`
	OOMKills  *uint64  `json:"oom_kills"`
	LimitHits *uint64  `json:"limit_hits"`
	Errors    []string `json:"errors,omitempty"`

	// Kmem is the v1 container cgroup's kmem accounting (scan and audit only).
	Kmem *Kmem `json:"kmem,omitempty"`
}

// Shm is one tmpfs a pod writes shared memory to, with its verdict.
type Shm struct {
	Source     string           `json:"source"`
	Volume     string           `json:"volume"`
	Device     string           `json:"device"`
	HostPath   string           `json:"host_path"`
	Size       *uint64          `json:"size_bytes"`
	Used       *uint64          `json:"used_bytes"`
	Available  *uint64          `json:"available_bytes"`
	SizeLimit  *uint64          `json:"size_limit_bytes"`
	Headroom   map[string]int64 `json:"headroom"`
	Binding    string           `json:"binding_limit"`
	Containers []string         `json:"containers"`
	Error      string           `json:"error,omitempty"`

	// SizeExplained is, for a memory emptyDir, the size the kubelet gives
	// it and which input decided it.
	SizeExplained *TmpfsSize `json:"size_explained,omitempty"`
	// FullIn is the seconds until the tmpfs is full at the sampled growth
	// rate (WithGrowth); nil when not growing or not sampled.
	FullIn *float64 `json:"full_in_seconds,omitempty"`

	sandboxOnly bool // only the pause container has it at /dev/shm
}

// Orphan is a pod cgroup with no pod on this node.
type Orphan struct {
	UID    string  `json:"uid"`
	Cgroup string  `json:"cgroup"`
	Age    float64 `json:"age_seconds"`
}

// memoryOf is the part of a cgroup read the snapshot reports.
func memoryOf(m cgroupfs.Memory) Memory {
	return Memory{Limit: m.Limit, Usage: m.Usage, WorkingSet: m.WorkingSet, Shmem: m.Shmem, Kernel: m.Kernel, Peak: m.Peak}
}

func usagePtrs(u shmscan.Usage) (size, used, avail *uint64) {
	return &u.SizeBytes, &u.UsedBytes, &u.AvailableBytes
}

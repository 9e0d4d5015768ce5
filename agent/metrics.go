package agent

import (
	"context"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "shmwatch"

// Version and Revision are set at build time (-ldflags -X).
var (
	Version  = "dev"
	Revision = "unknown"
)

var (
	podLabels       = []string{"namespace", "pod", "uid"}
	containerLabels = []string{"namespace", "pod", "uid", "container"}
	shmLabels       = []string{"namespace", "pod", "uid", "source", "volume"}
	limitLabels     = []string{"namespace", "pod", "uid", "source", "volume", "limit"}
)

var (
	podInfo          = gaugeFamily("pod_info", "Pod cgroups found under the kubelet's cgroup root; qos from the cgroup parent.", append(podLabels, "qos")...)
	podLimit         = gaugeFamily("pod_memory_limit_bytes", "Memory limit of the pod cgroup (v1: memory.limit_in_bytes, v2: memory.max); absent when unlimited.", podLabels...)
	podUsage         = gaugeFamily("pod_memory_usage_bytes", "Memory charged to the pod cgroup (v1: memory.usage_in_bytes, v2: memory.current).", podLabels...)
	podWorkingSet    = gaugeFamily("pod_memory_working_set_bytes", "Usage minus inactive file pages, as the kubelet computes it (v1: memory.stat total_inactive_file, v2: inactive_file).", podLabels...)
	podShmem         = gaugeFamily("pod_memory_shmem_bytes", "tmpfs and shared memory pages charged to the pod cgroup (v1: memory.stat total_shmem, v2: memory.stat shmem).", podLabels...)
	podKernel        = gaugeFamily("pod_memory_kernel_bytes", "Kernel memory charged to the pod cgroup (v1: memory.kmem.usage_in_bytes, v2: memory.stat kernel).", podLabels...)
	podDying         = gaugeFamily("pod_memcg_dying_cgroups", "Dying descendant cgroups of the pod cgroup (v2: cgroup.stat nr_dying_descendants).", podLabels...)
	ctrLimit         = gaugeFamily("container_memory_limit_bytes", "Memory limit of the container cgroup (v1: memory.limit_in_bytes, v2: memory.max); absent when unlimited.", containerLabels...)
	ctrUsage         = gaugeFamily("container_memory_usage_bytes", "Memory charged to the container cgroup (v1: memory.usage_in_bytes, v2: memory.current).", containerLabels...)
	ctrWorkingSet    = gaugeFamily("container_memory_working_set_bytes", "Usage minus inactive file pages of the container cgroup (v1: total_inactive_file, v2: inactive_file).", containerLabels...)
	ctrShmem         = gaugeFamily("container_memory_shmem_bytes", "tmpfs and shared memory pages charged to the container cgroup (v1: memory.stat total_shmem, v2: shmem).", containerLabels...)
	ctrKernel        = gaugeFamily("container_memory_kernel_bytes", "Kernel memory charged to the container cgroup (v1: memory.kmem.usage_in_bytes, v2: memory.stat kernel).", containerLabels...)
	ctrOOMKills      = counterFamily("container_oom_kills_total", "Processes of the container killed by the memcg OOM killer (v1: memory.oom_control oom_kill, v2: memory.events oom_kill).", containerLabels...)
	ctrLimitHits     = counterFamily("container_memory_limit_hits_total", "Times the container cgroup hit its memory limit (v1: memory.failcnt, v2: memory.events max).", containerLabels...)
	shmSize          = gaugeFamily("shm_size_bytes", "Size of a tmpfs the pod writes shared memory to (statfs f_blocks*f_frsize).", shmLabels...)
	shmUsed          = gaugeFamily("shm_used_bytes", "Bytes used in the tmpfs (statfs (f_blocks-f_bfree)*f_frsize).", shmLabels...)
	shmAvailable     = gaugeFamily("shm_available_bytes", "Bytes a writer can still add before ENOSPC (statfs f_bavail*f_frsize).", shmLabels...)
	shmSizeLimit     = gaugeFamily("shm_size_limit_bytes", "emptyDir sizeLimit from the pod spec; the kubelet evicts the pod when usage passes it.", shmLabels...)
	shmHeadroom      = gaugeFamily("shm_headroom_bytes", "Bytes a writer can still add to this shm before the named limit: tmpfs (ENOSPC), memcg (OOM kill: pod limit minus working set), eviction (sizeLimit minus used).", limitLabels...)
	shmBinding       = gaugeFamily("shm_binding_limit", "1 on the limit a writer to this shm hits first, 0 on the others.", limitLabels...)
	nodeMemcgs       = gaugeFamily("node_memcg_cgroups", "Memory cgroups on the node: live directories, and dying ones (v1: /proc/cgroups num_cgroups minus live, v2: root cgroup.stat nr_dying_descendants).", "state")
	nodeKmemLimited  = gaugeFamily("node_kmem_limited_cgroups", "Pod and container cgroups with a v1 memory.kmem.limit_in_bytes set: the 3.10-era memcg leak trigger.")
	nodeIDHeadroom   = gaugeFamily("node_memcg_id_headroom", "Memory cgroup ids left before 65535 on kernels before 4.7, which do not recycle ids of dying memcgs (/proc/cgroups num_cgroups).")
	nodeKernelInfo   = gaugeFamily("node_kernel_info", "Kernel release, cgroup mode and kmem accounting (on, off, nokmem from the kernel command line).", "release", "cgroup_mode", "kmem_accounting")
	orphanedPods     = gaugeFamily("orphaned_pod_cgroups", "Pod cgroups for which the API server lists no pod on this node, older than the orphan grace.")
	metadataSourceD  = gaugeFamily("metadata_source", "Where pod names come from now: api, kubelet_logs (degraded: /var/log/pods names) or none (uids only).", "source")
	stuckMounts      = gaugeFamily("shm_stuck_mounts", "Mounts whose statfs did not return within the timeout and are skipped until it does.")
	readErrors       = counterFamily("read_errors_total", "Per-field read errors (missing file, permission denied, malformed content) since the agent started.", "field")
	collectorSeconds = gaugeFamily("scrape_collector_duration_seconds", "Duration of a collection phase.", "collector")
	collectorSuccess = gaugeFamily("scrape_collector_success", "Whether a collection phase succeeded.", "collector")
	buildInfo        = gaugeFamily("build_info", "Build information of shmwatch.", "version", "revision", "goversion")
)

var metadataSources = []string{"api", "kubelet_logs", "none"}
var limits = []string{"tmpfs", "memcg", "eviction"}

// Exporter is the Prometheus view of the Collector: every scrape builds
// fresh constant metrics from one snapshot, so a deleted pod's series vanish
// at the next scrape and concurrent scrapes never race.
type Exporter struct {
	collector   *Collector
	timeout     time.Duration
	withSandbox bool
}

// NewExporter returns an Exporter. withSandbox also exports the sandbox
// (pause) container cgroups.
func NewExporter(c *Collector, timeout time.Duration, withSandbox bool) *Exporter {
	return &Exporter{collector: c, timeout: timeout, withSandbox: withSandbox}
}

// Describe sends nothing: the exporter is unchecked, since which series
// exist depends on the node.
func (e *Exporter) Describe(chan<- *prometheus.Desc) {}

// Collect sends one snapshot's metrics as constant metrics.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	e.write(constSink(ch))
}

// write sends the current snapshot's samples to out, or a failed phase
// when no collection finished in time.
func (e *Exporter) write(out sink) {
	snap, err := e.snapshot()
	if err != nil {
		writeFailedCollection(out)
		return
	}
	writeMetrics(out, snap, e.withSandbox)
}

// snapshot is the current collection, waiting at most the scrape timeout.
func (e *Exporter) snapshot() (*Snapshot, error) {
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	return e.collector.Collect(ctx)
}

func writeFailedCollection(out sink) {
	out.add(collectorSuccess, 0, "cgroup")
}

// writeMetrics sends one snapshot's samples to out, one family at a time
// in name order (familyWriters), so the text writer can stream each family
// as it ends instead of holding the whole output: 3.5 MB at 1000 pods,
// which doubled the heap goal and made RSS (docs/performance.md).
func writeMetrics(out sink, s *Snapshot, withSandbox bool) {
	for _, w := range familyWriters {
		w.write(out, w.f, s, withSandbox)
	}
}

// familyWriter says which samples of its family one snapshot has. The
// writers are the only place that decides which series exist.
type familyWriter struct {
	f     *family
	write writeFunc
}

type writeFunc func(out sink, f *family, s *Snapshot, withSandbox bool)

// familyWriters lists a writer for every family, sorted by family name
// (TestEveryFamilyHasOneWriter).
var familyWriters = sortedWriters(map[*family]writeFunc{
	podInfo:          writePodInfo,
	podLimit:         podValue(func(p *Pod) *uint64 { return p.Memory.Limit }),
	podUsage:         podValue(func(p *Pod) *uint64 { return p.Memory.Usage }),
	podWorkingSet:    podValue(func(p *Pod) *uint64 { return p.Memory.WorkingSet }),
	podShmem:         podValue(func(p *Pod) *uint64 { return p.Memory.Shmem }),
	podKernel:        podValue(func(p *Pod) *uint64 { return p.Memory.Kernel }),
	podDying:         podValue(func(p *Pod) *uint64 { return p.DyingMemcg }),
	ctrLimit:         containerValue(func(c *Container) *uint64 { return c.Memory.Limit }),
	ctrUsage:         containerValue(func(c *Container) *uint64 { return c.Memory.Usage }),
	ctrWorkingSet:    containerValue(func(c *Container) *uint64 { return c.Memory.WorkingSet }),
	ctrShmem:         containerValue(func(c *Container) *uint64 { return c.Memory.Shmem }),
	ctrKernel:        containerValue(func(c *Container) *uint64 { return c.Memory.Kernel }),
	ctrOOMKills:      containerValue(func(c *Container) *uint64 { return c.OOMKills }),
	ctrLimitHits:     containerValue(func(c *Container) *uint64 { return c.LimitHits }),
	shmSize:          shmValue(func(s *Shm) *uint64 { return s.Size }),
	shmUsed:          shmValue(func(s *Shm) *uint64 { return s.Used }),
	shmAvailable:     shmValue(func(s *Shm) *uint64 { return s.Available }),
	shmSizeLimit:     shmValue(func(s *Shm) *uint64 { return s.SizeLimit }),
	shmHeadroom:      shmLimitValue(func(s *Shm, lim string, h int64) float64 { return float64(h) }),
	shmBinding:       shmLimitValue(func(s *Shm, lim string, _ int64) float64 { return boolValue(s.Binding == lim) }),
	nodeMemcgs:       writeNodeMemcgs,
	nodeKmemLimited:  writeKmemLimited,
	nodeIDHeadroom:   writeIDHeadroom,
	nodeKernelInfo:   writeKernelInfo,
	orphanedPods:     writeOrphans,
	metadataSourceD:  writeMetadataSource,
	stuckMounts:      writeStuckMounts,
	readErrors:       writeReadErrors,
	collectorSeconds: writePhaseSeconds,
	collectorSuccess: writePhaseSuccess,
	buildInfo:        writeBuildInfo,

	podPressureWaiting:  podPressureValue(pressureWaiting),
	podPressureStalled:  podPressureValue(pressureStalled),
	nodePressureWaiting: nodePressureValue(pressureWaiting),
	nodePressureStalled: nodePressureValue(pressureStalled),
	podOOMKillsTotal:    writePodOOMKills,
	podOOMShmem:         lastKillValue(func(k *OOMKill) *uint64 { return k.Memory.Shmem }),
	podOOMUsage:         lastKillValue(func(k *OOMKill) *uint64 { return k.Memory.Usage }),
	podOOMTime:          writePodOOMTime,
	oomWatches:          writeOOMWatches,
	oomWatchFDs:         writeOOMWatchFDs,
	oomWatchFailures:    writeOOMWatchFailures,
})

func sortedWriters(m map[*family]writeFunc) []familyWriter {
	out := make([]familyWriter, 0, len(m))
	for f, w := range m {
		out = append(out, familyWriter{f: f, write: w})
	}
	slices.SortFunc(out, func(a, b familyWriter) int { return strings.Compare(a.f.name, b.f.name) })
	return out
}

// Label values are built in one slice per family and reused for every
// sample: sinks copy what they keep, and a slice per sample would be
// 24,000 allocations per scrape at 1000 pods.

func writePodInfo(out sink, f *family, s *Snapshot, _ bool) {
	l := make([]string, 4)
	for i := range s.Pods {
		p := &s.Pods[i]
		l[0], l[1], l[2], l[3] = p.Namespace, p.Name, p.UID, p.QOS
		out.add(f, 1, l...)
	}
}

// podValue writes one value of every pod that has it: absent, never 0.
func podValue(value func(p *Pod) *uint64) writeFunc {
	return func(out sink, f *family, s *Snapshot, _ bool) {
		l := make([]string, 3)
		for i := range s.Pods {
			p := &s.Pods[i]
			l[0], l[1], l[2] = p.Namespace, p.Name, p.UID
			optional(out, f, value(p), l)
		}
	}
}

// containerValue writes one value of every container that has it,
// sandboxes only when asked for.
func containerValue(value func(c *Container) *uint64) writeFunc {
	return func(out sink, f *family, s *Snapshot, withSandbox bool) {
		l := make([]string, 4)
		for i := range s.Pods {
			p := &s.Pods[i]
			l[0], l[1], l[2] = p.Namespace, p.Name, p.UID
			for j := range p.Containers {
				ct := &p.Containers[j]
				if ct.Sandbox && !withSandbox {
					continue
				}
				l[3] = ct.Name
				optional(out, f, value(ct), l)
			}
		}
	}
}

// eachMeasuredShm calls fn for every shm that statfs measured, with its
// labels in l[:5].
func eachMeasuredShm(s *Snapshot, l []string, fn func(sh *Shm)) {
	for i := range s.Pods {
		p := &s.Pods[i]
		for j := range p.Shm {
			sh := &p.Shm[j]
			if sh.Size == nil {
				continue
			}
			l[0], l[1], l[2], l[3], l[4] = p.Namespace, p.Name, p.UID, sh.Source, sh.Volume
			fn(sh)
		}
	}
}

func shmValue(value func(s *Shm) *uint64) writeFunc {
	return func(out sink, f *family, s *Snapshot, _ bool) {
		l := make([]string, 5)
		eachMeasuredShm(s, l, func(sh *Shm) { optional(out, f, value(sh), l) })
	}
}

// shmLimitValue writes one sample per limit with a headroom on each shm.
func shmLimitValue(value func(s *Shm, lim string, headroom int64) float64) writeFunc {
	return func(out sink, f *family, s *Snapshot, _ bool) {
		l := make([]string, 6)
		eachMeasuredShm(s, l, func(sh *Shm) {
			for _, lim := range limits {
				if h, ok := sh.Headroom[lim]; ok {
					l[5] = lim
					out.add(f, value(sh, lim, h), l...)
				}
			}
		})
	}
}

func writeNodeMemcgs(out sink, f *family, s *Snapshot, _ bool) {
	optional(out, f, s.Node.Memcg.Live, []string{"live"})
	optional(out, f, s.Node.Memcg.Dying, []string{"dying"})
}

func writeKmemLimited(out sink, f *family, s *Snapshot, _ bool) {
	if n := &s.Node; n.CgroupMode == "v1" || n.CgroupMode == "hybrid" {
		out.add(f, float64(n.KmemLimitedCgroups))
	}
}

func writeIDHeadroom(out sink, f *family, s *Snapshot, _ bool) {
	if h := s.Node.Memcg.IDHeadroom; h != nil {
		out.add(f, float64(*h))
	}
}

func writeKernelInfo(out sink, f *family, s *Snapshot, _ bool) {
	out.add(f, 1, s.Node.Kernel, s.Node.CgroupMode, s.Node.KmemAccounting)
}

func writeOrphans(out sink, f *family, s *Snapshot, _ bool) {
	if s.OrphansChecked { // without an authoritative pod list the count is unknown, not 0
		out.add(f, float64(len(s.Orphans)))
	}
}

func writeMetadataSource(out sink, f *family, s *Snapshot, _ bool) {
	for _, src := range metadataSources {
		out.add(f, boolValue(s.Node.MetadataSource == src), src)
	}
}

func writeStuckMounts(out sink, f *family, s *Snapshot, _ bool) {
	out.add(f, float64(len(s.StuckMounts)))
}

func writeReadErrors(out sink, f *family, s *Snapshot, _ bool) {
	fields := make([]string, 0, len(s.ReadErrorTotals))
	for field := range s.ReadErrorTotals {
		fields = append(fields, field)
	}
	slices.Sort(fields) // map order is random; the text writer keeps this order
	for _, field := range fields {
		out.add(f, float64(s.ReadErrorTotals[field]), field)
	}
}

func writePhaseSeconds(out sink, f *family, s *Snapshot, _ bool) {
	for _, ph := range s.Phases {
		out.add(f, ph.Duration.Seconds(), ph.Name)
	}
}

func writePhaseSuccess(out sink, f *family, s *Snapshot, _ bool) {
	for _, ph := range s.Phases {
		out.add(f, boolValue(ph.Err == nil), ph.Name)
	}
}

func writeBuildInfo(out sink, f *family, _ *Snapshot, _ bool) {
	out.add(f, 1, Version, Revision, runtime.Version())
}

// optional adds a sample only when the kernel gave the value: absent, never 0.
func optional(out sink, f *family, v *uint64, labelValues []string) {
	if v != nil {
		out.add(f, float64(*v), labelValues...)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

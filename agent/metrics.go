package agent

import (
	"context"
	"runtime"
	"slices"
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

func writeMetrics(out sink, s *Snapshot, withSandbox bool) {
	for i := range s.Pods {
		writePod(out, &s.Pods[i], withSandbox)
	}
	writeNode(out, s)
	fields := make([]string, 0, len(s.ReadErrorTotals))
	for f := range s.ReadErrorTotals {
		fields = append(fields, f)
	}
	slices.Sort(fields) // map order is random; the text writer keeps this order
	for _, f := range fields {
		out.add(readErrors, float64(s.ReadErrorTotals[f]), f)
	}
	for _, ph := range s.Phases {
		out.add(collectorSeconds, ph.Duration.Seconds(), ph.Name)
		out.add(collectorSuccess, boolValue(ph.Err == nil), ph.Name)
	}
	out.add(buildInfo, 1, Version, Revision, runtime.Version())
}

func writePod(out sink, p *Pod, withSandbox bool) {
	l := []string{p.Namespace, p.Name, p.UID}
	out.add(podInfo, 1, p.Namespace, p.Name, p.UID, p.QOS)
	writeMemory(out, podMemory, &p.Memory, l)
	optional(out, podDying, p.DyingMemcg, l)
	cl := []string{p.Namespace, p.Name, p.UID, ""}
	for i := range p.Containers {
		ct := &p.Containers[i]
		if ct.Sandbox && !withSandbox {
			continue
		}
		cl[3] = ct.Name // sinks copy what they keep
		writeMemory(out, containerMemory, &ct.Memory, cl)
		optional(out, ctrOOMKills, ct.OOMKills, cl)
		optional(out, ctrLimitHits, ct.LimitHits, cl)
	}
	for i := range p.Shm {
		writeShm(out, p, &p.Shm[i])
	}
}

// memoryFamilies are the families of one cgroup's Memory, pod or container.
type memoryFamilies struct{ limit, usage, workingSet, shmem, kernel *family }

var (
	podMemory       = memoryFamilies{podLimit, podUsage, podWorkingSet, podShmem, podKernel}
	containerMemory = memoryFamilies{ctrLimit, ctrUsage, ctrWorkingSet, ctrShmem, ctrKernel}
)

func writeMemory(out sink, f memoryFamilies, m *Memory, labelValues []string) {
	optional(out, f.limit, m.Limit, labelValues)
	optional(out, f.usage, m.Usage, labelValues)
	optional(out, f.workingSet, m.WorkingSet, labelValues)
	optional(out, f.shmem, m.Shmem, labelValues)
	optional(out, f.kernel, m.Kernel, labelValues)
}

func writeShm(out sink, p *Pod, s *Shm) {
	if s.Size == nil {
		return
	}
	l := []string{p.Namespace, p.Name, p.UID, s.Source, s.Volume, ""}
	optional(out, shmSize, s.Size, l[:5])
	optional(out, shmUsed, s.Used, l[:5])
	optional(out, shmAvailable, s.Available, l[:5])
	optional(out, shmSizeLimit, s.SizeLimit, l[:5])
	for _, lim := range limits {
		h, ok := s.Headroom[lim]
		if !ok {
			continue
		}
		l[5] = lim
		out.add(shmHeadroom, float64(h), l...)
		out.add(shmBinding, boolValue(s.Binding == lim), l...)
	}
}

func writeNode(out sink, s *Snapshot) {
	n := &s.Node
	optional(out, nodeMemcgs, n.Memcg.Live, []string{"live"})
	optional(out, nodeMemcgs, n.Memcg.Dying, []string{"dying"})
	if n.Memcg.IDHeadroom != nil {
		out.add(nodeIDHeadroom, float64(*n.Memcg.IDHeadroom))
	}
	if n.CgroupMode == "v1" || n.CgroupMode == "hybrid" {
		out.add(nodeKmemLimited, float64(n.KmemLimitedCgroups))
	}
	out.add(nodeKernelInfo, 1, n.Kernel, n.CgroupMode, n.KmemAccounting)
	if s.OrphansChecked { // without an authoritative pod list the count is unknown, not 0
		out.add(orphanedPods, float64(len(s.Orphans)))
	}
	for _, src := range metadataSources {
		out.add(metadataSourceD, boolValue(n.MetadataSource == src), src)
	}
	out.add(stuckMounts, float64(len(s.StuckMounts)))
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

package agent

import (
	"context"
	"runtime"
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

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
}

var (
	podInfo          = desc("pod_info", "Pod cgroups found under the kubelet's cgroup root; qos from the cgroup parent.", append(podLabels, "qos")...)
	podLimit         = desc("pod_memory_limit_bytes", "Memory limit of the pod cgroup (v1: memory.limit_in_bytes, v2: memory.max); absent when unlimited.", podLabels...)
	podUsage         = desc("pod_memory_usage_bytes", "Memory charged to the pod cgroup (v1: memory.usage_in_bytes, v2: memory.current).", podLabels...)
	podWorkingSet    = desc("pod_memory_working_set_bytes", "Usage minus inactive file pages, as the kubelet computes it (v1: memory.stat total_inactive_file, v2: inactive_file).", podLabels...)
	podShmem         = desc("pod_memory_shmem_bytes", "tmpfs and shared memory pages charged to the pod cgroup (v1: memory.stat total_shmem, v2: memory.stat shmem).", podLabels...)
	podKernel        = desc("pod_memory_kernel_bytes", "Kernel memory charged to the pod cgroup (v1: memory.kmem.usage_in_bytes, v2: memory.stat kernel).", podLabels...)
	podDying         = desc("pod_memcg_dying_cgroups", "Dying descendant cgroups of the pod cgroup (v2: cgroup.stat nr_dying_descendants).", podLabels...)
	ctrLimit         = desc("container_memory_limit_bytes", "Memory limit of the container cgroup (v1: memory.limit_in_bytes, v2: memory.max); absent when unlimited.", containerLabels...)
	ctrUsage         = desc("container_memory_usage_bytes", "Memory charged to the container cgroup (v1: memory.usage_in_bytes, v2: memory.current).", containerLabels...)
	ctrWorkingSet    = desc("container_memory_working_set_bytes", "Usage minus inactive file pages of the container cgroup (v1: total_inactive_file, v2: inactive_file).", containerLabels...)
	ctrShmem         = desc("container_memory_shmem_bytes", "tmpfs and shared memory pages charged to the container cgroup (v1: memory.stat total_shmem, v2: shmem).", containerLabels...)
	ctrKernel        = desc("container_memory_kernel_bytes", "Kernel memory charged to the container cgroup (v1: memory.kmem.usage_in_bytes, v2: memory.stat kernel).", containerLabels...)
	ctrOOMKills      = desc("container_oom_kills_total", "Processes of the container killed by the memcg OOM killer (v1: memory.oom_control oom_kill, v2: memory.events oom_kill).", containerLabels...)
	ctrLimitHits     = desc("container_memory_limit_hits_total", "Times the container cgroup hit its memory limit (v1: memory.failcnt, v2: memory.events max).", containerLabels...)
	shmSize          = desc("shm_size_bytes", "Size of a tmpfs the pod writes shared memory to (statfs f_blocks*f_frsize).", shmLabels...)
	shmUsed          = desc("shm_used_bytes", "Bytes used in the tmpfs (statfs (f_blocks-f_bfree)*f_frsize).", shmLabels...)
	shmAvailable     = desc("shm_available_bytes", "Bytes a writer can still add before ENOSPC (statfs f_bavail*f_frsize).", shmLabels...)
	shmSizeLimit     = desc("shm_size_limit_bytes", "emptyDir sizeLimit from the pod spec; the kubelet evicts the pod when usage passes it.", shmLabels...)
	shmHeadroom      = desc("shm_headroom_bytes", "Bytes a writer can still add to this shm before the named limit: tmpfs (ENOSPC), memcg (OOM kill: pod limit minus working set), eviction (sizeLimit minus used).", limitLabels...)
	shmBinding       = desc("shm_binding_limit", "1 on the limit a writer to this shm hits first, 0 on the others.", limitLabels...)
	nodeMemcgs       = desc("node_memcg_cgroups", "Memory cgroups on the node: live directories, and dying ones (v1: /proc/cgroups num_cgroups minus live, v2: root cgroup.stat nr_dying_descendants).", "state")
	nodeKmemLimited  = desc("node_kmem_limited_cgroups", "Pod and container cgroups with a v1 memory.kmem.limit_in_bytes set: the 3.10-era memcg leak trigger.")
	nodeIDHeadroom   = desc("node_memcg_id_headroom", "Memory cgroup ids left before 65535 on kernels before 4.7, which do not recycle ids of dying memcgs (/proc/cgroups num_cgroups).")
	nodeKernelInfo   = desc("node_kernel_info", "Kernel release, cgroup mode and kmem accounting (on, off, nokmem from the kernel command line).", "release", "cgroup_mode", "kmem_accounting")
	orphanedPods     = desc("orphaned_pod_cgroups", "Pod cgroups for which the API server lists no pod on this node, older than the orphan grace.")
	metadataSourceD  = desc("metadata_source", "Where pod names come from now: api, kubelet_logs (degraded: /var/log/pods names) or none (uids only).", "source")
	stuckMounts      = desc("shm_stuck_mounts", "Mounts whose statfs did not return within the timeout and are skipped until it does.")
	readErrors       = desc("read_errors_total", "Per-field read errors (missing file, permission denied, malformed content) since the agent started.", "field")
	collectorSeconds = desc("scrape_collector_duration_seconds", "Duration of a collection phase.", "collector")
	collectorSuccess = desc("scrape_collector_success", "Whether a collection phase succeeded.", "collector")
	buildInfo        = desc("build_info", "Build information of shmwatch.", "version", "revision", "goversion")
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

// Collect sends one snapshot's metrics.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	snap, err := e.collector.Collect(ctx)
	if err != nil {
		failedCollection{}.Collect(ch)
		return
	}
	writeMetrics(ch, snap, e.withSandbox)
}

func writeMetrics(ch chan<- prometheus.Metric, s *Snapshot, withSandbox bool) {
	for i := range s.Pods {
		writePod(ch, &s.Pods[i], withSandbox)
	}
	writeNode(ch, s)
	for f, v := range s.ReadErrorTotals {
		ch <- prometheus.MustNewConstMetric(readErrors, prometheus.CounterValue, float64(v), f)
	}
	for _, ph := range s.Phases {
		ch <- prometheus.MustNewConstMetric(collectorSeconds, prometheus.GaugeValue, ph.Duration.Seconds(), ph.Name)
		ch <- prometheus.MustNewConstMetric(collectorSuccess, prometheus.GaugeValue, boolValue(ph.Err == nil), ph.Name)
	}
	ch <- prometheus.MustNewConstMetric(buildInfo, prometheus.GaugeValue, 1, Version, Revision, runtime.Version())
}

func writePod(ch chan<- prometheus.Metric, p *Pod, withSandbox bool) {
	l := []string{p.Namespace, p.Name, p.UID}
	ch <- prometheus.MustNewConstMetric(podInfo, prometheus.GaugeValue, 1, append(l, p.QOS)...)
	gauge(ch, podLimit, p.Memory.Limit, l)
	gauge(ch, podUsage, p.Memory.Usage, l)
	gauge(ch, podWorkingSet, p.Memory.WorkingSet, l)
	gauge(ch, podShmem, p.Memory.Shmem, l)
	gauge(ch, podKernel, p.Memory.Kernel, l)
	gauge(ch, podDying, p.DyingMemcg, l)
	for i := range p.Containers {
		ct := &p.Containers[i]
		if ct.Sandbox && !withSandbox {
			continue
		}
		cl := []string{p.Namespace, p.Name, p.UID, ct.Name}
		gauge(ch, ctrLimit, ct.Memory.Limit, cl)
		gauge(ch, ctrUsage, ct.Memory.Usage, cl)
		gauge(ch, ctrWorkingSet, ct.Memory.WorkingSet, cl)
		gauge(ch, ctrShmem, ct.Memory.Shmem, cl)
		gauge(ch, ctrKernel, ct.Memory.Kernel, cl)
		counter(ch, ctrOOMKills, ct.OOMKills, cl)
		counter(ch, ctrLimitHits, ct.LimitHits, cl)
	}
	for i := range p.Shm {
		writeShm(ch, p, &p.Shm[i])
	}
}

func writeShm(ch chan<- prometheus.Metric, p *Pod, s *Shm) {
	if s.Size == nil {
		return
	}
	l := []string{p.Namespace, p.Name, p.UID, s.Source, s.Volume}
	gauge(ch, shmSize, s.Size, l)
	gauge(ch, shmUsed, s.Used, l)
	gauge(ch, shmAvailable, s.Available, l)
	gauge(ch, shmSizeLimit, s.SizeLimit, l)
	for _, lim := range limits {
		h, ok := s.Headroom[lim]
		if !ok {
			continue
		}
		ll := append(l[:len(l):len(l)], lim)
		ch <- prometheus.MustNewConstMetric(shmHeadroom, prometheus.GaugeValue, float64(h), ll...)
		ch <- prometheus.MustNewConstMetric(shmBinding, prometheus.GaugeValue, boolValue(s.Binding == lim), ll...)
	}
}

func writeNode(ch chan<- prometheus.Metric, s *Snapshot) {
	n := &s.Node
	gauge(ch, nodeMemcgs, n.Memcg.Live, []string{"live"})
	gauge(ch, nodeMemcgs, n.Memcg.Dying, []string{"dying"})
	if n.Memcg.IDHeadroom != nil {
		ch <- prometheus.MustNewConstMetric(nodeIDHeadroom, prometheus.GaugeValue, float64(*n.Memcg.IDHeadroom))
	}
	if n.CgroupMode == "v1" || n.CgroupMode == "hybrid" {
		ch <- prometheus.MustNewConstMetric(nodeKmemLimited, prometheus.GaugeValue, float64(n.KmemLimitedCgroups))
	}
	ch <- prometheus.MustNewConstMetric(nodeKernelInfo, prometheus.GaugeValue, 1, n.Kernel, n.CgroupMode, n.KmemAccounting)
	if s.OrphansChecked { // without an authoritative pod list the count is unknown, not 0
		ch <- prometheus.MustNewConstMetric(orphanedPods, prometheus.GaugeValue, float64(len(s.Orphans)))
	}
	for _, src := range metadataSources {
		ch <- prometheus.MustNewConstMetric(metadataSourceD, prometheus.GaugeValue, boolValue(n.MetadataSource == src), src)
	}
	ch <- prometheus.MustNewConstMetric(stuckMounts, prometheus.GaugeValue, float64(len(s.StuckMounts)))
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v *uint64, labels []string) {
	if v != nil {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(*v), labels...)
	}
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v *uint64, labels []string) {
	if v != nil {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(*v), labels...)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

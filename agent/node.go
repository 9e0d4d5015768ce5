package agent

import (
	"fmt"
	"maps"
	"slices"

	"github.com/shmwatch/shmwatch/cgroupfs"
)

// reportNode puts the node's memcg leak signals in the snapshot, with the
// kmem-limited cgroups the reads found, and finds orphaned pod cgroups.
func (c *Collector) reportNode(col *collection, n cgroupfs.Node) {
	r := &col.snap.Node
	r.CgroupMode = string(n.Mode)
	r.Kernel = n.KernelRelease
	r.NoKmem = n.NoKmem
	r.MemoryPressure = pressureOf(n.PSI)
	r.MemTotal = n.MemTotal
	r.Memcg = Memcgs{Live: n.LiveMemcgs, Dying: n.DyingMemcgs, IDHeadroom: n.MemcgIDHeadroom}
	r.KmemLimitedCgroups = len(col.kmemLimits)
	if len(col.kmemLimits) > 0 {
		r.KmemLimitedPaths = slices.Sorted(maps.Keys(col.kmemLimits))
	}
	r.KmemAccounting = kmemAccounting(n.NoKmem, n.KernelRelease, len(col.kmemLimits))
	for _, e := range n.Errors {
		col.snap.ReadErrors[e.Field]++
		r.Errors = append(r.Errors, e.Error())
	}
	c.findOrphans(col)
	c.explainTmpfsSizes(col)
	c.collectKmem(col)
}

// nodeCountErr fails the node phase when neither memcg count could be read.
func nodeCountErr(n cgroupfs.Node) error {
	if len(n.Errors) > 0 && n.LiveMemcgs == nil && n.DyingMemcgs == nil {
		return fmt.Errorf("node memcg counts: %w", n.Errors[0])
	}
	return nil
}

// kmemAccounting says whether kernel memory is charged to memory cgroups.
// From 4.6 the kernel accounts it for every memcg unless booted with
// cgroup.memory=nokmem; before, only in cgroups with a kmem limit set —
// the 3.10 leak trigger.
func kmemAccounting(nokmem bool, release string, kmemLimited int) string {
	switch {
	case nokmem:
		return "nokmem"
	case newKernel(release, 4, 6) || kmemLimited > 0:
		return "on"
	default:
		return "off"
	}
}

// kmemLimitsSettable says whether a kernel can hold a v1 kmem limit. From
// 5.16 a write to memory.kmem.limit_in_bytes fails (EOPNOTSUPP); later
// kernels and their stable updates accept it and do nothing. Either way
// every cgroup reads unlimited (measured: 5.10 keeps a written 1Gi, 6.1 and
// 6.18 read back unlimited). A release that does not parse is settable.
func kmemLimitsSettable(release string) bool {
	return !newKernel(release, 5, 16)
}

// oldKernel says whether a release is known to be older than major.minor;
// a release that does not parse is never judged old.
func oldKernel(release string, major, minor int) bool {
	atLeast, ok := cgroupfs.KernelAtLeast(release, major, minor)
	return ok && !atLeast
}

// newKernel says whether a release is known to be major.minor or newer.
func newKernel(release string, major, minor int) bool {
	atLeast, ok := cgroupfs.KernelAtLeast(release, major, minor)
	return ok && atLeast
}

// findOrphans marks pod cgroups that no pod on this node owns. Only an
// authoritative source (the API, synced) can say a pod is absent; the grace
// covers the kubelet creating a cgroup before the API shows the pod bound,
// and removing it a little after the pod is gone.
func (c *Collector) findOrphans(col *collection) {
	if c.meta == nil || !c.meta.Known() {
		return
	}
	col.snap.OrphansChecked = true
	now := col.snap.Time
	for i := range col.snap.Pods {
		p := &col.snap.Pods[i]
		if p.UID == "" {
			continue
		}
		if _, ok := c.meta.Pod(p.UID); ok {
			continue
		}
		created, err := c.fs.Stat(p.Cgroup)
		if err != nil || now.Sub(created) < c.cfg.OrphanGrace {
			continue
		}
		p.Orphaned = true
		col.snap.Orphans = append(col.snap.Orphans, Orphan{UID: p.UID, Cgroup: p.Cgroup, Age: now.Sub(created).Seconds()})
	}
}

// forgetGone drops cached mounts of containers not seen in this collection.
func (c *Collector) forgetGone(col *collection) {
	for k, m := range c.mounts {
		if m.seen != col.epoch {
			delete(c.mounts, k)
		}
	}
}

package agent

import (
	"fmt"
	"slices"
	"strings"

	"github.com/shmwatch/shmwatch/cgroupfs"
)

// Kmem is a v1 memory cgroup's kernel-memory accounting, checked the way
// seed 004 checks it: is memory.kmem.slabinfo readable, or does it fail
// with EIO because no kmem limit switched accounting on for this memcg.
type Kmem struct {
	// Slabinfo is readable | eio | absent; omitted from 5.9, where the
	// file is always empty and is not read.
	Slabinfo string `json:"slabinfo,omitempty"`
	// AccountingActive is slabinfo readable (true) or EIO (false) on
	// kernels before 5.9, where that tells; null from 5.9, where the file
	// is always empty and accounting follows the node (kmem_accounting).
	AccountingActive *bool `json:"accounting_active"`
	// LimitBytes is memory.kmem.limit_in_bytes when set: the write that
	// turns accounting on (3.8 to about 4.5) and pins the memcg. Null from
	// 5.16, which keeps no kmem limit (kmemLimitsSettable).
	LimitBytes *uint64 `json:"limit_bytes"`
	// TopSlabCaches are the largest caches of the cgroup's slabinfo, where
	// the file has rows (kernels before 5.9).
	TopSlabCaches []cgroupfs.SlabCache `json:"top_slab_caches,omitempty"`
}

// topSlabCaches is how many slab caches a pod, container or node lists.
const topSlabCaches = 10

// collectKmem reports the kmem accounting of every pod and container
// cgroup and reads the node's /proc/slabinfo. It runs for scan and audit
// only: serve exports none of it (Config.SkipSlabinfo).
func (c *Collector) collectKmem(col *collection) {
	if c.cfg.SkipSlabinfo || c.fs.Hierarchy.Mode == cgroupfs.ModeV2 {
		return
	}
	release := col.snap.Node.Kernel
	for i := range col.snap.Pods {
		p, src := &col.snap.Pods[i], col.src[i]
		p.Kmem = c.cgroupKmem(col, p.Cgroup, release)
		paths := containerPaths(src)
		for j := range p.Containers {
			ct := &p.Containers[j]
			ct.Kmem = c.cgroupKmem(col, paths[ct.ID], release)
		}
	}
	caches, err := c.fs.NodeSlabinfo()
	if err != nil {
		col.snap.ReadErrors["slabinfo"]++
		col.snap.Node.Errors = append(col.snap.Node.Errors, "slabinfo: "+err.Error())
		return
	}
	col.snap.Node.TopSlabCaches = largestSlabCaches(caches)
}

// cgroupKmem is one cgroup's kmem accounting: its kmem limit as the
// memory read found it and, before 5.9, its memory.kmem.slabinfo. From 5.9
// the kernel keeps that file empty in every memcg, so it tells nothing and
// is not read.
func (c *Collector) cgroupKmem(col *collection, path, release string) *Kmem {
	if path == "" {
		return nil
	}
	k := &Kmem{}
	if limit, ok := col.kmemLimits[path]; ok {
		k.LimitBytes = &limit
	}
	if newKernel(release, 5, 9) {
		return k
	}
	state, caches, err := c.fs.CgroupSlabinfo(path)
	if err != nil {
		col.snap.ReadErrors["memory.kmem.slabinfo"]++
		return nil
	}
	k.Slabinfo, k.TopSlabCaches = state, largestSlabCaches(caches)
	if state != cgroupfs.SlabinfoAbsent {
		active := state == cgroupfs.SlabinfoReadable
		k.AccountingActive = &active
	}
	return k
}

// largestSlabCaches is the topSlabCaches largest caches by bytes held.
func largestSlabCaches(caches []cgroupfs.SlabCache) []cgroupfs.SlabCache {
	if len(caches) == 0 {
		return nil
	}
	sorted := slices.Clone(caches)
	slices.SortStableFunc(sorted, func(a, b cgroupfs.SlabCache) int {
		switch {
		case a.Bytes() > b.Bytes():
			return -1
		case a.Bytes() < b.Bytes():
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return sorted[:min(len(sorted), topSlabCaches)]
}

// kmemOn says whether a cgroup's kmem accounting was switched on by a
// write to it: a kmem limit, or (before 4.6, where nothing else does)
// a readable slabinfo.
func kmemOn(k *Kmem, release string) bool {
	if k == nil {
		return false
	}
	return k.LimitBytes != nil || oldKernel(release, 4, 6) && k.AccountingActive != nil && *k.AccountingActive
}

// kmemLayerFinding names the layer that turned kmem accounting on, as
// seed 004 explains the leak per pod: the kubelet (the pod cgroup: each
// pod deletion leaks 3 memcgs, pod, pause and app) or the runtime
// (container cgroups only: 2, pause and app), next to the id headroom.
func kmemLayerFinding(s *Snapshot) Finding {
	n := &s.Node
	if n.CgroupMode == "v2" {
		return Finding{}
	}
	var kubelet, runtime int
	for i := range s.Pods {
		p := &s.Pods[i]
		switch {
		case kmemOn(p.Kmem, n.Kernel):
			kubelet++
		case slices.ContainsFunc(p.Containers, func(c Container) bool { return kmemOn(c.Kmem, n.Kernel) }):
			runtime++
		}
	}
	if kubelet == 0 && runtime == 0 {
		return Finding{}
	}
	var parts []string
	if kubelet > 0 {
		parts = append(parts, fmt.Sprintf("the kubelet (pod cgroup) in %d pods: a kernel that leaks loses 3 memcgs per pod deletion (pod, pause, app)", kubelet))
	}
	if runtime > 0 {
		parts = append(parts, fmt.Sprintf("the runtime (container cgroups only) in %d pods: 2 per pod deletion (pause, app)", runtime))
	}
	headroom := "memcg ids are recycled on this kernel (>= 4.7)"
	if h := n.Memcg.IDHeadroom; h != nil {
		headroom = fmt.Sprintf("%d memcg ids left", *h)
	}
	f := Finding{Check: "kmem-layer", Severity: SeverityWarning,
		Message: "kmem accounting turned on by " + strings.Join(parts, "; by ") + "; " + headroom,
		Action:  "the kubelet: a kubelet built without the nokmem tag; the runtime: runc without nokmem; or boot with cgroup.memory=nokmem"}
	if oldKernel(n.Kernel, 4, 6) {
		f.Severity = SeverityCritical
	}
	return f
}

// slabCachesFinding lists what holds the node's kernel memory, so a node
// with thousands of dying memcgs shows where it went.
func slabCachesFinding(s *Snapshot) Finding {
	top := s.Node.TopSlabCaches
	if len(top) == 0 {
		return Finding{}
	}
	parts := make([]string, 0, 5)
	for _, c := range top[:min(len(top), 5)] {
		parts = append(parts, c.Name+" "+humanBytes(c.Bytes()))
	}
	return Finding{Check: "slab-caches", Severity: SeverityInfo,
		Message: "largest slab caches (/proc/slabinfo): " + strings.Join(parts, ", ")}
}

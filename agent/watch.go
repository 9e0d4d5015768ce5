package agent

import (
	"github.com/shmwatch/shmwatch/cgroupfs"
	"github.com/shmwatch/shmwatch/shmscan"
)

// What a watcher between collections reads: the last snapshot names the
// mounts and cgroups, and only their cheapest files are read again.

// Last returns the latest collection as the watchers between scrapes read
// it (watchView), nil before the first collection.
func (c *Collector) Last() *Snapshot { return c.last.Load() }

// watchView is what Last keeps of a snapshot: each pod's names, cgroup,
// memory and shm mounts. Containers, errors and the node's details are
// left for the collector to free: at 1000 pods the whole snapshot is
// megabytes of heap that would stay live between scrapes.
func watchView(s *Snapshot) *Snapshot {
	v := &Snapshot{Time: s.Time, Pods: make([]Pod, len(s.Pods))}
	for i := range s.Pods {
		p := &s.Pods[i]
		shm := make([]Shm, len(p.Shm))
		for j, m := range p.Shm {
			shm[j] = Shm{Source: m.Source, Volume: m.Volume, Device: m.Device, HostPath: m.HostPath,
				Size: m.Size, Used: m.Used, Available: m.Available, Containers: m.Containers}
		}
		v.Pods[i] = Pod{UID: p.UID, Namespace: p.Namespace, Name: p.Name, QOS: p.QOS, Cgroup: p.Cgroup,
			Memory: p.Memory, Shm: shm, Binding: p.Binding, Headroom: p.Headroom}
	}
	return v
}

// StatShm statfs's mounts the way a collection does: one worker, the
// statfs timeout and the stuck-mount set of the collections.
func (c *Collector) StatShm(ms []shmscan.Mount) []shmscan.HostStat { return c.shm.StatHosts(ms) }

// PodMemcg reads the limit, usage and working set of one pod cgroup (path
// as in Pod.Cgroup).
func (c *Collector) PodMemcg(path string) cgroupfs.Memory {
	return c.fs.MemoryFields(path, cgroupfs.FieldStat|cgroupfs.FieldLimit|cgroupfs.FieldUsage)
}

// MountsChanged says whether the host's mount table changed since the last
// collection read it (true when that cannot be told).
func (c *Collector) MountsChanged() bool {
	changed, err := c.shm.MountsChanged()
	return changed || err != nil
}

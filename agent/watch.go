package agent

import (
	"github.com/shmwatch/shmwatch/cgroupfs"
	"github.com/shmwatch/shmwatch/shmscan"
)

// What a watcher between collections reads: the last snapshot names the
// mounts and cgroups, and only their cheapest files are read again.

// Last returns the latest snapshot, nil before the first collection.
func (c *Collector) Last() *Snapshot { return c.last.Load() }

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

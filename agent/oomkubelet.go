package agent

import (
	"github.com/shmwatch/shmwatch/agent/podmeta"
)

// kubeletOOM counts a pod's OOM kills from the kubelet's container statuses
// when no kernel watch runs (cgroup v1 by default): one kill per container
// id whose termination the kubelet reports as OOMKilled. Only the last
// termination of each container is in the status, so two kills of one
// container between two collections count once.
type kubeletOOM struct {
	kills uint64
	seen  map[string]bool // killed container ids
	last  []OOMKill
}

const kubeletOOMKeep = 4

// joinKubeletOOM fills each pod's OOM record from the API's statuses,
// reading the attribution from this collection (up to a scrape interval
// after the kill; the kernel watch reads it at the kill).
func (c *Collector) joinKubeletOOM(col *collection) {
	if c.meta == nil || c.meta.Source() != podmeta.SourceAPI {
		return // only the API reports terminations; keep what was counted
	}
	if c.kubeletOOM == nil {
		c.kubeletOOM = map[string]*kubeletOOM{}
	}
	live := make(map[string]bool, len(col.snap.Pods))
	for i := range col.snap.Pods {
		p := &col.snap.Pods[i]
		meta, ok := c.podMeta(p.UID)
		if !ok {
			continue
		}
		live[p.UID] = true
		rec := c.kubeletOOM[p.UID]
		if rec == nil {
			rec = &kubeletOOM{seen: map[string]bool{}}
			c.kubeletOOM[p.UID] = rec
		}
		for _, k := range meta.OOMKilled {
			if k.ContainerID == "" || rec.seen[k.ContainerID] {
				continue
			}
			rec.seen[k.ContainerID] = true
			rec.kills++
			rec.last = append(rec.last, c.kubeletKill(p, k))
			if len(rec.last) > kubeletOOMKeep {
				rec.last = append(rec.last[:0:0], rec.last[len(rec.last)-kubeletOOMKeep:]...)
			}
		}
		p.OOM = &PodOOM{Kills: rec.kills, Last: append([]OOMKill(nil), rec.last...)}
	}
	for uid := range c.kubeletOOM {
		if !live[uid] {
			delete(c.kubeletOOM, uid)
		}
	}
}

// kubeletKill is one kill the kubelet reported, with the pod's memory and
// shm as this collection read them, handed to the OOM kill hook.
func (c *Collector) kubeletKill(p *Pod, k podmeta.OOMKilled) OOMKill {
	kill := c.kubeletRecord(p, k)
	if c.cfg.OnOOMKill != nil {
		go c.cfg.OnOOMKill(kill) // never holds up the collection
	}
	return kill
}

// kubeletLast is the kubelet's last OOMKilled terminations of a pod (at
// most kubeletOOMKeep), attributed now: for kills the kernel watch counted
// but did not see happen (before it began, e.g. in a one-shot scan). No
// hook: they are not new.
func (c *Collector) kubeletLast(p *Pod) []OOMKill {
	meta, ok := c.podMeta(p.UID)
	if !ok || c.meta.Source() != podmeta.SourceAPI {
		return nil
	}
	ks := meta.OOMKilled[max(0, len(meta.OOMKilled)-kubeletOOMKeep):]
	last := make([]OOMKill, 0, len(ks))
	for _, k := range ks {
		last = append(last, c.kubeletRecord(p, k))
	}
	return last
}

// kubeletRecord is the record of one kill the kubelet reported.
func (c *Collector) kubeletRecord(p *Pod, k podmeta.OOMKilled) OOMKill {
	kill := OOMKill{Time: k.FinishedAt, Source: "kubelet", Container: k.Container, ContainerID: k.ContainerID,
		PodUID: p.UID, Namespace: p.Namespace, Pod: p.Name}
	m := c.fs.MemoryFields(p.Cgroup, oomAttributionFields)
	kill.Memory = OOMMemory{Limit: m.Limit, Usage: m.Usage, Shmem: m.Shmem, Anon: m.Anon, File: m.File, Kernel: m.Kernel}
	for _, e := range m.Errors {
		kill.Errors = append(kill.Errors, e.Error())
	}
	kill.Shm = make([]OOMShm, 0, len(p.Shm))
	for _, s := range p.Shm {
		kill.Shm = append(kill.Shm, OOMShm{Source: s.Source, Volume: s.Volume, HostPath: s.HostPath, Size: s.Size, Used: s.Used, Error: s.Error})
	}
	return kill
}

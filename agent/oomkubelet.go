package agent

import (
	"context"
	"slices"

	"github.com/shmwatch/shmwatch/agent/podmeta"
	"github.com/shmwatch/shmwatch/shmscan"
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
// reading the attribution from this collection for kills KubeletOOMKilled
// did not record first.
func (c *Collector) joinKubeletOOM(col *collection) {
	if c.meta == nil || c.meta.Source() != podmeta.SourceAPI {
		return // only the API reports terminations; keep what was counted
	}
	c.kubeletMu.Lock()
	defer c.kubeletMu.Unlock()
	live := make(map[string]bool, len(col.snap.Pods))
	for i := range col.snap.Pods {
		p := &col.snap.Pods[i]
		meta, ok := c.podMeta(p.UID)
		if !ok {
			continue
		}
		live[p.UID] = true
		rec := c.recordKubeletKills(p, meta)
		p.OOM = &PodOOM{Kills: rec.kills, Last: append([]OOMKill(nil), rec.last...)}
	}
	for uid := range c.kubeletOOM {
		if !live[uid] {
			delete(c.kubeletOOM, uid)
		}
	}
}

// KubeletOOMKilled records the kills the kubelet reports for a pod as soon
// as the informer sees its status (podmeta.Config.OnOOMKilled): the pod's
// memcg and shm are read then, not at the next collection, and the OOM kill
// hook (events) fires at once. The pod's cgroup and mounts come from the
// last collection; for a pod it did not know (killed before any scrape
// saw it) a collection runs now and records the kill.
func (c *Collector) KubeletOOMKilled(uid string) {
	if c.kernelOOM.Load() || c.meta == nil || c.meta.Source() != podmeta.SourceAPI {
		return
	}
	snap := c.Last()
	if snap == nil {
		return // before the first collection, which records every kill
	}
	for i := range snap.Pods {
		if snap.Pods[i].UID != uid {
			continue
		}
		meta, ok := c.podMeta(uid)
		if !ok {
			return
		}
		p := snap.Pods[i] // the watch view is shared: work on a copy
		p.Shm = c.restatShm(p.Shm)
		c.kubeletMu.Lock()
		defer c.kubeletMu.Unlock()
		c.recordKubeletKills(&p, meta)
		return
	}
	_, _ = c.Collect(context.Background())
}

// restatShm is a copy of shm with each mount's size and use as statfs
// says now (a failed statfs leaves the collection's).
func (c *Collector) restatShm(shm []Shm) []Shm {
	out := slices.Clone(shm)
	if c.shm == nil {
		return out
	}
	var ms []shmscan.Mount
	var at []int
	for i, s := range out {
		if s.HostPath != "" {
			ms = append(ms, shmscan.Mount{Device: s.Device, HostPath: s.HostPath, Source: shmscan.Source(s.Source), Volume: s.Volume})
			at = append(at, i)
		}
	}
	for k, st := range c.shm.StatHosts(ms) {
		if st.Err == nil {
			size, used := st.Usage.SizeBytes, st.Usage.UsedBytes
			out[at[k]].Size, out[at[k]].Used = &size, &used
		}
	}
	return out
}

// recordKubeletKills counts the pod's killed containers not counted yet,
// each attributed now and handed to the hook; c.kubeletMu is held.
func (c *Collector) recordKubeletKills(p *Pod, meta podmeta.Pod) *kubeletOOM {
	if c.kubeletOOM == nil {
		c.kubeletOOM = map[string]*kubeletOOM{}
	}
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
	return rec
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

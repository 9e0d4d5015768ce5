package agent

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/shmwatch/shmwatch/agent/podmeta"
	"github.com/shmwatch/shmwatch/cgroupfs"
	"github.com/shmwatch/shmwatch/shmscan"
)

// collectShm measures every tmpfs each pod can write to: what its
// containers have at /dev/shm, and its memory emptyDirs mounted elsewhere.
// Mounts known from earlier scrapes are statfs'd at their host paths all
// at once (shmscan.StatHosts), then each pod gets its verdict.
func (c *Collector) collectShm(col *collection) error {
	if c.shm == nil {
		return nil
	}
	pending := make([]pendingStat, 0, len(col.snap.Pods))
	for i := range col.snap.Pods {
		pending = c.podShm(col, i, pending)
	}
	c.statPending(col, pending)
	for i := range col.snap.Pods {
		p := &col.snap.Pods[i]
		meta, _ := c.podMeta(p.UID)
		p.Shm = dropSandboxOnly(p.Shm)
		for j := range p.Shm {
			applyVerdict(&p.Shm[j], p, meta)
		}
		p.Binding, p.Headroom = podVerdict(p)
	}
	col.snap.StuckMounts = c.shm.Stuck()
	return nil
}

// resolveContainers re-reads the host mount table when it changed and
// resolves what is at the /dev/shm of each container seen for the first
// time, before any memory is read: a pause container found here is read
// only for its kmem limit (Config.SkipSandboxMemory) from the first pass
// on. The error of a container that cannot be resolved is kept for the
// shm phase to record (resolvedMount); the next collection tries again.
// Each container is resolved at most once a collection.
func (c *Collector) resolveContainers(col *collection, pods []cgroupfs.Pod) {
	if c.shm == nil {
		return
	}
	if err := c.shm.Refresh(); err != nil {
		// Without the host table sources are unknown, but statfs through
		// each container still measures the mounts.
		c.logOnce("refresh:"+err.Error(), "cannot read the host mount table", zap.Error(err))
		col.snap.ReadErrors["mountinfo"]++
	}
	for i := range pods {
		for _, ct := range pods[i].Containers {
			if _, ok := c.mounts[ct.Path]; ok {
				continue
			}
			if _, err := c.containerMount(ct.Path, col.epoch); err != nil {
				col.unresolved[ct.Path] = err
			}
		}
	}
}

// resolvedMount is what the containers phase found at a container's
// /dev/shm: the cached mount (seen by this collection), else the error that
// kept it from being resolved, else nothing (the container runs no process).
func (c *Collector) resolvedMount(col *collection, cgPath string) (cachedMount, error) {
	cm, ok := c.mounts[cgPath]
	if !ok {
		return cachedMount{}, col.unresolved[cgPath]
	}
	cm.seen = col.epoch
	c.mounts[cgPath] = cm
	return cm, nil
}

// pendingStat is a shm of a pod still to be statfs'd at its host path.
type pendingStat struct {
	pod, shm int // indexes in the snapshot's Pods and that pod's Shm
	mount    shmscan.Mount
}

// statPending statfs's the pending mounts in one batch and fills in their
// usage.
func (c *Collector) statPending(col *collection, pending []pendingStat) {
	mounts := make([]shmscan.Mount, len(pending))
	for i, ps := range pending {
		mounts[i] = ps.mount
	}
	for i, r := range c.shm.StatHosts(mounts) {
		p := &col.snap.Pods[pending[i].pod]
		setUsage(p, &p.Shm[pending[i].shm], r.Usage, r.Err)
	}
}

// podShm adds the pod's shm mounts, measured or pending, to its Shm.
func (c *Collector) podShm(col *collection, pod int, pending []pendingStat) []pendingStat {
	p, src := &col.snap.Pods[pod], col.src[pod]
	byDevice := map[string]int{} // device -> index in p.Shm
	paths := containerPaths(src)
	for i := range p.Containers {
		ct := &p.Containers[i]
		pending = c.containerShm(col, pod, ct, paths[ct.ID], byDevice, pending)
	}
	if p.UID != "" {
		for _, m := range c.shm.MemoryEmptyDirs(p.UID) {
			if _, dup := byDevice[m.Device]; dup {
				continue
			}
			byDevice[m.Device] = len(p.Shm)
			pending = append(pending, pendingStat{pod: pod, shm: len(p.Shm), mount: m})
			p.Shm = append(p.Shm, newShm(m))
		}
	}
	if len(p.Shm) == 0 {
		pending = c.sandboxShm(col, pod, src, pending)
	}
	return pending
}

// sandboxShm adds the runtime's shm of a pod in which no container showed
// a /dev/shm, as between the restarts of a crash loop: the runtime mounts
// it on the host for the sandbox (.../sandboxes/<sandbox id>/shm), so it
// outlives the containers and holds what they wrote, which an OOM kill's
// attribution must name.
func (c *Collector) sandboxShm(col *collection, pod int, src *cgroupfs.Pod, pending []pendingStat) []pendingStat {
	p := &col.snap.Pods[pod]
	for _, ct := range src.Containers {
		if m, ok := c.shm.RuntimeShm(ct.ID); ok {
			pending = append(pending, pendingStat{pod: pod, shm: len(p.Shm), mount: m})
			p.Shm = append(p.Shm, newShm(m))
			break
		}
	}
	return pending
}

// containerShm adds what one container has at /dev/shm to the pod, once
// per tmpfs: containers sharing one tmpfs share one Shm.
func (c *Collector) containerShm(col *collection, pod int, ct *Container, cgPath string, byDevice map[string]int, pending []pendingStat) []pendingStat {
	p := &col.snap.Pods[pod]
	cm, err := c.resolvedMount(col, cgPath)
	if err != nil {
		p.readErrs = append(p.readErrs, readError{field: "shm", path: cgPath, err: err})
		p.Errors = append(p.Errors, fmt.Sprintf("shm of container %s: %v", ct.Name, err))
		return pending
	}
	ct.Sandbox = ct.Sandbox || cm.sandbox
	if cm.mount == nil {
		return pending
	}
	if i, dup := byDevice[cm.mount.Device]; dup {
		if !ct.Sandbox {
			p.Shm[i].Containers = append(p.Shm[i].Containers, ct.Name)
			p.Shm[i].sandboxOnly = false
		}
		return pending
	}
	s := newShm(*cm.mount)
	switch {
	case cm.mount.HostPath != "":
		pending = append(pending, pendingStat{pod: pod, shm: len(p.Shm), mount: *cm.mount})
	default:
		u, err := c.statThroughContainer(cgPath)
		setUsage(p, &s, u, err)
	}
	if ct.Sandbox {
		// The runtime mounts the sandbox's shm in the pause container
		// too; only app containers make it a pod's shm. Keep it aside
		// so an app container sharing it joins it.
		s.sandboxOnly = true
	} else {
		s.Containers = []string{ct.Name}
	}
	byDevice[cm.mount.Device] = len(p.Shm)
	p.Shm = append(p.Shm, s)
	return pending
}

// dropSandboxOnly removes the shm that only the pause container has at
// /dev/shm: no app container can write it, so it is no pod's limit.
func dropSandboxOnly(shms []Shm) []Shm {
	kept := shms[:0]
	for _, s := range shms {
		if !s.sandboxOnly {
			kept = append(kept, s)
		}
	}
	return kept
}

// containerMount resolves what is at a container's /dev/shm through its
// processes and caches it for the container's lifetime. Resolving reads
// the container's mountinfo and measures nothing: a mount of the host
// table is measured with the others at its host path, once per pod
// however many containers share it.
func (c *Collector) containerMount(cgPath string, epoch uint64) (cachedMount, error) {
	pids, err := c.fs.Procs(cgPath)
	if err != nil {
		return cachedMount{}, fmt.Errorf("list processes of %s: %w", cgPath, err)
	}
	if len(pids) == 0 {
		return cachedMount{}, nil // not running: nothing to measure, not cached
	}
	if c.shm.IsPause(pids) {
		// A sandbox's /dev/shm is never a pod's shm by itself (see
		// dropSandboxOnly); an app container that shares it finds it
		// through its own mountinfo. Not reading the sandbox's saves a
		// third of a cold scan's mountinfo reads.
		cm := cachedMount{sandbox: true, seen: epoch}
		c.mounts[cgPath] = cm
		return cm, nil
	}
	m, ok, err := c.shm.ContainerShmMount(pids)
	if err != nil {
		return cachedMount{}, err
	}
	cm := cachedMount{seen: epoch}
	if ok {
		cm.mount = &m
	}
	c.mounts[cgPath] = cm
	return cm, nil
}

// statThroughContainer statfs's the /dev/shm of a container whose mount
// is not in the host table, through one of its processes.
func (c *Collector) statThroughContainer(cgPath string) (shmscan.Usage, error) {
	pids, err := c.fs.Procs(cgPath)
	if err != nil {
		return shmscan.Usage{}, fmt.Errorf("list processes of %s: %w", cgPath, err)
	}
	_, u, ok, err := c.shm.ContainerShm(pids)
	if err == nil && !ok {
		err = fmt.Errorf("container %s no longer has /dev/shm", cgPath)
	}
	return u, err
}

func newShm(m shmscan.Mount) Shm {
	return Shm{Source: string(m.Source), Volume: m.Volume, Device: m.Device, HostPath: m.HostPath}
}

// setUsage fills in a statfs of s, or its error.
func setUsage(p *Pod, s *Shm, u shmscan.Usage, err error) {
	if err != nil {
		p.readErrs = append(p.readErrs, readError{field: "statfs", path: s.Device + " " + s.HostPath, err: err})
		s.Error = err.Error()
		return
	}
	s.Size, s.Used, s.Available = usagePtrs(u)
}

func containerPaths(src *cgroupfs.Pod) map[string]string {
	paths := make(map[string]string, len(src.Containers))
	for _, ct := range src.Containers {
		paths[ct.ID] = ct.Path
	}
	return paths
}

// applyVerdict works out the headroom of every limit on one shm and the
// one that binds first.
func applyVerdict(s *Shm, p *Pod, meta podmeta.Pod) {
	if s.Used == nil {
		return
	}
	in := Inputs{
		Used: *s.Used, TmpfsAvailable: *s.Available,
		PodMemoryLimit: p.Memory.Limit, PodWorkingSet: p.Memory.WorkingSet,
	}
	if s.Source == string(shmscan.SourceEmptyDir) {
		for _, v := range meta.MemoryVolumes {
			if v.Name == s.Volume {
				s.SizeLimit = v.SizeLimit
				in.SizeLimit = v.SizeLimit
			}
		}
	}
	v := Bind(in)
	s.Headroom = make(map[string]int64, len(v.Headroom))
	for l, h := range v.Headroom {
		s.Headroom[string(l)] = h
	}
	s.Binding = string(v.Binding)
}

// podVerdict is the least headroom over the pod's shm mounts that an app
// container can write; with none, the memcg headroom alone.
func podVerdict(p *Pod) (string, *int64) {
	binding, headroom := memcgVerdict(p.Memory)
	for _, s := range p.Shm {
		if s.Binding == "" {
			continue
		}
		h := s.Headroom[s.Binding]
		if headroom == nil || h < *headroom || binding == string(LimitMemcg) && h <= *headroom {
			binding, headroom = s.Binding, &h
		}
	}
	return binding, headroom
}

// memcgVerdict is the headroom of a pod's memory cgroup: limit minus
// working set, or nothing when the pod has no limit.
func memcgVerdict(m Memory) (string, *int64) {
	if m.Limit == nil || m.WorkingSet == nil {
		return "", nil
	}
	h := int64(*m.Limit) - int64(*m.WorkingSet)
	return string(LimitMemcg), &h
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"path"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/shmwatch/shmwatch/cgroupfs"
	"github.com/shmwatch/shmwatch/cgroupfs/oomwatch"
	"github.com/shmwatch/shmwatch/shmscan"
)

// OOMConfig configures an OOMWatch.
type OOMConfig struct {
	// MaxWatches bounds the kernel watches (v1: one fd each). Default 16384.
	MaxWatches int
	// Keep is how many kills per pod keep their attribution. Default 4.
	Keep int
	// OnKill, if set, is called once per new kill, in its own goroutine
	// and in order; a receiver slower than the kills loses the excess
	// (counted by DroppedNotifications), never the kill itself.
	OnKill func(OOMKill)
}

// OOMWatch records the OOM kills of every pod cgroup as the kernel signals
// them: on v2 the pod cgroup's hierarchical memory.events, on v1 each
// container cgroup's memory.oom_control through an eventfd (root and a
// writable cgroup mount). Collections tell it which pods exist (Sync); a
// new container cgroup is watched as soon as it is created.
type OOMWatch struct {
	fs  *cgroupfs.FS
	shm *shmscan.Scanner
	cfg OOMConfig
	log *zap.Logger
	w   *oomwatch.Watcher
	v2  bool

	mu       sync.Mutex
	pods     map[string]*oomPod // by pod cgroup path
	cgroups  map[string]*oomCgroup
	checking map[string]bool // cgroups with a counter check in flight

	queue      chan OOMKill
	dropped    atomic.Uint64
	watchFails atomic.Uint64
}

// oomPod is what the watch keeps of one pod cgroup.
type oomPod struct {
	path, uid, namespace, name string
	kills                      uint64
	last                       []OOMKill
	mounts                     []shmscan.Mount // the pod's host-visible shm mounts, from the last collection
	names                      []idName        // the containers of the last collection
}

type idName struct{ id, name string }

// containerName is the name of the container with the given id; "" when
// the last collection did not see it.
func (p *oomPod) containerName(id string) string {
	for _, c := range p.names {
		if c.id == id {
			return c.name
		}
	}
	return ""
}

// oomCgroup is one watched cgroup: the pod's on v2, a container's on v1.
type oomCgroup struct {
	pod          *oomPod
	path         string // relative to MemoryRoot
	containerID  string
	kills, group uint64 // counters at the last read
	// hasGroup is true when the kernel has v2 oom_group_kill (5.17+).
	hasGroup bool
	// recorded is when the last record of this cgroup was made.
	recorded time.Time
}

// NewOOMWatch makes the kernel watcher of fs's hierarchy.
func NewOOMWatch(fs *cgroupfs.FS, shm *shmscan.Scanner, cfg OOMConfig, log *zap.Logger) (*OOMWatch, error) {
	if cfg.MaxWatches <= 0 {
		cfg.MaxWatches = 16384
	}
	if cfg.Keep <= 0 {
		cfg.Keep = 4
	}
	if log == nil {
		log = zap.NewNop()
	}
	v2 := fs.Hierarchy.Mode == cgroupfs.ModeV2
	kind := oomwatch.KindEventfd
	if v2 {
		kind = oomwatch.KindInotify
	}
	w, err := oomwatch.New(kind, fs.Hierarchy.MemoryRoot, cfg.MaxWatches)
	if err != nil {
		return nil, fmt.Errorf("oom watch: %w", err)
	}
	return &OOMWatch{fs: fs, shm: shm, cfg: cfg, log: log, w: w, v2: v2,
		pods: map[string]*oomPod{}, cgroups: map[string]*oomCgroup{}, checking: map[string]bool{},
		queue: make(chan OOMKill, 64)}, nil
}

// Run watches until ctx is done.
func (o *OOMWatch) Run(ctx context.Context) error {
	go o.dispatch(ctx)
	err := o.w.Run(ctx, o.handle)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (o *OOMWatch) dispatch(ctx context.Context) {
	for {
		select {
		case k := <-o.queue:
			if o.cfg.OnKill != nil {
				o.cfg.OnKill(k)
			}
		case <-ctx.Done():
			return
		}
	}
}

// Kind is the kernel interface in use.
func (o *OOMWatch) Kind() string { return string(o.w.Kind()) }

// Watches and FDs are the kernel watches and file descriptors held now.
func (o *OOMWatch) Watches() int { return o.w.Watches() }
func (o *OOMWatch) FDs() int     { return o.w.FDs() }

// WatchFailures counts watches that could not be set up (limit reached,
// cgroup gone, no permission); DroppedNotifications counts OnKill calls
// lost to a slow receiver.
func (o *OOMWatch) WatchFailures() uint64        { return o.watchFails.Load() }
func (o *OOMWatch) DroppedNotifications() uint64 { return o.dropped.Load() }

// Sync follows the pods of one collection: it watches new pods and
// containers and forgets pods whose cgroup is no longer listed. mounts
// are each pod's shm mounts with a host path, by pod cgroup path.
func (o *OOMWatch) Sync(pods []Pod, src []*cgroupfs.Pod, mounts map[string][]shmscan.Mount) {
	o.mu.Lock()
	defer o.mu.Unlock()
	seen := make(map[string]bool, len(pods))
	for i := range pods {
		p := o.pod(src[i])
		p.uid, p.namespace, p.name, p.mounts = pods[i].UID, pods[i].Namespace, pods[i].Name, mounts[p.path]
		p.names = p.names[:0]
		for _, ct := range pods[i].Containers {
			p.names = append(p.names, idName{id: ct.ID, name: ct.Name})
		}
		seen[p.path] = true
		o.follow(p, src[i].Containers)
	}
	for path, p := range o.pods {
		if !seen[path] {
			o.forget(p)
		}
	}
}

func (o *OOMWatch) pod(cp *cgroupfs.Pod) *oomPod {
	p, ok := o.pods[cp.Path]
	if !ok {
		p = &oomPod{path: cp.Path}
		o.pods[cp.Path] = p
	}
	return p
}

// follow sets up the watches of one pod: v2 its own memory.events, v1 its
// container cgroups and the creation of new ones.
func (o *OOMWatch) follow(p *oomPod, ctrs []cgroupfs.Container) {
	if o.v2 {
		o.watch(p, p.path, "")
		return
	}
	if err := o.w.WatchChildren(p.path); err != nil {
		o.watchFailed(p.path, err)
	}
	for _, ct := range ctrs {
		o.watch(p, ct.Path, ct.ID)
	}
}

// watch starts watching one cgroup; the kills its counters hold already
// are the pod's (a lifetime count), without attribution.
func (o *OOMWatch) watch(p *oomPod, cgPath, containerID string) {
	if _, ok := o.cgroups[cgPath]; ok {
		return
	}
	if err := o.w.Watch(cgPath); err != nil {
		o.watchFailed(cgPath, err)
		return
	}
	cg := &oomCgroup{pod: p, path: cgPath, containerID: containerID}
	o.cgroups[cgPath] = cg
	kills, group, hasGroup, ok := o.counters(cgPath)
	if ok {
		cg.kills, cg.group, cg.hasGroup = kills, group, hasGroup
		p.kills += o.killCount(cg, kills, group)
	}
}

func (o *OOMWatch) watchFailed(cgPath string, err error) {
	o.watchFails.Add(1)
	o.log.Debug("cannot watch cgroup for OOM kills", zap.String("cgroup", cgPath), zap.Error(err))
}

// killCount is what one settled rise of the counters adds to a pod's
// kills: whole containers killed where the kernel counts them (v2
// oom_group_kill; memory.oom.group, which the kubelet sets on v2), else
// processes killed (v1, and v2 without memory.oom.group). A v2 kernel
// before 5.17 has no oom_group_kill and counts a group kill's first victim
// twice in oom_kill, so there one rise is one kill.
func (o *OOMWatch) killCount(cg *oomCgroup, kills, group uint64) uint64 {
	switch {
	case !o.v2:
		return kills
	case group > 0:
		return group
	case !cg.hasGroup && kills > 0:
		return 1 // at first sight: the kernel cannot say how many
	}
	return kills
}

func (o *OOMWatch) forget(p *oomPod) {
	o.w.UnwatchChildren(p.path)
	for path, cg := range o.cgroups {
		if cg.pod == p {
			o.w.Unwatch(path)
			delete(o.cgroups, path)
		}
	}
	delete(o.pods, p.path)
}

// counters reads a cgroup's oom_kill and oom_group_kill (hasGroup: the
// kernel has the field).
func (o *OOMWatch) counters(cgPath string) (kills, group uint64, hasGroup, ok bool) {
	m := o.fs.MemoryFields(cgPath, cgroupfs.FieldEvents)
	if m.OOMKills == nil {
		return 0, 0, false, false
	}
	if m.OOMGroupKills != nil {
		group, hasGroup = *m.OOMGroupKills, true
	}
	return *m.OOMKills, group, hasGroup, true
}

// handle runs in the watcher's goroutine for each wake-up.
func (o *OOMWatch) handle(ev oomwatch.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case ev.Created != "":
		o.created(ev.Dir, ev.Created)
	case ev.Gone:
		delete(o.cgroups, ev.Dir)
		if p, ok := o.pods[ev.Dir]; ok && o.v2 {
			o.forget(p)
		}
	default:
		if cg, ok := o.cgroups[ev.Dir]; ok && !o.checking[ev.Dir] {
			o.checking[ev.Dir] = true
			go o.check(cg)
		}
	}
}

// created watches a new container cgroup of a watched pod (v1).
func (o *OOMWatch) created(podPath, name string) {
	p, ok := o.pods[podPath]
	if !ok {
		return
	}
	if id, _, ok := cgroupfs.ParseContainerCgroupName(name); ok {
		o.watch(p, path.Join(podPath, name), id)
	}
}

// A wake-up's counters may not have risen yet: v1 signals the eventfd when
// the OOM starts, before the victim is chosen (microseconds before the
// kill is counted), and v2's notification of the kill can merge with the
// one of the OOM before it. check re-reads without sleeping for checkSpin,
// since a runtime can remove a dead container's cgroup a few milliseconds
// after the kill, then a few times more slowly, then gives up: an OOM can
// end without a kill (the victim was exiting already).
const checkSpin = 2 * time.Millisecond

var checkDelays = []time.Duration{time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond, 100 * time.Millisecond}

// check re-reads one cgroup's counters after a wake-up and records what
// rose. It never counts wake-ups.
func (o *OOMWatch) check(cg *oomCgroup) {
	defer func() {
		o.mu.Lock()
		delete(o.checking, cg.path)
		o.mu.Unlock()
	}()
	// ok false: gone (its kills were read before, or the cgroup died first).
	for start := time.Now(); time.Since(start) < checkSpin; runtime.Gosched() {
		kills, group, ok := o.settled(cg.path)
		if !ok || o.rose(cg, kills, group) {
			return
		}
	}
	for _, d := range checkDelays {
		time.Sleep(d)
		kills, group, ok := o.settled(cg.path)
		if !ok || o.rose(cg, kills, group) {
			return
		}
	}
}

// settled reads the counters; on v2 it re-reads until two reads 1 ms apart
// agree, because a group kill counts the first victim's oom_kill, then
// oom_group_kill, then the other members' oom_kill: a read in between
// would count one kill as a process kill and again as a group kill. v1 has
// no group kills, and its container cgroup may be removed milliseconds
// after the kill, so it takes the first read.
func (o *OOMWatch) settled(cgPath string) (kills, group uint64, ok bool) {
	kills, group, _, ok = o.counters(cgPath)
	for i := 0; ok && o.v2 && i < 20; i++ {
		time.Sleep(time.Millisecond)
		k, g, _, still := o.counters(cgPath)
		if !still || k == kills && g == group {
			return kills, group, ok
		}
		kills, group = k, g
	}
	return kills, group, ok
}

// rose records the rise of cg's counters, if any.
func (o *OOMWatch) rose(cg *oomCgroup, kills, group uint64) bool {
	o.mu.Lock()
	if kills <= cg.kills && group <= cg.group {
		o.mu.Unlock()
		return false
	}
	dk, dg := kills-min(kills, cg.kills), group-min(group, cg.group)
	add := o.added(cg, kills, group, dk)
	cg.kills, cg.group = kills, group
	p := cg.pod
	if add == 0 && o.mergeLocked(cg, dk, dg) {
		o.mu.Unlock()
		return true
	}
	k := OOMKill{Time: time.Now(), Source: "kernel", ContainerID: cg.containerID, Processes: dk,
		PodUID: p.uid, Namespace: p.namespace, Pod: p.name}
	if o.v2 && (dg > 0 || group > 0) {
		k.GroupKills = &dg
	}
	if cg.containerID != "" {
		k.Container = p.containerName(cg.containerID)
		if k.Container == "" {
			k.Container = shortID(cg.containerID)
		}
	}
	mounts := p.mounts
	o.mu.Unlock()

	o.attribute(&k, p.path, mounts)

	o.mu.Lock()
	p.kills += add
	cg.recorded = k.Time
	p.last = append(p.last, k)
	if len(p.last) > o.cfg.Keep {
		p.last = append(p.last[:0:0], p.last[len(p.last)-o.cfg.Keep:]...)
	}
	o.mu.Unlock()
	select {
	case o.queue <- k:
	default:
		o.dropped.Add(1)
	}
	return true
}

// added is what a rise of cg's counters to kills and group adds to the
// pod's count. With oom_group_kill the count follows the counters' values,
// not their rises, so a group kill read between its increments (first
// victim's oom_kill, oom_group_kill, the other members' oom_kill) counts
// once however the reads fall. Before 5.17 a group kill counts its first
// victim twice in oom_kill: a rise within groupKillSpread of the last
// record is the same kill.
func (o *OOMWatch) added(cg *oomCgroup, kills, group, dk uint64) uint64 {
	switch {
	case !o.v2:
		return dk
	case cg.hasGroup:
		before, after := o.killCount(cg, cg.kills, cg.group), o.killCount(cg, kills, group)
		return after - min(after, before)
	case !cg.recorded.IsZero() && time.Since(cg.recorded) < groupKillSpread:
		return 0
	}
	return 1
}

// groupKillSpread is how long after a v2 record a further rise of the same
// cgroup's counters is taken as the rest of the same kill: a group kill
// counts its first victim's oom_kill, then oom_group_kill, then the other
// members' oom_kill (and before 5.17 the first victim again), and a slow
// machine can read in between. A second OOM needs the container to fill
// its memory again first.
const groupKillSpread = 250 * time.Millisecond

// mergeLocked folds a rise that adds no kill into the cgroup's last
// record: its processes and group kills grow. false when there is none.
func (o *OOMWatch) mergeLocked(cg *oomCgroup, dk, dg uint64) bool {
	p := cg.pod
	if cg.recorded.IsZero() || len(p.last) == 0 {
		return false
	}
	k := &p.last[len(p.last)-1]
	k.Processes += dk
	if k.GroupKills != nil || dg > 0 {
		g := dg
		if k.GroupKills != nil {
			g += *k.GroupKills
		}
		k.GroupKills = &g
	}
	return true
}

// oomAttributionFields is what a kill's attribution reads of the pod cgroup.
const oomAttributionFields = cgroupfs.FieldStat | cgroupfs.FieldLimit | cgroupfs.FieldUsage | cgroupfs.FieldKernel

// attribute reads the pod's memory cgroup and shm mounts right after a kill.
func (o *OOMWatch) attribute(k *OOMKill, podPath string, mounts []shmscan.Mount) {
	m := o.fs.MemoryFields(podPath, oomAttributionFields)
	k.Memory = OOMMemory{Limit: m.Limit, Usage: m.Usage, Shmem: m.Shmem, Anon: m.Anon, File: m.File, Kernel: m.Kernel}
	for _, e := range m.Errors {
		k.Errors = append(k.Errors, e.Error())
	}
	k.Shm = make([]OOMShm, 0, len(mounts))
	for i, st := range o.shm.StatHosts(mounts) {
		mt := mounts[i]
		s := OOMShm{Source: string(mt.Source), Volume: mt.Volume, HostPath: mt.HostPath}
		if st.Err != nil {
			s.Error = st.Err.Error()
		} else {
			s.Size, s.Used = &st.Usage.SizeBytes, &st.Usage.UsedBytes
		}
		k.Shm = append(k.Shm, s)
	}
}

// Pod returns the OOM record of a pod cgroup; false when it is not watched.
func (o *OOMWatch) Pod(cgPath string) (PodOOM, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p, ok := o.pods[cgPath]
	if !ok {
		return PodOOM{}, false
	}
	return PodOOM{Kills: p.kills, Last: append([]OOMKill(nil), p.last...)}, true
}

// Close releases the kernel watches.
func (o *OOMWatch) Close() error { return o.w.Close() }

package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/shmwatch/shmwatch/agent/podmeta"
	"github.com/shmwatch/shmwatch/cgroupfs"
	"github.com/shmwatch/shmwatch/shmscan"
)

// Config is what a Collector needs to know about the node.
type Config struct {
	NodeName   string
	CgroupRoot string // the kubelet's --cgroup-root
	// AllCgroups treats every runtime container cgroup as a unit, for hosts
	// without Kubernetes.
	AllCgroups bool
	// OrphanGrace is how long a pod cgroup may exist without a pod before it
	// is called orphaned (the kubelet creates the cgroup before the API shows
	// the pod as bound and running, and removes it a little after deletion).
	OrphanGrace time.Duration

	// SkipPeak leaves Memory.Peak nil: no metric exports it (only scan's
	// JSON does), and it costs one file read per cgroup per scrape
	// (v1 memory.max_usage_in_bytes, v2 memory.peak). serve sets it.
	SkipPeak bool
	// SkipSandboxMemory does not read the memory files of sandbox (pause)
	// container cgroups: serve without --collector.sandbox exports none of
	// them, scan shows them only with --sandbox, and they are a quarter of
	// a node's cgroups. Their Memory stays nil; the pod's own cgroup still
	// counts their memory (v1 and v2 pod values are hierarchical).
	SkipSandboxMemory bool
	// SkipSlabinfo does not read v1 memory.kmem.slabinfo of every cgroup
	// nor /proc/slabinfo: no metric exports them (scan and audit do).
	SkipSlabinfo bool
	// OnOOMKill, if set, is called once per new OOM kill with its
	// attribution (docs/oom.md), never blocking the watch or a collection.
	OnOOMKill func(OOMKill)
}

// Which memory files each view reads: only what the snapshot reports (see
// docs/performance.md). A pod needs no events (no pod-level OOM metric);
// containers need no cgroup.stat (dying counts are per pod) and no PSI
// (pressure is reported per pod).
const (
	podFields       = cgroupfs.FieldStat | cgroupfs.FieldLimit | cgroupfs.FieldUsage | cgroupfs.FieldKernel | cgroupfs.FieldKmemLimit | cgroupfs.FieldDying | cgroupfs.FieldPressure
	containerFields = cgroupfs.FieldStat | cgroupfs.FieldLimit | cgroupfs.FieldUsage | cgroupfs.FieldKernel | cgroupfs.FieldKmemLimit | cgroupfs.FieldEvents
	// sandboxFields keeps the kmem-limit count whole when sandbox memory
	// is skipped; the limit is cached per cgroup, so it costs an fstat.
	// From 5.16 it is nothing, and a sandbox cgroup is not opened.
	sandboxFields = cgroupfs.FieldKmemLimit
)

// Collector reads the node into Snapshots. Concurrent callers of Collect
// share one in-flight collection instead of multiplying kernel reads.
type Collector struct {
	cfg  Config
	fs   *cgroupfs.FS
	shm  *shmscan.Scanner
	meta podmeta.Provider
	log  *zap.Logger
	now  func() time.Time

	flight singleflight.Group

	mu    sync.Mutex
	epoch uint64
	// mounts caches what is at each container's /dev/shm, keyed by
	// container cgroup path: it is fixed for the container's lifetime, so
	// only statfs runs on every collection.
	mounts    map[string]cachedMount
	logged    map[string]bool
	errTotals map[string]uint64
	oom       *OOMWatch // nil: no OOM watch (WatchOOM)
	// noKmemLimits is set from kernel 5.16, which keeps no v1 kmem limit
	// (see kmemLimitsSettable): the limit is not read there.
	noKmemLimits bool

	kernelOOM  atomic.Bool            // an OOM watch runs: the kubelet's kills are not counted
	kubeletMu  sync.Mutex             // guards kubeletOOM (collections and KubeletOOMKilled)
	kubeletOOM map[string]*kubeletOOM // by pod uid, without an OOM watch

	last atomic.Pointer[Snapshot] // the latest collection's watchView, for Last
}

type cachedMount struct {
	mount   *shmscan.Mount // nil: the container has no /dev/shm (small map values stay inline)
	sandbox bool           // the container's only process is the pause process
	seen    uint64
}

// NewCollector returns a Collector over the given readers. meta may be nil.
func NewCollector(cfg Config, cg *cgroupfs.FS, shm *shmscan.Scanner, meta podmeta.Provider, log *zap.Logger) *Collector {
	if cfg.OrphanGrace == 0 {
		cfg.OrphanGrace = time.Minute
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = "/"
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Collector{
		cfg: cfg, fs: cg, shm: shm, meta: meta, log: log, now: time.Now,
		mounts: map[string]cachedMount{}, logged: map[string]bool{}, errTotals: map[string]uint64{},
	}
}

// Collect returns a fresh snapshot of the node, sharing the collection with
// any concurrent caller.
func (c *Collector) Collect(ctx context.Context) (*Snapshot, error) {
	ch := c.flight.DoChan("collect", func() (any, error) { return c.collect(), nil })
	select {
	case r := <-ch:
		return r.Val.(*Snapshot), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("collect: %w", ctx.Err())
	}
}

// collection is the mutable state of one collect call.
type collection struct {
	snap  *Snapshot
	epoch uint64
	// src is the cgroup of each pod in snap.Pods, index for index.
	src []*cgroupfs.Pod
	// kmemLimits are the v1 kmem limits set, by cgroup path.
	kmemLimits map[string]uint64
	// unresolved are the containers whose /dev/shm could not be resolved
	// this collection, with the error, by cgroup path.
	unresolved map[string]error
}

func (c *Collector) collect() *Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	// Empty lists, not nil: the JSON contract says arrays.
	col := &collection{epoch: c.epoch, snap: &Snapshot{
		Time: c.now(), Pods: []Pod{}, Orphans: []Orphan{}, ReadErrors: map[string]int{},
	}, unresolved: map[string]error{}}

	c.phase(col, "metadata", func() error { return c.collectMetadata(col) })
	var node cgroupfs.Node
	var pods []cgroupfs.Pod
	var discoverErr error
	c.phase(col, "node", func() error {
		node, pods, discoverErr = c.discover()
		c.noKmemLimits = !kmemLimitsSettable(node.KernelRelease)
		return nodeCountErr(node)
	})
	c.phase(col, "containers", func() error {
		c.resolveContainers(col, pods)
		return nil
	})
	c.phase(col, "cgroup", func() error {
		if discoverErr == nil {
			col.snap.Pods = c.readPods(col, pods)
		}
		return discoverErr
	})
	c.phase(col, "shm", func() error { return c.collectShm(col) })
	c.dropVanished(col)
	c.joinOOM(col)
	c.accountErrors(col)
	c.reportNode(col, node)
	c.forgetGone(col)
	c.fs.Prune()
	sortPods(col.snap.Pods)
	col.snap.ReadErrorTotals = make(map[string]uint64, len(c.errTotals)+len(col.snap.ReadErrors))
	for f, n := range col.snap.ReadErrors {
		c.errTotals[f] += uint64(n)
	}
	for f, n := range c.errTotals {
		col.snap.ReadErrorTotals[f] = n
	}
	c.last.Store(watchView(col.snap))
	return col.snap
}

func (c *Collector) phase(col *collection, name string, f func() error) {
	start := time.Now()
	err := f()
	col.snap.Phases = append(col.snap.Phases, Phase{Name: name, Duration: time.Since(start), Err: err})
	if err != nil {
		c.logOnce("phase:"+name+":"+err.Error(), "collection phase failed", zap.String("phase", name), zap.Error(err))
	}
}

// discover reads the node's memcg counts and lists the units to report:
// kubelet pods (from the same walk, see cgroupfs.NodeAndPods), or runtime
// containers as one-container pseudo pods with --all-cgroups.
func (c *Collector) discover() (cgroupfs.Node, []cgroupfs.Pod, error) {
	if !c.cfg.AllCgroups {
		node, pods, err := c.fs.NodeAndPods(c.cfg.CgroupRoot)
		if err != nil {
			return node, nil, fmt.Errorf("list pod cgroups under %s: %w", c.cfg.CgroupRoot, err)
		}
		return node, pods, nil
	}
	node := c.fs.Node()
	ctrs, err := c.fs.RuntimeContainers()
	if err != nil {
		return node, nil, fmt.Errorf("list runtime container cgroups: %w", err)
	}
	units := make([]cgroupfs.Pod, 0, len(ctrs))
	for _, ct := range ctrs {
		units = append(units, cgroupfs.Pod{Path: ct.Path, Containers: []cgroupfs.Container{ct}})
	}
	return node, units, nil
}

func (c *Collector) collectMetadata(col *collection) error {
	n := &col.snap.Node
	n.Name = c.cfg.NodeName
	if c.meta == nil {
		n.MetadataSource = string(podmeta.SourceNone)
		return nil
	}
	n.MetadataSource = string(c.meta.Source())
	node := c.meta.Node()
	n.KubernetesVersion = node.ServerVersion
	n.AllocatableMemory = node.AllocatableMemory
	return nil
}

// readPods reads the memory files of every pod and container cgroup. A pod
// whose cgroup vanished mid-read is dropped whole: it is gone, not broken.
func (c *Collector) readPods(col *collection, pods []cgroupfs.Pod) []Pod {
	out := make([]Pod, 0, len(pods))
	for i := range pods {
		p, ok := c.readPod(col, &pods[i])
		if ok {
			out = append(out, p)
			col.src = append(col.src, &pods[i])
		}
	}
	return out
}

// fields is what to read of a pod or container cgroup.
func (c *Collector) fields(base cgroupfs.Fields) cgroupfs.Fields {
	if !c.cfg.SkipPeak {
		base |= cgroupfs.FieldPeak
	}
	return c.kmemFields(base)
}

// kmemFields drops the kmem limit from want where the kernel keeps none.
func (c *Collector) kmemFields(want cgroupfs.Fields) cgroupfs.Fields {
	if c.noKmemLimits {
		return want &^ cgroupfs.FieldKmemLimit
	}
	return want
}

// containerWant is what to read of a container cgroup: with
// SkipSandboxMemory only the cached kmem limit of a sandbox, where the
// kernel keeps one.
func (c *Collector) containerWant(ct cgroupfs.Container) cgroupfs.Fields {
	if c.cfg.SkipSandboxMemory && c.knownSandbox(ct.Path) {
		return c.kmemFields(sandboxFields)
	}
	return c.fields(containerFields)
}

// knownSandbox says whether a container cgroup was found to hold only the
// pause process when it was resolved (the mount cache remembers it).
func (c *Collector) knownSandbox(path string) bool {
	cm, ok := c.mounts[path]
	return ok && cm.sandbox
}

func (c *Collector) readPod(col *collection, cp *cgroupfs.Pod) (Pod, bool) {
	mem, ctrMems := c.fs.PodMemory(*cp, c.fields(podFields), c.containerWant)
	if c.vanished(cp.Path, mem) {
		return Pod{}, false
	}
	col.noteKmem(cp.Path, mem)
	p := Pod{UID: cp.UID, QOS: string(cp.QOS), Cgroup: cp.Path, Memory: memoryOf(mem), DyingMemcg: mem.DyingDescendants,
		Shm: []Shm{}}
	p.Errors = p.noteFieldErrors(mem.Errors)
	p.MemoryPressure = pressureOf(mem.PSI)
	meta, hasMeta := c.podMeta(cp.UID)
	if hasMeta {
		p.Namespace, p.Name = meta.Namespace, meta.Name
		if p.QOS == "" {
			p.QOS = meta.QOS
		}
	}
	p.Binding, p.Headroom = memcgVerdict(p.Memory)
	p.Containers = make([]Container, 0, len(cp.Containers))
	for i, ct := range cp.Containers {
		cm := ctrMems[i]
		if c.vanished(ct.Path, cm) {
			continue
		}
		col.noteKmem(ct.Path, cm)
		p.Containers = append(p.Containers, Container{
			ID: ct.ID, Name: containerName(meta, ct.ID), Runtime: string(ct.Runtime),
			// Only a source that lists the pod's containers can say this
			// one is not among them; kubelet log dirs without
			// /var/log/containers links list none, and the pause check
			// of the shm phase decides then.
			Sandbox: hasMeta && len(meta.Containers) > 0 && meta.Containers[ct.ID] == "",
			Memory:  memoryOf(cm), OOMKills: cm.OOMKills, LimitHits: cm.LimitHits,
			Errors: p.noteFieldErrors(cm.Errors),
		})
	}
	if cp.UID == "" { // --all-cgroups: the unit is the container itself
		p.Name = shortID(cp.Containers[0].ID)
	}
	uniqueContainerNames(p.Containers)
	return p, true
}

// uniqueContainerNames keeps the container label unique within a pod: a
// restarted container's old cgroup can outlive its replacement's start
// under the same name, and two ids can share a 12-character prefix. A
// repeated name gets the id appended, so no two series collide.
func uniqueContainerNames(ctrs []Container) {
	seen := make(map[string]bool, len(ctrs))
	for i := range ctrs {
		name := ctrs[i].Name
		if seen[name] {
			name = ctrs[i].Name + "-" + ctrs[i].ID
			if ctrs[i].Name == shortID(ctrs[i].ID) {
				name = ctrs[i].ID
			}
		}
		seen[name] = true
		ctrs[i].Name = name
	}
}

func (col *collection) noteKmem(path string, m cgroupfs.Memory) {
	if m.KmemLimit == nil {
		return
	}
	if col.kmemLimits == nil {
		col.kmemLimits = map[string]uint64{}
	}
	col.kmemLimits[path] = *m.KmemLimit
}

// dropVanished removes pods whose cgroup went away during the collection
// and left errors behind: a pod is reported whole or not at all.
func (c *Collector) dropVanished(col *collection) {
	kept, src := col.snap.Pods[:0], col.src[:0]
	for i, p := range col.snap.Pods {
		if (len(p.Errors) > 0 || shmFailed(p)) && c.gone(p.Cgroup) {
			continue
		}
		kept, src = append(kept, p), append(src, col.src[i])
	}
	col.snap.Pods, col.src = kept, src
}

func shmFailed(p Pod) bool {
	for _, s := range p.Shm {
		if s.Error != "" {
			return true
		}
	}
	return false
}

func (c *Collector) podMeta(uid string) (podmeta.Pod, bool) {
	if c.meta == nil || uid == "" {
		return podmeta.Pod{}, false
	}
	return c.meta.Pod(uid)
}

// containerName is the API's name for a container id, or a short id when
// the API does not know it (degraded metadata, or a sandbox).
func containerName(meta podmeta.Pod, id string) string {
	if n := meta.Containers[id]; n != "" {
		return n
	}
	return shortID(id)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// vanished says whether a cgroup disappeared while it was read. Pods die
// mid-walk on a busy node; such a cgroup is skipped, not reported with the
// errors its half-read files gave (ENOENT on open, ENODEV on read).
func (c *Collector) vanished(path string, m cgroupfs.Memory) bool {
	if len(m.Errors) == 0 {
		return false
	}
	return c.gone(path)
}

// gone says whether a cgroup directory no longer exists.
func (c *Collector) gone(path string) bool {
	_, err := c.fs.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}

// readError is one failed read, counted and logged only if its pod is
// still there at the end of the collection.
type readError struct {
	field, path string
	err         error
}

// noteFieldErrors keeps a cgroup's read errors for accounting and returns
// them as strings for the reports.
func (p *Pod) noteFieldErrors(errs []cgroupfs.FieldError) []string {
	if len(errs) == 0 {
		return nil
	}
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		p.readErrs = append(p.readErrs, readError{field: e.Field, path: e.Path, err: e.Err})
		out = append(out, e.Error())
	}
	return out
}

// accountErrors counts the read errors of the pods kept in the snapshot and
// logs each field and kind of error once per agent lifetime, so a broken
// node gives a metric and one line, not a line per scrape.
func (c *Collector) accountErrors(col *collection) {
	for i := range col.snap.Pods {
		for _, e := range col.snap.Pods[i].readErrs {
			col.snap.ReadErrors[e.field]++
			kind := errKind(e.err)
			fields := []zap.Field{zap.String("field", e.field), zap.String("path", e.path), zap.Error(e.err)}
			if kind == "permission" {
				fields = append(fields, zap.String("hint", permissionHint(e.field)))
			}
			c.logOnce("field:"+e.field+":"+kind, "cannot read (logged once per field and kind of error)", fields...)
		}
	}
}

// permissionHint says which privilege a denied read needs (docs/security.md).
func permissionHint(field string) string {
	if field == "shm" || field == "statfs" {
		return "reaching a container's mount namespace and root needs CAP_SYS_PTRACE"
	}
	return "cgroup and /proc files not readable: run as root (uid 0), or add CAP_DAC_READ_SEARCH"
}

func errKind(err error) string {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return "permission"
	case errors.Is(err, fs.ErrNotExist):
		return "missing"
	case errors.Is(err, cgroupfs.ErrFileParse):
		return "parse"
	default:
		return "other"
	}
}

func (c *Collector) logOnce(key, msg string, fields ...zap.Field) {
	if c.logged[key] {
		return
	}
	c.logged[key] = true
	c.log.Warn(msg, fields...)
}

func sortPods(pods []Pod) {
	sort.SliceStable(pods, func(i, j int) bool {
		hi, hj := pods[i].Headroom, pods[j].Headroom
		switch {
		case hi != nil && hj != nil && *hi != *hj:
			return *hi < *hj
		case (hi == nil) != (hj == nil):
			return hi != nil
		}
		if pods[i].Namespace != pods[j].Namespace {
			return pods[i].Namespace < pods[j].Namespace
		}
		if pods[i].Name != pods[j].Name {
			return pods[i].Name < pods[j].Name
		}
		return pods[i].UID < pods[j].UID
	})
}

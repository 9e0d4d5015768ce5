package events

import (
	"context"
	"time"

	"github.com/shmwatch/shmwatch/agent"
	"github.com/shmwatch/shmwatch/cgroupfs"
	"github.com/shmwatch/shmwatch/shmscan"
)

// Node is what a Checker reads: an agent.Collector.
type Node interface {
	Last() *agent.Snapshot
	Collect(ctx context.Context) (*agent.Snapshot, error)
	StatShm(ms []shmscan.Mount) []shmscan.HostStat
	PodMemcg(path string) cgroupfs.Memory
	MountsChanged() bool
}

// CheckerConfig is how often a Checker looks and how far back it fits.
type CheckerConfig struct {
	// Interval is the time between two checks.
	Interval time.Duration
	// Rediscover is the oldest snapshot a check uses once the host's mount
	// table changed (a pod came or went); an older one is replaced by a
	// collection, so new pods are seen. With no change a snapshot serves
	// until it is staleAfter times older.
	Rediscover time.Duration
	// TrendSpan is how far back the growth rate is fitted.
	TrendSpan  time.Duration
	Thresholds Thresholds
}

// Checker notices full and filling tmpfs mounts between scrapes: tmpfs has
// no fullness notification, so every interval it statfs's the pod shm
// mounts the last snapshot knows, and reads the memory cgroup only of the
// pods whose working set may be near their limit.
type Checker struct {
	cfg    CheckerConfig
	node   Node
	notify func(Notice)
	now    func() time.Time

	trends map[trendKey]*agent.Trend
	seen   map[trendKey]bool
}

// trendKey is one growing quantity: a pod's tmpfs (device) or, with no
// device, its memory cgroup.
type trendKey struct {
	uid, device string
}

// NewChecker returns a Checker over node handing its notices to notify
// (Sender.Notify).
func NewChecker(cfg CheckerConfig, node Node, notify func(Notice)) *Checker {
	return &Checker{cfg: cfg, node: node, notify: notify, now: time.Now,
		trends: map[trendKey]*agent.Trend{}, seen: map[trendKey]bool{}}
}

// Run checks every interval until ctx ends.
func (c *Checker) Run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Check(ctx)
		}
	}
}

// target is one pod tmpfs to statfs.
type target struct {
	pod *agent.Pod
	shm *agent.Shm
}

// Check looks at every known pod tmpfs once.
func (c *Checker) Check(ctx context.Context) {
	snap := c.snapshot(ctx)
	if snap == nil {
		return
	}
	targets, mounts := targetsOf(snap)
	if len(targets) == 0 {
		c.forget()
		return
	}
	stats := c.node.StatShm(mounts)
	now := c.now()
	memcg := map[string]*cgroupfs.Memory{} // read at most once a check per pod
	for i, t := range targets {
		if stats[i].Err != nil {
			continue // the collections report statfs errors
		}
		u := stats[i].Usage
		st := c.state(now, t, u, memcg)
		for _, n := range Judge(st, c.cfg.Thresholds) {
			c.notify(n)
		}
	}
	c.forget()
}

// staleAfter is how many Rediscover periods a snapshot serves while the
// host's mount table stays the same, so its memory numbers (which decide
// whose memcg a check reads) are refreshed now and then.
const staleAfter = 10

// snapshot is the last collection, or a new one when it may miss pods or
// is stale. Every pod mounts at least one tmpfs (the runtime's shm or a
// memory emptyDir, in the host's mount namespace), so an unchanged mount
// table means the same pods: a node with no scrapes and no churn costs
// the statfs batches alone.
func (c *Checker) snapshot(ctx context.Context) *agent.Snapshot {
	snap := c.node.Last()
	if snap != nil {
		age := c.now().Sub(snap.Time)
		if age < c.cfg.Rediscover || (age < staleAfter*c.cfg.Rediscover && !c.node.MountsChanged()) {
			return snap
		}
	}
	if fresh, err := c.node.Collect(ctx); err == nil {
		return fresh
	}
	return snap
}

// targetsOf lists the pod tmpfs mounts worth watching: of named pods
// (an event needs the pod), the runtime's and emptyDirs, not the host's
// /dev/shm a hostIPC pod shares with the node.
func targetsOf(snap *agent.Snapshot) ([]target, []shmscan.Mount) {
	var ts []target
	var ms []shmscan.Mount
	for i := range snap.Pods {
		p := &snap.Pods[i]
		if p.Name == "" || p.Namespace == "" {
			continue
		}
		for j := range p.Shm {
			s := &p.Shm[j]
			if s.HostPath == "" || s.Source == string(shmscan.SourceHost) {
				continue
			}
			ts = append(ts, target{p, s})
			ms = append(ms, shmscan.Mount{Device: s.Device, HostPath: s.HostPath, Source: shmscan.Source(s.Source), Volume: s.Volume})
		}
	}
	return ts, ms
}

// state joins one fresh statfs with the pod's memcg (read only when it may
// be near its limit) and the growth rates.
func (c *Checker) state(now time.Time, t target, u shmscan.Usage, memcg map[string]*cgroupfs.Memory) ShmState {
	ref := PodRef{UID: t.pod.UID, Namespace: t.pod.Namespace, Name: t.pod.Name}
	shmTrend := c.trend(trendKey{t.pod.UID, t.shm.Device})
	shmTrend.Add(now, u.UsedBytes)
	st := ShmState{
		Pod: ref, Volume: t.shm.Volume, MountPoint: mountPoint(t.shm),
		Size: u.SizeBytes, Used: u.UsedBytes, Available: u.AvailableBytes,
		ShmFullIn: shmTrend.Until(u.UsedBytes, u.UsedBytes+u.AvailableBytes),
	}
	if !c.nearLimit(t, u) {
		return st
	}
	m, read := memcg[t.pod.Cgroup]
	if !read {
		mem := c.node.PodMemcg(t.pod.Cgroup)
		m = &mem
		memcg[t.pod.Cgroup] = m
		if m.Limit != nil && m.WorkingSet != nil {
			c.trend(trendKey{uid: t.pod.UID}).Add(now, *m.WorkingSet)
		}
	}
	st.MemcgLimit, st.MemcgWorkingSet = m.Limit, m.WorkingSet
	if m.Limit != nil && m.WorkingSet != nil {
		st.MemcgFullIn = c.trend(trendKey{uid: t.pod.UID}).Until(*m.WorkingSet, *m.Limit)
	}
	return st
}

// nearMargin is how far below the nearly-full threshold a pod's estimated
// working set must be for its memcg not to be read.
const nearMargin = 0.1

// nearLimit says whether the pod's working set may be near its limit: the
// snapshot's working set plus what its tmpfs grew since (tmpfs pages are
// charged to the pod and not reclaimed).
func (c *Checker) nearLimit(t target, u shmscan.Usage) bool {
	m := t.pod.Memory
	if m.Limit == nil || m.WorkingSet == nil || *m.Limit == 0 {
		return false
	}
	est := float64(*m.WorkingSet)
	if t.shm.Used != nil && u.UsedBytes > *t.shm.Used {
		est += float64(u.UsedBytes - *t.shm.Used)
	}
	return est >= (c.cfg.Thresholds.NearlyFull-nearMargin)*float64(*m.Limit)
}

func mountPoint(s *agent.Shm) string {
	if s.Source == string(shmscan.SourceEmptyDir) && s.Volume != "" && !atDevShm(s) {
		return "the emptyDir"
	}
	return "/dev/shm"
}

// atDevShm: the snapshot lists an emptyDir's containers; the runtime shm is
// always at /dev/shm.
func atDevShm(s *agent.Shm) bool { return len(s.Containers) > 0 }

func (c *Checker) trend(k trendKey) *agent.Trend {
	c.seen[k] = true
	tr, ok := c.trends[k]
	if !ok {
		tr = agent.NewTrend(c.cfg.TrendSpan)
		c.trends[k] = tr
	}
	return tr
}

// forget drops the trends of mounts and pods this check did not see.
func (c *Checker) forget() {
	for k := range c.trends {
		if !c.seen[k] {
			delete(c.trends, k)
		}
	}
	clear(c.seen)
}

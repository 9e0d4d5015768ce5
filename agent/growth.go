package agent

import (
	"context"
	"slices"
	"time"

	"github.com/shmwatch/shmwatch/shmscan"
)

// growthStep is the time between two growth samples.
const growthStep = time.Second

// WithGrowth samples, for window after snap was collected, every pod tmpfs
// (one statfs batch) and the memory cgroup of every pod with a limit
// (limit, usage, working set), fits each one's growth rate by least
// squares over snap's value and the samples, and returns a copy of snap
// with the time to full of what grows. It is for one-shot views (scan):
// serve's event checker keeps its own trends over minutes. The host's
// /dev/shm (a hostIPC pod's) is the node's, not a pod's, and is left out.
func (c *Collector) WithGrowth(ctx context.Context, snap *Snapshot, window time.Duration) *Snapshot {
	out := *snap
	out.Pods = slices.Clone(snap.Pods)
	g := newGrowth(&out, window)
	deadline := time.Now().Add(window) // before the ticker: its last tick is not early
	tick := time.NewTicker(min(growthStep, window/2))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return snap
		case now := <-tick.C:
			g.sample(c, now)
			if !now.Before(deadline) {
				g.estimate()
				out.GrowthWindow = window.Seconds()
				return &out
			}
		}
	}
}

// growth is the samples WithGrowth takes of one snapshot's pods.
type growth struct {
	snap   *Snapshot
	mounts []shmscan.Mount
	shm    []grower // per mount: out.Pods[pod].Shm[shm]
	memcg  []grower // per pod with a limit
}

// grower is one growing quantity, its latest value and its capacity.
type grower struct {
	pod, shm   int
	trend      *Trend
	cur, limit uint64
}

func newGrowth(out *Snapshot, window time.Duration) *growth {
	g := &growth{snap: out}
	span := 2 * window // keeps every sample
	for i := range out.Pods {
		p := &out.Pods[i]
		p.Shm = slices.Clone(p.Shm)
		for j := range p.Shm {
			s := &p.Shm[j]
			if s.HostPath == "" || s.Used == nil || s.Available == nil || s.Source == string(shmscan.SourceHost) {
				continue
			}
			g.mounts = append(g.mounts, shmscan.Mount{Device: s.Device, HostPath: s.HostPath, Source: shmscan.Source(s.Source), Volume: s.Volume})
			g.shm = append(g.shm, newGrower(i, j, span, out.Time, *s.Used, *s.Used+*s.Available))
		}
		if m := p.Memory; m.Limit != nil && m.WorkingSet != nil {
			g.memcg = append(g.memcg, newGrower(i, -1, span, out.Time, *m.WorkingSet, *m.Limit))
		}
	}
	return g
}

func newGrower(pod, shm int, span time.Duration, t time.Time, cur, limit uint64) grower {
	tr := NewTrend(span)
	tr.Add(t, cur)
	return grower{pod: pod, shm: shm, trend: tr, cur: cur, limit: limit}
}

// sample adds one statfs of every mount and one read of every limited
// memcg; a failed read leaves its quantity with fewer samples.
func (g *growth) sample(c *Collector, now time.Time) {
	for k, st := range c.shm.StatHosts(g.mounts) {
		if st.Err == nil {
			u := st.Usage
			gr := &g.shm[k]
			gr.trend.Add(now, u.UsedBytes)
			gr.cur, gr.limit = u.UsedBytes, u.UsedBytes+u.AvailableBytes
		}
	}
	for k := range g.memcg {
		gr := &g.memcg[k]
		m := c.PodMemcg(g.snap.Pods[gr.pod].Cgroup)
		if m.WorkingSet != nil && m.Limit != nil {
			gr.trend.Add(now, *m.WorkingSet)
			gr.cur, gr.limit = *m.WorkingSet, *m.Limit
		}
	}
}

// estimate sets the time to full of every quantity that grows.
func (g *growth) estimate() {
	for _, gr := range g.shm {
		g.snap.Pods[gr.pod].Shm[gr.shm].FullIn = gr.fullIn()
	}
	for _, gr := range g.memcg {
		g.snap.Pods[gr.pod].MemoryFullIn = gr.fullIn()
	}
}

func (gr *grower) fullIn() *float64 {
	d := gr.trend.Until(gr.cur, gr.limit)
	if d == nil {
		return nil
	}
	s := d.Seconds()
	return &s
}

package agent

import (
	"context"

	"go.uber.org/zap"

	"github.com/shmwatch/shmwatch/cgroupfs"
	"github.com/shmwatch/shmwatch/shmscan"
)

// OOMWatchReport is the state of the kernel OOM watch (node part of a
// snapshot); nil when no watch runs.
type OOMWatchReport struct {
	// Kind is the kernel interface: inotify (v2 memory.events) or eventfd
	// (v1 cgroup.event_control).
	Kind          string `json:"kind"`
	Watches       int    `json:"watches"`
	FDs           int    `json:"fds"`
	WatchFailures uint64 `json:"watch_failures"`
	// LocalEvents is true when cgroup2 is mounted with memory_localevents:
	// then a pod cgroup's memory.events does not count its containers'
	// kills and the v2 pod count misses them.
	LocalEvents bool `json:"local_events,omitempty"`
}

// WatchOOM makes every collection hand its pods to o (which follows them)
// and report each pod's kills.
func (c *Collector) WatchOOM(o *OOMWatch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.oom = o
	c.kernelOOM.Store(true)
}

// joinOOM syncs the watch with this collection's pods and copies each
// pod's kill record into the snapshot.
func (c *Collector) joinOOM(col *collection) {
	if c.oom == nil {
		c.joinKubeletOOM(col)
		return
	}
	pods := col.snap.Pods
	mounts := make(map[string][]shmscan.Mount, len(pods))
	for i := range pods {
		for _, s := range pods[i].Shm {
			if s.HostPath != "" {
				mounts[pods[i].Cgroup] = append(mounts[pods[i].Cgroup], shmscan.Mount{
					Device: s.Device, HostPath: s.HostPath, Source: shmscan.Source(s.Source), Volume: s.Volume})
			}
		}
	}
	c.oom.Sync(pods, col.src, mounts)
	for i := range pods {
		if rec, ok := c.oom.Pod(pods[i].Cgroup); ok {
			if rec.Kills > 0 && len(rec.Last) == 0 {
				rec.Last = c.kubeletLast(&pods[i]) // killed before the watch began
			}
			pods[i].OOM = &rec
		}
	}
	col.snap.Node.OOMWatch = &OOMWatchReport{Kind: c.oom.Kind(), Watches: c.oom.Watches(), FDs: c.oom.FDs(),
		WatchFailures: c.oom.WatchFailures(), LocalEvents: c.fs.Hierarchy.LocalEvents}
}

// StartOOMWatch starts the kernel OOM watch over the collector's readers,
// joins it to every collection, and stops it when ctx ends.
func (c *Collector) StartOOMWatch(ctx context.Context, cfg OOMConfig) (*OOMWatch, error) {
	if cfg.OnKill == nil {
		cfg.OnKill = c.cfg.OnOOMKill
	}
	o, err := NewOOMWatch(c.fs, c.shm, cfg, c.log.Named("oom"))
	if err != nil {
		return nil, err
	}
	go func() {
		if err := o.Run(ctx); err != nil {
			c.log.Error("OOM watch stopped", zap.Error(err))
		}
	}()
	c.WatchOOM(o)
	return o, nil
}

// OOMWatchDefault says whether the OOM watch runs without being asked:
// on v2, where inotify needs nothing but read access. On v1 registering an
// eventfd needs root and a writable cgroup mount (an opt-in).
func (c *Collector) OOMWatchDefault() bool { return c.fs.Hierarchy.Mode == cgroupfs.ModeV2 }

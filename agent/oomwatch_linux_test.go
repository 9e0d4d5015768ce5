package agent

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/shmwatch/shmwatch/cgroupfs"
	"github.com/shmwatch/shmwatch/internal/podtree"
	"github.com/shmwatch/shmwatch/shmscan"
)

// TestOOMWatchCountsEveryKillAcrossRestarts kills a pod's container 20
// times on this kernel, each time removing the dead container's cgroup and
// creating the next at once, as containerd and the kubelet do. Every kill
// must be recorded exactly once, with the pod's shmem as the kernel
// charged it and the tmpfs as statfs sees it.
func TestOOMWatchCountsEveryKillAcrossRestarts(t *testing.T) {
	const (
		kills = 20
		fill  = 24 << 20
		limit = 64 << 20
	)
	tree := podtree.New(t)
	pod := tree.MustAddPod(podtree.Burstable)
	if err := pod.SetLimit(limit); err != nil {
		t.Fatal(err)
	}
	shm, err := pod.EmptyDir("shm", 2*limit)
	if err != nil {
		t.Fatal(err)
	}
	fs, scanner := hostReaders(t)
	recorded := make(chan OOMKill, 2*kills)
	o, err := NewOOMWatch(fs, scanner, OOMConfig{OnKill: func(k OOMKill) { recorded <- k }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = o.Run(ctx) }()
	c := NewCollector(Config{CgroupRoot: tree.CgroupRoot}, fs, scanner, nil, nil)
	c.WatchOOM(o)

	ctr, err := pod.StartOOM(shm, fill)
	if err != nil {
		t.Fatal(err)
	}
	snap := collectPod(t, c, pod.Path)
	if snap.OOM == nil || snap.OOM.Kills != 0 || len(snap.Shm) != 1 || snap.Shm[0].HostPath == "" {
		t.Fatalf("before any kill: oom %+v, shm %+v", snap.OOM, snap.Shm)
	}

	var sinceDeath, sinceTrigger []time.Duration
	near := 0 // kills whose memory.stat shmem was within 1/8 of the fill
	for i := range kills {
		triggered := time.Now()
		if err := ctr.Trigger(); err != nil {
			t.Fatal(err)
		}
		if err := ctr.WaitKilled(); err != nil {
			t.Fatal(err)
		}
		dead := time.Now()
		// containerd removes a dead container's cgroup after its shim
		// reports the exit, hundreds of ms later; 100 ms is inside the
		// 200 ms the proof asks for.
		time.Sleep(100 * time.Millisecond)
		if err := pod.RemoveContainer(ctr.Container); err != nil {
			t.Fatal(err)
		}
		if ctr, err = pod.StartOOM(shm, fill); err != nil {
			t.Fatal(err)
		}
		k, ok := waitKill(recorded)
		if !ok {
			o.mu.Lock()
			for p := range o.cgroups {
				b, _ := os.ReadFile(fs.Hierarchy.MemoryRoot + p + "/memory.oom_control")
				t.Logf("watched %s: %q", p, b)
			}
			o.mu.Unlock()
			t.Fatalf("kill %d: not recorded within 10s; watches %d", i, o.Watches())
		}
		sinceDeath, sinceTrigger = append(sinceDeath, k.Time.Sub(dead)), append(sinceTrigger, k.Time.Sub(triggered))
		if checkAttribution(t, i, k, fill) {
			near++
		}
		if rec, _ := o.Pod(pod.Path); rec.Kills != uint64(i+1) {
			t.Fatalf("after kill %d: pod count %d, want %d", i+1, rec.Kills, i+1)
		}
	}
	// memory.stat is flushed from per-CPU counters lazily (rate-limited on
	// recent kernels): a read right after a kill can lag; statfs never does.
	if near < kills*3/4 {
		t.Errorf("memory.stat shmem within 1/8 of the fill in %d of %d kills, want 3/4", near, kills)
	}
	select {
	case k := <-recorded:
		t.Fatalf("a kill recorded twice: %+v", k)
	case <-time.After(500 * time.Millisecond):
	}
	snap = collectPod(t, c, pod.Path)
	if snap.OOM == nil || snap.OOM.Kills != kills || len(snap.OOM.Last) != 4 {
		t.Fatalf("after %d kills: %+v", kills, snap.OOM)
	}
	t.Logf("kernel %s, %s: record after the test reaped the killed process: p50 %v max %v; after the trigger: p50 %v max %v",
		kernelRelease(), o.Kind(), p50(sinceDeath), slices.Max(sinceDeath), p50(sinceTrigger), slices.Max(sinceTrigger))
}

// checkAttribution checks one kill's record; it reports whether memory.stat
// shmem was near the fill (it may lag, see the caller).
func checkAttribution(t *testing.T, i int, k OOMKill, fill uint64) bool {
	t.Helper()
	if k.Processes != 1 || k.ContainerID == "" || k.Container == "" {
		t.Errorf("kill %d: processes %d container %q id %q", i, k.Processes, k.Container, k.ContainerID)
	}
	near := k.Memory.Shmem != nil && statClose(*k.Memory.Shmem, fill)
	if k.Memory.Shmem == nil {
		t.Errorf("kill %d: pod shmem absent", i)
	} else if !near {
		t.Logf("kill %d: pod shmem %d lags the %d written", i, *k.Memory.Shmem, fill)
	}
	if k.Memory.Limit == nil || k.Memory.Usage == nil || k.Memory.Anon == nil || k.Memory.File == nil {
		t.Errorf("kill %d: memory %+v", i, k.Memory)
	}
	if len(k.Shm) != 1 || k.Shm[0].Used == nil || *k.Shm[0].Used != fill || k.Shm[0].Source != "emptydir" || k.Shm[0].Volume != "shm" {
		t.Errorf("kill %d: shm %+v", i, k.Shm)
	}
	return near
}

func waitKill(recorded <-chan OOMKill) (OOMKill, bool) {
	select {
	case k := <-recorded:
		return k, true
	case <-time.After(10 * time.Second):
		return OOMKill{}, false
	}
}

func collectPod(t *testing.T, c *Collector, cgPath string) Pod {
	t.Helper()
	return podOf(t, collectPods(t, c, -1), cgPath)
}

// collectPods runs one collection and fails unless it lists n pods (any
// number when n < 0).
func collectPods(t *testing.T, c *Collector, n int) *Snapshot {
	t.Helper()
	snap, err := c.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n >= 0 && len(snap.Pods) != n {
		t.Fatalf("%d pods, want %d", len(snap.Pods), n)
	}
	return snap
}

func p50(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func kernelRelease() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return string(b[:max(0, len(b)-1)])
}

// hostReaders are the cgroup and shm readers of this host, as serve makes them.
func hostReaders(t *testing.T) (*cgroupfs.FS, *shmscan.Scanner) {
	t.Helper()
	fs, err := cgroupfs.NewFS("/proc")
	if err != nil {
		t.Fatal(err)
	}
	return fs, shmscan.NewScanner(shmscan.Config{ProcRoot: "/proc", HostPID: hostPIDForTest(), StatfsTimeout: 2 * time.Second})
}

func hostPIDForTest() int {
	if d, err := os.Open("/proc/1/root"); err == nil {
		_ = d.Close()
		return 1
	}
	return 2
}

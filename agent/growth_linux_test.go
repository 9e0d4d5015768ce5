package agent

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmwatch/shmwatch/internal/podtree"
)

// TestWithGrowthOnRealTmpfs: a container writing 1 MiB to its emptyDir
// every 100 ms gets a tmpfs and a memcg time to full that match the rate
// the kernel saw over the window (statfs before and after); a pod whose
// writer stopped gets no tmpfs time to full.
func TestWithGrowthOnRealTmpfs(t *testing.T) {
	const (
		limit  = 256 << 20
		size   = 96 << 20
		window = 3 * time.Second
	)
	tree := podtree.New(t)
	growing, growShm := limitedPodWithEmptyDir(t, tree, limit, size)
	still, stillShm := limitedPodWithEmptyDir(t, tree, limit, size)
	if _, err := still.Start(stillShm, 4<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := growing.StartWriter(growShm, 1<<20, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	fs, scanner := hostReaders(t)
	c := NewCollector(Config{CgroupRoot: tree.CgroupRoot}, fs, scanner, nil, nil)
	snap, err := c.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	usedBefore := tmpfsUsed(t, growShm)
	out := c.WithGrowth(context.Background(), snap, window)
	elapsed := time.Since(start).Seconds()
	usedAfter := tmpfsUsed(t, growShm)
	if out.GrowthWindow != window.Seconds() || snap.GrowthWindow != 0 {
		t.Fatalf("growth window: copy %v, original %v (want %v and 0)", out.GrowthWindow, snap.GrowthWindow, window.Seconds())
	}
	rate := float64(usedAfter-usedBefore) / elapsed
	if rate < 1<<20 {
		t.Fatalf("the writer wrote %.0f B/s; the test needs a steady writer", rate)
	}

	g := podOf(t, out, growing.Path)
	if len(g.Shm) != 1 || g.Shm[0].FullIn == nil {
		t.Fatalf("growing pod: shm %+v, want one tmpfs with a time to full", g.Shm)
	}
	wantShm := float64(size-usedAfter) / rate
	near(t, "tmpfs full in (s)", *g.Shm[0].FullIn, wantShm)
	if g.MemoryFullIn == nil {
		t.Fatal("growing pod: no memory time to full (tmpfs pages are charged to it)")
	}
	ws, err := podtree.Stat(growing.Dir, "total_inactive_file")
	if err != nil {
		t.Fatal(err)
	}
	usage, err := podtree.ReadUint(growing.Dir, "memory.usage_in_bytes")
	if err != nil {
		t.Fatal(err)
	}
	near(t, "memory full in (s)", *g.MemoryFullIn, float64(limit-(usage-ws))/rate)
	if orig := podOf(t, snap, growing.Path); orig.Shm[0].FullIn != nil || orig.MemoryFullIn != nil {
		t.Error("WithGrowth changed the snapshot it was given")
	}

	s := podOf(t, out, still.Path)
	if len(s.Shm) != 1 || s.Shm[0].FullIn != nil {
		t.Errorf("still pod: shm %+v, want one tmpfs with no time to full", s.Shm)
	}
	// An idle cgroup's usage moves by a few pages; any time to full it
	// gets must be far off.
	if s.MemoryFullIn != nil && *s.MemoryFullIn < 3600 {
		t.Errorf("still pod: memory full in %.0f s", *s.MemoryFullIn)
	}
	t.Logf("writer %.1f MiB/s; tmpfs full in %.1f s (kernel rate: %.1f s), memory full in %.1f s",
		rate/(1<<20), *g.Shm[0].FullIn, wantShm, *g.MemoryFullIn)
}

// limitedPodWithEmptyDir adds a burstable pod with a memory limit and a
// memory emptyDir "dshm" of size bytes; it returns the pod and the tmpfs.
func limitedPodWithEmptyDir(t *testing.T, tree *podtree.Tree, limit, size uint64) (*podtree.Pod, string) {
	t.Helper()
	p := tree.MustAddPod(podtree.Burstable)
	if err := p.SetLimit(limit); err != nil {
		t.Fatal(err)
	}
	shm, err := p.EmptyDir("dshm", size)
	if err != nil {
		t.Fatal(err)
	}
	return p, shm
}

// near fails unless got is within 40 % of want: the writer's rate jitters
// with the machine's load, a wrong formula is off by far more.
func near(t *testing.T, what string, got, want float64) {
	t.Helper()
	if got < 0.6*want || got > 1.4*want {
		t.Errorf("%s = %.1f, want %.1f ± 40 %%", what, got, want)
	}
}

func tmpfsUsed(t *testing.T, dir string) uint64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return (st.Blocks - st.Bfree) * uint64(st.Bsize)
}

func podOf(t *testing.T, s *Snapshot, cgPath string) Pod {
	t.Helper()
	for _, p := range s.Pods {
		if p.Cgroup == cgPath {
			return p
		}
	}
	t.Fatalf("pod %s not in the snapshot", cgPath)
	return Pod{}
}

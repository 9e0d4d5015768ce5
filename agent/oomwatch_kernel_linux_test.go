package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmwatch/shmwatch/cgroupfs"
	"github.com/shmwatch/shmwatch/internal/podtree"
	"github.com/shmwatch/shmwatch/internal/realkernel"
	"github.com/shmwatch/shmwatch/shmscan"
)

func TestMain(m *testing.M) {
	podtree.RunOOMHelper()
	os.Exit(m.Run())
}

// TestOOMWatchKernel is the 20-kill test without a shell or podtree, so it
// runs on cgroup v2 and v1 alike (the VM rig): a pod cgroup with a limit,
// a container cgroup whose process fills a tmpfs and is OOM-killed, the
// dead container's cgroup removed and a new one made at once.
func TestOOMWatchKernel(t *testing.T) {
	const (
		kills = 20
		fill  = 24 << 20
		limit = 64 << 20
	)
	fs, pod := kernelPod(t, limit)
	shmDir := t.TempDir()
	if err := unix.Mount("tmpfs", shmDir, "tmpfs", 0, "size=128m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(shmDir, unix.MNT_DETACH) })

	recorded := make(chan OOMKill, 2*kills)
	o, err := NewOOMWatch(fs, shmscan.NewScanner(shmscan.Config{ProcRoot: "/proc", HostPID: os.Getpid(), StatfsTimeout: 2 * time.Second}),
		OOMConfig{OnKill: func(k OOMKill) { recorded <- k }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = o.Run(ctx) }()

	ctr := pod.newContainer(t)
	mounts := map[string][]shmscan.Mount{pod.path: {{HostPath: shmDir, Source: shmscan.SourceEmptyDir, Volume: "shm"}}}
	o.Sync([]Pod{{UID: "u", Cgroup: pod.path}}, []*cgroupfs.Pod{{Path: pod.path, Containers: []cgroupfs.Container{ctr}}}, mounts)

	var sinceDeath []time.Duration
	exact, near := 0, 0
	var replaced time.Duration // the test's own removal and mkdir; rmdir waits for the dead process to leave
	for i := range kills {
		podtree.KillInCgroup(t, fs.Hierarchy.MemoryRoot+ctr.Path, filepath.Join(shmDir, "fill"), fill)
		dead := time.Now()
		// containerd removes a dead container's cgroup after its shim
		// reports the exit, hundreds of ms later; 100 ms is inside the
		// 200 ms the proof asks for (docs/oom.md: what v1 can miss).
		time.Sleep(100 * time.Millisecond)
		pod.removeContainer(t, ctr)
		ctr = pod.newContainer(t)
		replaced = max(replaced, time.Since(dead))
		k, ok := waitKill(recorded)
		if !ok {
			t.Fatalf("kill %d: not recorded within 10s", i)
		}
		sinceDeath = append(sinceDeath, k.Time.Sub(dead))
		if len(k.Shm) != 1 || k.Shm[0].Used == nil || *k.Shm[0].Used != fill {
			t.Errorf("kill %d: shm %+v, want %d used", i, k.Shm, fill)
		}
		// memory.stat is flushed from per-CPU counters lazily (rate-limited
		// on recent kernels), so a read right after a kill can lag on a
		// loaded machine: most kills must agree, statfs every one.
		switch {
		case k.Memory.Shmem == nil:
			t.Errorf("kill %d: pod shmem absent", i)
		case *k.Memory.Shmem == fill:
			exact++
			near++
		case statClose(*k.Memory.Shmem, fill):
			near++
		default:
			t.Logf("kill %d: pod shmem %d lags the %d written", i, *k.Memory.Shmem, fill)
		}
		if rec, _ := o.Pod(pod.path); rec.Kills != uint64(i+1) {
			t.Fatalf("after kill %d: pod count %d (last %+v)", i+1, rec.Kills, k)
		}
	}
	if near < kills*3/4 {
		t.Errorf("memory.stat shmem within 1/8 of the bytes written in %d of %d kills, want 3/4", near, kills)
	}
	select {
	case k := <-recorded:
		t.Fatalf("a kill recorded twice: %+v", k)
	case <-time.After(500 * time.Millisecond):
	}
	t.Logf("kernel %s, cgroup %s, %s: record after the test reaped the killed process: p50 %v max %v (negative: recorded before); memory.stat shmem exact in %d of %d kills (statfs in all); dead container replaced within %v (removed 100 ms after the kill)",
		kernelRelease(), fs.Hierarchy.Mode, o.Kind(), p50(sinceDeath), slices.Max(sinceDeath), exact, kills, replaced)
}

// kernelPodCgroup is a pod-shaped cgroup below a root unique to the test.
type kernelPodCgroup struct {
	fs   *cgroupfs.FS
	root string // absolute
	path string // pod cgroup, relative to MemoryRoot
}

func kernelPod(t *testing.T, limit uint64) (*cgroupfs.FS, *kernelPodCgroup) {
	t.Helper()
	if os.Geteuid() != 0 {
		realkernel.Skip(t, "needs root")
	}
	fs, err := cgroupfs.NewFS("/proc")
	if err != nil {
		realkernel.Skip(t, "no memory cgroup hierarchy: %v", err)
	}
	name := podtree.UniqueName(t)
	p := &kernelPodCgroup{fs: fs, root: filepath.Join(fs.Hierarchy.MemoryRoot, name), path: "/" + name + "/pod" + podtree.NewUID()}
	if err := os.Mkdir(p.root, 0o755); err != nil {
		realkernel.Skip(t, "memory hierarchy not writable: %v", err)
	}
	t.Cleanup(func() { _ = rmdirWait(p.root) })
	v2 := fs.Hierarchy.Mode == cgroupfs.ModeV2
	if v2 {
		mustWrite(t, filepath.Join(p.root, "cgroup.subtree_control"), "+memory")
	}
	podDir := fs.Hierarchy.MemoryRoot + p.path
	if err := os.Mkdir(podDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rmdirWait(podDir) })
	if v2 {
		mustWrite(t, filepath.Join(podDir, "cgroup.subtree_control"), "+memory")
		mustWrite(t, filepath.Join(podDir, "memory.max"), strconv.FormatUint(limit, 10))
		_ = os.WriteFile(filepath.Join(podDir, "memory.swap.max"), []byte("0"), 0)
	} else {
		mustWrite(t, filepath.Join(podDir, "memory.limit_in_bytes"), strconv.FormatUint(limit, 10))
	}
	return fs, p
}

// newContainer makes a containerd-named container cgroup, with
// memory.oom.group on v2 as the kubelet sets it.
func (p *kernelPodCgroup) newContainer(t *testing.T) cgroupfs.Container {
	t.Helper()
	id := podtree.RandomHex(32)
	ct := cgroupfs.Container{ID: id, Runtime: cgroupfs.RuntimeContainerd, Path: p.path + "/" + id}
	dir := p.fs.Hierarchy.MemoryRoot + ct.Path
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rmdirWait(dir) })
	if p.fs.Hierarchy.Mode == cgroupfs.ModeV2 {
		mustWrite(t, filepath.Join(dir, "memory.oom.group"), "1")
	}
	return ct
}

func (p *kernelPodCgroup) removeContainer(t *testing.T, ct cgroupfs.Container) {
	t.Helper()
	if err := rmdirWait(p.fs.Hierarchy.MemoryRoot + ct.Path); err != nil {
		t.Fatal(err)
	}
}

func rmdirWait(dir string) error {
	var err error
	for range 250 {
		if err = unix.Rmdir(dir); err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return fmt.Errorf("rmdir %s: %w", dir, err)
}

func mustWrite(t *testing.T, file, v string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(v), 0); err != nil {
		t.Fatal(err)
	}
}

// statClose compares memory.stat with the truth (statfs) within the
// kernel's stat batching: stat reads flush per-CPU updates only past a
// threshold, and not at all while a flush is in progress elsewhere; under
// load after an OOM a few MiB can be pending. 1/8 of the fill is far below
// any other page count of the pod, so a wrong field still fails.
func statClose(got, want uint64) bool {
	slack := want / 8
	return got+slack >= want && got <= want+slack
}

package agent

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/shmwatch/shmwatch/cgroupfs"
	"github.com/shmwatch/shmwatch/internal/podtree"
	"github.com/shmwatch/shmwatch/shmscan"
)

// TestOOMWatchChurn creates and removes 1000 container cgroups in a watched
// pod, with an OOM kill every 100th: every kill counted, and the watches,
// fds and goroutines back where they started.
func TestOOMWatchChurn(t *testing.T) {
	const cycles, killEvery = 1000, 100
	fs, pod := kernelPod(t, 64<<20)
	shmDir := t.TempDir()
	o, err := NewOOMWatch(fs, shmscan.NewScanner(shmscan.Config{ProcRoot: "/proc", HostPID: os.Getpid(), StatfsTimeout: time.Second}), OOMConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = o.Run(ctx) }()
	o.Sync([]Pod{{UID: "u", Cgroup: pod.path}}, []*cgroupfs.Pod{{Path: pod.path}}, nil)
	time.Sleep(100 * time.Millisecond) // Run starts its dispatch goroutine
	watches, fds, goroutines := o.Watches(), o.FDs(), runtime.NumGoroutine()

	kills := 0
	for i := range cycles {
		ct := pod.newContainer(t)
		waitFor(t, func() bool { return fs.Hierarchy.Mode == cgroupfs.ModeV2 || o.Watches() == watches+1 }, "the new container watched")
		if i%killEvery == 0 {
			podtree.KillInCgroup(t, fs.Hierarchy.MemoryRoot+ct.Path, filepath.Join(shmDir, "fill"), 4<<20)
			kills++
			waitFor(t, func() bool { rec, _ := o.Pod(pod.path); return rec.Kills == uint64(kills) }, "the kill counted")
		}
		pod.removeContainer(t, ct)
	}
	// v1: the removal wake-up drops each watch; v2 watches only the pod.
	waitFor(t, func() bool { return o.Watches() == watches && o.FDs() == fds }, "watches and fds back")
	if !eventually(func() bool { return runtime.NumGoroutine() <= goroutines }) {
		buf := make([]byte, 1<<16)
		t.Fatalf("goroutines %d, before %d:\n%s", runtime.NumGoroutine(), goroutines, buf[:runtime.Stack(buf, true)])
	}
	rec, _ := o.Pod(pod.path)
	t.Logf("%d cycles, %d kills counted %d; watches %d fds %d goroutines %d (before: %d %d %d)",
		cycles, kills, rec.Kills, o.Watches(), o.FDs(), runtime.NumGoroutine(), watches, fds, goroutines)
	if rec.Kills != uint64(kills) {
		t.Fatalf("kills counted %d, want %d", rec.Kills, kills)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	if !eventually(cond) {
		t.Fatalf("not within 10s: %s", what)
	}
}

func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

package oomwatch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/shmwatch/shmwatch/cgroupfs"
	"github.com/shmwatch/shmwatch/internal/podtree"
	"github.com/shmwatch/shmwatch/internal/realkernel"
)

func TestMain(m *testing.M) {
	podtree.RunOOMHelper()
	os.Exit(m.Run())
}

// testCgroup makes a cgroup unique to this test with a 32 MiB limit and
// removes it at cleanup; it skips without root or a writable hierarchy.
func testCgroup(t *testing.T) (cgroupfs.Hierarchy, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		realkernel.Skip(t, "needs root")
	}
	h, err := cgroupfs.DetectHierarchy("/proc")
	if err != nil {
		realkernel.Skip(t, "no memory cgroup hierarchy: %v", err)
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	dir := filepath.Join(h.MemoryRoot, fmt.Sprintf("shmwatch-oomwatch-%d-%s", os.Getpid(), hex.EncodeToString(r[:])))
	if err := os.Mkdir(dir, 0o755); err != nil {
		realkernel.Skip(t, "memory hierarchy not writable: %v", err)
	}
	t.Cleanup(func() { removeCgroup(t, dir) })
	limit := "memory.limit_in_bytes"
	if h.Mode == cgroupfs.ModeV2 {
		limit = "memory.max"
		_ = os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0)
	}
	if err := os.WriteFile(filepath.Join(dir, limit), []byte(strconv.Itoa(32<<20)), 0); err != nil {
		t.Fatal(err)
	}
	return h, dir
}

func removeCgroup(t *testing.T, dir string) {
	for i := 0; ; i++ {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		if i == 100 {
			t.Errorf("remove %s: %v", dir, err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func kindOf(h cgroupfs.Hierarchy) Kind {
	if h.Mode == cgroupfs.ModeV2 {
		return KindInotify
	}
	return KindEventfd
}

// TestWatcherOOMAndRemoval: an OOM kill in a watched cgroup wakes the
// watcher, a new child cgroup is reported, and removing the cgroup ends
// the watch (v1: with a Gone event; v2: by Unwatch) with no fd left.
func TestWatcherOOMAndRemoval(t *testing.T) {
	h, dir := testCgroup(t)
	// Watched below the hierarchy's root, as the agent does.
	rel := dir[len(h.MemoryRoot):]
	w, err := New(kindOf(h), h.MemoryRoot, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	fdsBefore := w.FDs()
	if err := w.Watch(rel); err != nil {
		t.Fatal(err)
	}
	if err := w.WatchChildren(rel); err != nil {
		t.Fatal(err)
	}
	events := make(chan Event, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, func(e Event) { events <- e }) }()

	podtree.KillInCgroup(t, dir, "", 0)
	wantEvent(t, events, Event{Dir: rel})
	fs := cgroupfs.NewFSAt(h, "/proc")
	if m := fs.MemoryFields(rel, cgroupfs.FieldEvents); m.OOMKills == nil || *m.OOMKills != 1 {
		t.Fatalf("oom_kill after one kill: %v (errors %v)", m.OOMKills, m.Errors)
	}

	child := filepath.Join(dir, "child")
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Fatal(err)
	}
	wantEvent(t, events, Event{Dir: rel, Created: "child"})
	if err := os.Remove(child); err != nil {
		t.Fatal(err)
	}

	removeCgroup(t, dir)
	if w.Kind() == KindEventfd {
		wantEvent(t, events, Event{Dir: rel, Gone: true})
	} else {
		// The inotify watch pins the removed file's inode: no IN_IGNORED
		// comes, the owner unwatches what its listing no longer has.
		w.Unwatch(rel)
		w.UnwatchChildren(rel)
	}
	deadline := time.Now().Add(5 * time.Second)
	for w.Watches() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := w.Watches(); n != 0 {
		t.Errorf("watches after removal: %d, want 0", n)
	}
	if n := w.FDs(); n != fdsBefore {
		t.Errorf("fds after removal: %d, want %d", n, fdsBefore)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v, want context.Canceled", err)
	}
}

// wantEvent waits for want, skipping OOM wake-ups of want.Dir that the
// kernel may send more than once for one kill.
func wantEvent(t *testing.T, events <-chan Event, want Event) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-events:
			if e == want {
				return
			}
			if e.Dir == want.Dir && !e.Gone && e.Created == "" {
				continue
			}
			t.Fatalf("event %+v, want %+v", e, want)
		case <-timeout:
			t.Fatalf("no event %+v within 10s", want)
		}
	}
}

func TestWatcherLimit(t *testing.T) {
	_, dir := testCgroup(t)
	h, _ := cgroupfs.DetectHierarchy("/proc")
	w, err := New(kindOf(h), "", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Watch(dir); err != nil {
		t.Fatal(err)
	}
	if err := w.WatchChildren(dir); !errors.Is(err, ErrTooMany) {
		t.Fatalf("second watch: %v, want ErrTooMany", err)
	}
	w.Unwatch(dir)
	if n := w.Watches(); n != 0 {
		t.Fatalf("watches after Unwatch: %d", n)
	}
}

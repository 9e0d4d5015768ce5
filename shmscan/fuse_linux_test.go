package shmscan

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmwatch/shmwatch/internal/podtree"
)

// mountHungFS mounts the repo's FUSE test server (podtree.HungFUSE) and
// returns it, its mount point and its device.
func mountHungFS(t *testing.T) (*podtree.HungFUSE, string, string) {
	t.Helper()
	h := podtree.MountHungFUSE(t)
	return h, h.Dir, h.Device(t)
}

func itoa(n int) string { return strconv.Itoa(n) }

func statHost(s *Scanner, m Mount) (Usage, error) {
	r := s.StatHosts([]Mount{m})[0]
	return r.Usage, r.Err
}

// A FUSE filesystem that never answers statfs: StatHosts times out with
// ErrStuck, the mount is listed by Stuck, later calls fail fast without a
// second statfs reaching the filesystem, and once the stuck statfs returns the
// mount is measured again.
func TestFUSEStatfsStuck(t *testing.T) {
	requireRoot(t)
	h, dir, dev := mountHungFS(t)
	const timeout = time.Second
	s := NewScanner(Config{HostPID: os.Getpid(), StatfsTimeout: timeout})
	m := Mount{HostPath: dir, Device: dev}

	start := time.Now()
	_, err := statHost(s, m)
	if !errors.Is(err, ErrStuck) {
		t.Fatalf("first StatHost: %v, want ErrStuck", err)
	}
	t.Logf("first StatHost: %v after %v", err, time.Since(start).Round(time.Millisecond))
	if got := s.Stuck(); len(got) != 1 || got[0] != dev {
		t.Fatalf("Stuck() = %v, want [%s]", got, dev)
	}

	start = time.Now()
	for i := 0; i < 5; i++ {
		if _, err := statHost(s, m); !errors.Is(err, ErrStuck) {
			t.Fatalf("StatHost while stuck: %v", err)
		}
	}
	// Five calls took far less than one timeout: none of them waited.
	if d := time.Since(start); d >= timeout {
		t.Errorf("5 calls on a known-stuck mount took %v, want < %v", d, timeout)
	}
	if n := h.StatfsRequests(); n != 1 {
		t.Errorf("FUSE server saw %d STATFS requests, want 1 (no second goroutine on a stuck mount)", n)
	}

	h.Answer()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.Stuck()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still stuck after the statfs returned: %v", s.Stuck())
		}
		time.Sleep(10 * time.Millisecond)
	}
	u, err := statHost(s, m)
	if err != nil {
		t.Fatalf("StatHost after release: %v", err)
	}
	const bs = podtree.AnsweredBlockSize
	want := Usage{SizeBytes: podtree.AnsweredBlocks * bs, UsedBytes: (podtree.AnsweredBlocks - podtree.AnsweredFree) * bs,
		AvailableBytes: podtree.AnsweredFree * bs, Inodes: podtree.AnsweredInodes, InodesFree: podtree.AnsweredInodesFree}
	if u != want {
		t.Errorf("StatHost = %+v, want %+v", u, want)
	}
	if n := h.StatfsRequests(); n != 2 {
		t.Errorf("FUSE server saw %d STATFS requests, want 2", n)
	}
}

// StatHosts over tmpfs mounts around a FUSE mount that never answers:
// each tmpfs is measured (the ones after the stuck mount too),
// the stuck one fails with ErrStuck after one timeout, the whole call
// waits about one timeout, and a second call fails the stuck mount at once
// without a second STATFS while measuring the others again.
func TestStatHostsAroundStuckMount(t *testing.T) {
	requireRoot(t)
	h, fuseDir, fuseDev := mountHungFS(t)
	t.Cleanup(h.Answer)
	base := t.TempDir()
	var ms []Mount
	sizes := []uint64{1, 2, 3, 4}
	for i, mib := range sizes {
		dir := base + "/shm" + itoa(i)
		mountTmpfs(t, dir, 0, "size="+itoa(int(mib))+"m")
		var stx unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, dir, 0, unix.STATX_TYPE, &stx); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, Mount{HostPath: dir, Device: itoa(int(stx.Dev_major)) + ":" + itoa(int(stx.Dev_minor))})
	}
	stuckAt := 2
	ms = append(ms[:stuckAt], append([]Mount{{HostPath: fuseDir, Device: fuseDev}}, ms[stuckAt:]...)...)
	ms = append(ms, Mount{HostPath: "relative/path"})
	const timeout = time.Second
	s := NewScanner(Config{HostPID: os.Getpid(), StatfsTimeout: timeout})

	check := func(round int, res []HostStat) {
		t.Helper()
		if len(res) != len(ms) {
			t.Fatalf("round %d: %d results for %d mounts", round, len(res), len(ms))
		}
		tmpfs := 0
		for i, r := range res {
			switch {
			case i == stuckAt:
				if !errors.Is(r.Err, ErrStuck) {
					t.Errorf("round %d: stuck FUSE mount: %v, want ErrStuck", round, r.Err)
				}
			case i == len(ms)-1:
				if r.Err == nil || !strings.Contains(r.Err.Error(), "relative/path") {
					t.Errorf("round %d: relative host path: %v, want an error naming it", round, r.Err)
				}
			default:
				want := sizes[tmpfs] << 20
				tmpfs++
				if r.Err != nil || r.Usage.SizeBytes != want || r.Usage.UsedBytes != 0 {
					t.Errorf("round %d: %s = %+v, %v; want size %d, used 0", round, ms[i].HostPath, r.Usage, r.Err, want)
				}
			}
		}
	}
	start := time.Now()
	check(1, s.StatHosts(ms))
	// One timeout, not two: the slack is for a loaded 2-core machine.
	if d := time.Since(start); d < timeout || d > timeout*19/10 {
		t.Errorf("first call took %v, want about one timeout (%v)", d, timeout)
	}
	start = time.Now()
	check(2, s.StatHosts(ms))
	if d := time.Since(start); d >= timeout {
		t.Errorf("second call took %v: it waited on a known-stuck mount", d)
	}
	if n := h.StatfsRequests(); n != 1 {
		t.Errorf("FUSE server saw %d STATFS requests, want 1", n)
	}
	if got := s.Stuck(); len(got) != 1 || got[0] != fuseDev {
		t.Errorf("Stuck() = %v, want [%s]", got, fuseDev)
	}
}

// A slow mount answered within the timeout, then a fast one: neither is
// reported stuck. The second mount's timeout counts from its own statfs,
// never from the slow one's start. (The batch worker this replaced stored
// "job j finished" before "job j+1 started", so a timer tick between the
// two stores timed the fast mount from the slow one's start and marked it
// stuck.)
func TestStatHostsSlowThenFastMount(t *testing.T) {
	requireRoot(t)
	h, fuseDir, fuseDev := mountHungFS(t)
	dir := t.TempDir() + "/shm"
	mountTmpfs(t, dir, 0, "size=1m")
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, dir, 0, unix.STATX_TYPE, &stx); err != nil {
		t.Fatal(err)
	}
	tmpfs := Mount{HostPath: dir, Device: itoa(int(stx.Dev_major)) + ":" + itoa(int(stx.Dev_minor))}
	const timeout = time.Second
	s := NewScanner(Config{HostPID: os.Getpid(), StatfsTimeout: timeout})
	released := make(chan struct{})
	go func() { // answer the FUSE statfs well within the timeout
		defer close(released)
		time.Sleep(timeout * 6 / 10)
		h.Answer()
	}()
	t.Cleanup(func() { <-released })
	res := s.StatHosts([]Mount{{HostPath: fuseDir, Device: fuseDev}, tmpfs})
	for i, r := range res {
		if r.Err != nil {
			t.Errorf("mount %d: %v", i, r.Err)
		}
	}
	if res[1].Usage.SizeBytes != 1<<20 {
		t.Errorf("tmpfs size %d, want %d", res[1].Usage.SizeBytes, 1<<20)
	}
	if got := s.Stuck(); len(got) != 0 {
		t.Errorf("Stuck() = %v, want none", got)
	}
}

package shmscan

import (
	"encoding/binary"
	"errors"
	"github.com/shmwatch/shmwatch/internal/realkernel"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FUSE opcodes and sizes from <linux/fuse.h>.
const (
	fuseForget      = 2
	fuseStatfs      = 17
	fuseInit        = 26
	fuseInterrupt   = 36
	fuseBatchForget = 42
	fuseInHeader    = 40
)

// hungFS is a minimal FUSE server written against /dev/fuse directly: it
// answers INIT, refuses everything else with ENOSYS, and holds every STATFS
// without answering until release is called. It counts the STATFS requests
// the kernel sent, so a test can prove shmscan never asked twice.
type hungFS struct {
	fd      int
	statfs  atomic.Int32
	mu      sync.Mutex
	held    []uint64 // unique ids of unanswered STATFS
	release chan struct{}
	inited  chan struct{}
}

func (h *hungFS) serve() {
	buf := make([]byte, 1<<17+4096)
	for {
		n, err := unix.Read(h.fd, buf)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOENT) { // ENOENT: request interrupted
			continue
		}
		if err != nil || n < fuseInHeader {
			return // ENODEV after unmount
		}
		op := binary.LittleEndian.Uint32(buf[4:])
		unique := binary.LittleEndian.Uint64(buf[8:])
		switch op {
		case fuseInit:
			out := make([]byte, 64)
			binary.LittleEndian.PutUint32(out[0:], 7)      // major
			binary.LittleEndian.PutUint32(out[4:], 31)     // minor
			binary.LittleEndian.PutUint32(out[20:], 65536) // max_write
			binary.LittleEndian.PutUint32(out[24:], 1)     // time_gran
			h.reply(unique, 0, out)
			close(h.inited)
		case fuseStatfs:
			h.statfs.Add(1)
			select {
			case <-h.release:
				h.answerStatfs(unique)
			default:
				h.mu.Lock()
				h.held = append(h.held, unique)
				h.mu.Unlock()
			}
		case fuseForget, fuseBatchForget, fuseInterrupt:
		default:
			h.reply(unique, -int32(unix.ENOSYS), nil)
		}
	}
}

func (h *hungFS) reply(unique uint64, errno int32, body []byte) {
	out := make([]byte, 16+len(body))
	binary.LittleEndian.PutUint32(out[0:], uint32(len(out)))
	binary.LittleEndian.PutUint32(out[4:], uint32(errno))
	binary.LittleEndian.PutUint64(out[8:], unique)
	copy(out[16:], body)
	_, _ = unix.Write(h.fd, out)
}

// answerStatfs replies 1000 blocks of 4 KiB, 250 free.
func (h *hungFS) answerStatfs(unique uint64) {
	st := make([]byte, 80)
	binary.LittleEndian.PutUint64(st[0:], 1000) // blocks
	binary.LittleEndian.PutUint64(st[8:], 250)  // bfree
	binary.LittleEndian.PutUint64(st[16:], 250) // bavail
	binary.LittleEndian.PutUint64(st[24:], 10)  // files
	binary.LittleEndian.PutUint64(st[32:], 5)   // ffree
	binary.LittleEndian.PutUint32(st[40:], 4096)
	binary.LittleEndian.PutUint32(st[44:], 255)
	binary.LittleEndian.PutUint32(st[48:], 4096) // frsize
	h.reply(unique, 0, st)
}

// unblock answers the held STATFS and every later one.
func (h *hungFS) unblock() {
	close(h.release)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, u := range h.held {
		h.answerStatfs(u)
	}
	h.held = nil
}

// mountHungFS mounts a hungFS at a new temp dir and returns it and the mount's
// device from our own mount table.
func mountHungFS(t *testing.T) (*hungFS, string, string) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); errors.Is(err, os.ErrNotExist) {
		// A minimal /dev (the VM rig's) lacks the node the kernel serves.
		_ = unix.Mknod("/dev/fuse", unix.S_IFCHR|0o666, int(unix.Mkdev(10, 229)))
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENODEV) && os.Getenv("VMRIG") == "1" {
		t.Skip("the VM rig's kernel has no fuse module loaded; the host run covers FUSE")
	}
	if err != nil {
		realkernel.Skip(t, "open /dev/fuse: %v", err)
	}
	dir := t.TempDir()
	opts := "fd=" + itoa(fd) + ",rootmode=40000,user_id=0,group_id=0"
	if err := unix.Mount("shmscantest", dir, "fuse.shmscantest", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		unix.Close(fd)
		realkernel.Skip(t, "mount fuse: %v", err)
	}
	h := &hungFS{fd: fd, release: make(chan struct{}), inited: make(chan struct{})}
	// Order matters at cleanup: unmount (aborting what is held), then close.
	t.Cleanup(func() { unix.Close(fd) })
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	go h.serve()
	select {
	case <-h.inited:
	case <-time.After(10 * time.Second):
		t.Fatal("FUSE INIT never came")
	}
	data, err := readCappedInto("/proc/self/mountinfo", new([]byte))
	if err != nil {
		t.Fatal(err)
	}
	es, err := parseMountinfo(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.mountPoint == dir && strings.HasPrefix(e.fsType, "fuse") {
			return h, dir, e.device
		}
	}
	t.Fatalf("FUSE mount %s not in /proc/self/mountinfo", dir)
	return nil, "", ""
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
	if n := h.statfs.Load(); n != 1 {
		t.Errorf("FUSE server saw %d STATFS requests, want 1 (no second goroutine on a stuck mount)", n)
	}

	h.unblock()
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
	want := Usage{SizeBytes: 1000 * 4096, UsedBytes: 750 * 4096, AvailableBytes: 250 * 4096, Inodes: 10, InodesFree: 5}
	if u != want {
		t.Errorf("StatHost = %+v, want %+v", u, want)
	}
	if n := h.statfs.Load(); n != 2 {
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
	t.Cleanup(h.unblock)
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
	if n := h.statfs.Load(); n != 1 {
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
		h.unblock()
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

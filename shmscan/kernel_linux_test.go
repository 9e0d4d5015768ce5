package shmscan

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/shmwatch/shmwatch/internal/realkernel"
)

const mib = 1 << 20

// A runtime-style 64 MiB shm at a containerd-shaped host path, filled to
// ENOSPC from inside the container: ContainerShm must report it as the
// sandbox's runtime shm, full (the tmpfs binds: agent.Bind).
func TestKernelRuntimeShmENOSPC(t *testing.T) {
	requireRoot(t)
	id := randomHex(32)
	host := filepath.Join(t.TempDir(), "state", "io.containerd.grpc.v1.cri", "sandboxes", id, "shm")
	mountTmpfs(t, host, unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k")
	c := startContainer(t, host, "", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=100 2>&1; echo dd_exit=$?")
	if !strings.Contains(c.output, "No space left on device") || strings.Contains(c.output, "dd_exit=0") {
		t.Fatalf("dd did not hit ENOSPC: %q", c.output)
	}

	s := selfScanner()
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	m, u, ok, err := s.ContainerShm([]int{c.pid})
	if err != nil || !ok {
		t.Fatalf("ContainerShm: ok=%v err=%v", ok, err)
	}
	kernel := statfsHost(t, host)
	t.Logf("kernel statfs %s: size=%d used=%d avail=%d; shmscan: size=%d used=%d avail=%d size=%v",
		host, kernel.SizeBytes, kernel.UsedBytes, kernel.AvailableBytes, u.SizeBytes, u.UsedBytes, u.AvailableBytes, *m.SizeOption)
	if diff := cmp.Diff(kernel, u); diff != "" {
		t.Errorf("usage differs from the kernel's statfs (-kernel +shmscan):\n%s", diff)
	}
	want := Mount{Device: m.Device, FSType: "tmpfs", MountPoint: "/dev/shm", HostPath: host,
		Source: SourceRuntime, SandboxID: id, SizeOption: u64(64 * mib), AtDevShm: true}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("mount (-want +got):\n%s", diff)
	}
	if u.SizeBytes != 64*mib || u.AvailableBytes != 0 || u.UsedBytes != 64*mib {
		t.Errorf("want a full 64 MiB tmpfs, got %+v", u)
	}
}

// An emptyDir-shaped 128 MiB tmpfs written by a process in a 32 MiB memcg:
// the memcg's headroom is below the tmpfs's (the memcg binds: agent.Bind),
// and the numbers are the kernel's (memory.stat shmem, usage_in_bytes, statfs).
func TestKernelEmptyDirMemcgBinds(t *testing.T) {
	requireRoot(t)
	requireMemcgV1(t)
	const limit = 32 * mib
	cg := newMemcg(t, limit)
	uid := "0b7e8d4a-" + randomHex(4) + "-4c1d-9e2f-" + randomHex(6)
	host := filepath.Join(t.TempDir(), "kubelet", "pods", uid, "volumes", "kubernetes.io~empty-dir", "dshm")
	mountTmpfs(t, host, 0, "size=128m")
	c := startContainer(t, host, cg.dir, "dd if=/dev/zero of=/dev/shm/data bs=1M count=8 2>&1; echo dd_exit=$?")
	if !strings.Contains(c.output, "dd_exit=0") {
		t.Fatalf("dd failed: %q", c.output)
	}

	s := selfScanner()
	m, u, ok, err := s.ContainerShm([]int{c.pid})
	if err != nil || !ok {
		t.Fatalf("ContainerShm: ok=%v err=%v", ok, err)
	}
	shmem := cg.stat(t, "shmem")
	ws := cg.workingSet(t)
	kernel := statfsHost(t, host)
	t.Logf("kernel: statfs size=%d used=%d avail=%d; memory.stat shmem=%d, working set=%d, limit=%d; shmscan: size=%d used=%d avail=%d",
		kernel.SizeBytes, kernel.UsedBytes, kernel.AvailableBytes, shmem, ws, limit, u.SizeBytes, u.UsedBytes, u.AvailableBytes)
	if diff := cmp.Diff(kernel, u); diff != "" {
		t.Errorf("usage differs from the kernel's statfs (-kernel +shmscan):\n%s", diff)
	}
	if shmem != 8*mib || u.UsedBytes != shmem {
		t.Errorf("memory.stat shmem=%d, statfs used=%d, want both 8 MiB", shmem, u.UsedBytes)
	}
	if m.Source != SourceEmptyDir || m.Volume != "dshm" || m.PodUID != uid || m.HostPath != host || m.SizeOption == nil || *m.SizeOption != 128*mib {
		t.Errorf("mount = %+v", m)
	}
	if ws >= limit || limit-ws >= u.AvailableBytes {
		t.Errorf("memcg headroom %d-%d not below tmpfs available %d", limit, ws, u.AvailableBytes)
	}
	if got := s.MemoryEmptyDirs(uid); len(got) != 1 || got[0].Device != m.Device || got[0].Volume != "dshm" {
		t.Errorf("MemoryEmptyDirs(%s) = %+v", uid, got)
	}
}

// Two containers of one pod, each in its own mount namespace, see one tmpfs:
// the same Device, one shm after Unique.
func TestKernelSharedShmIsOne(t *testing.T) {
	requireRoot(t)
	uid := "5f0c2b9e-" + randomHex(4) + "-4a7b-8c3d-" + randomHex(6)
	host := filepath.Join(t.TempDir(), "kubelet", "pods", uid, "volumes", "kubernetes.io~empty-dir", "dshm")
	mountTmpfs(t, host, 0, "size=64m")
	a := startContainer(t, host, "", "dd if=/dev/zero of=/dev/shm/a bs=1M count=2 2>/dev/null")
	b := startContainer(t, host, "", "dd if=/dev/zero of=/dev/shm/b bs=1M count=1 2>/dev/null")
	if nsInode(t, a.pid) == nsInode(t, b.pid) {
		t.Fatal("the two containers share a mount namespace")
	}
	s := selfScanner()
	ma, ua, _, errA := s.ContainerShm([]int{a.pid})
	mb, ub, _, errB := s.ContainerShm([]int{b.pid})
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	if ma.Device != mb.Device || ua.UsedBytes != 3*mib || ub.UsedBytes != 3*mib {
		t.Errorf("a=%s %d, b=%s %d: want one device with 3 MiB used", ma.Device, ua.UsedBytes, mb.Device, ub.UsedBytes)
	}
	if len(s.ns) != 2 {
		t.Errorf("cached %d mount namespaces, want 2", len(s.ns))
	}
}

// A container whose first pid has gone is measured through the next; when all
// are gone the answer is an error, never zeros.
func TestKernelPidGone(t *testing.T) {
	requireRoot(t)
	host := filepath.Join(t.TempDir(), "run", "containerd", "io.containerd.grpc.v1.cri", "sandboxes", randomHex(32), "shm")
	mountTmpfs(t, host, 0, "size=64m")
	first := startContainer(t, host, "", "dd if=/dev/zero of=/dev/shm/x bs=1M count=4 2>/dev/null")
	second := startContainer(t, host, "", "true")
	s := selfScanner()
	pids := []int{first.pid, second.pid}
	if _, u, ok, err := s.ContainerShm(pids); err != nil || !ok || u.UsedBytes != 4*mib {
		t.Fatalf("both alive: ok=%v err=%v used=%d", ok, err, u.UsedBytes)
	}

	first.kill()
	m, u, ok, err := s.ContainerShm(pids)
	if err != nil || !ok || u.UsedBytes != 4*mib || m.Source != SourceRuntime {
		t.Fatalf("first gone: ok=%v err=%v used=%d source=%s", ok, err, u.UsedBytes, m.Source)
	}

	second.kill()
	m, u, ok, err = s.ContainerShm(pids)
	if !errors.Is(err, ErrNoProcess) || ok || m != (Mount{}) || u != (Usage{}) {
		t.Fatalf("all gone: ok=%v err=%v m=%+v u=%+v, want ErrNoProcess and zero values", ok, err, m, u)
	}
	t.Logf("all gone: %v", err)
}

// A pid that never existed is ErrNoProcess, not zeros.
func TestKernelNoSuchPid(t *testing.T) {
	requireRoot(t)
	s := selfScanner()
	m, u, ok, err := s.ContainerShm([]int{1 << 30})
	if !errors.Is(err, ErrNoProcess) || ok || m != (Mount{}) || u != (Usage{}) {
		t.Errorf("nonexistent pid: ok=%v err=%v", ok, err)
	}
	if _, _, _, err := s.ContainerShm(nil); !errors.Is(err, ErrNoProcess) {
		t.Errorf("no pids: err=%v", err)
	}
}

// A container that sees the host's /dev/shm (hostIPC) is Source host; one
// whose /dev/shm is no mount at all is ok=false without error.
func TestKernelHostAndNoShm(t *testing.T) {
	requireRoot(t)
	var hostShm unix.Stat_t
	if err := unix.Stat("/dev/shm", &hostShm); err != nil {
		realkernel.Skip(t, "no host /dev/shm: %v", err)
	}
	hostIPC := startContainer(t, "", "", "true")
	none := startContainer(t, "", "", "while umount /dev/shm 2>/dev/null; do :; done")
	s := selfScanner()
	m, _, ok, err := s.ContainerShm([]int{hostIPC.pid})
	wantDev := fmt.Sprintf("%d:%d", unix.Major(hostShm.Dev), unix.Minor(hostShm.Dev))
	if err != nil || !ok || m.Source != SourceHost || m.HostPath != "/dev/shm" || m.Device != wantDev {
		t.Errorf("hostIPC: ok=%v err=%v m=%+v, want host %s", ok, err, m, wantDev)
	}
	m, u, ok, err := s.ContainerShm([]int{none.pid})
	if err != nil || ok || m != (Mount{}) || u != (Usage{}) {
		t.Errorf("no /dev/shm mount: ok=%v err=%v m=%+v", ok, err, m)
	}
}

// A cached mount namespace whose /dev/shm changes (here: a second tmpfs
// mounted over it, as a reused namespace inode would look) is re-read,
// because the device found at /dev/shm no longer matches the cache.
func TestKernelCachedNamespaceRevalidated(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	first := filepath.Join(dir, "a", "sandboxes", randomHex(32), "shm")
	secondID := randomHex(32)
	second := filepath.Join(dir, "b", "sandboxes", secondID, "shm")
	mountTmpfs(t, first, 0, "size=64m")
	mountTmpfs(t, second, 0, "size=32m")
	c := startContainer(t, first, "", "true")
	s := selfScanner()
	m1, _, _, err := s.ContainerShm([]int{c.pid})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nsenter", "-t", strconv.Itoa(c.pid), "-m", "mount", "--bind", second, "/dev/shm").CombinedOutput()
	if err != nil {
		realkernel.Skip(t, "nsenter mount: %v %s", err, out)
	}
	m2, u2, _, err := s.ContainerShm([]int{c.pid})
	if err != nil {
		t.Fatal(err)
	}
	if m1.Device == m2.Device || m2.SandboxID != secondID || u2.SizeBytes != 32*mib {
		t.Errorf("after remount: %+v %+v, want the 32 MiB sandbox %s", m2, u2, secondID)
	}
}

// ContainerShmMount names the same mount as ContainerShm, from the
// container's mountinfo alone: for a runtime shm and an emptyDir of the
// host table (with their host paths, which StatHosts then measures and
// checks), and for a tmpfs the container mounted itself, which has no host
// path and only ContainerShm can measure.
func TestKernelContainerShmMountWithoutStatfs(t *testing.T) {
	requireRoot(t)
	runtimeHost := filepath.Join(t.TempDir(), "state", "io.containerd.grpc.v1.cri", "sandboxes", randomHex(32), "shm")
	mountTmpfs(t, runtimeHost, unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k")
	uid := "7d1e3c5a-" + randomHex(4) + "-4b2c-9d3e-" + randomHex(6)
	emptyDirHost := filepath.Join(t.TempDir(), "kubelet", "pods", uid, "volumes", "kubernetes.io~empty-dir", "dshm")
	mountTmpfs(t, emptyDirHost, 0, "size=32m")
	containers := map[string]*container{
		"runtime":  startContainer(t, runtimeHost, "", "dd if=/dev/zero of=/dev/shm/a bs=1M count=3 2>/dev/null"),
		"emptyDir": startContainer(t, emptyDirHost, "", "dd if=/dev/zero of=/dev/shm/a bs=1M count=2 2>/dev/null"),
		"private":  startContainer(t, "", "", "mount -t tmpfs -o size=4m tmpfs /dev/shm || exit 1"),
	}
	s := selfScanner()
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	wantHost := map[string]string{"runtime": runtimeHost, "emptyDir": emptyDirHost, "private": ""}
	for name, c := range containers {
		resolved, ok, err := s.ContainerShmMount([]int{c.pid})
		if err != nil || !ok {
			t.Fatalf("%s: ContainerShmMount ok=%v err=%v", name, ok, err)
		}
		measured, u, ok, err := s.ContainerShm([]int{c.pid})
		if err != nil || !ok {
			t.Fatalf("%s: ContainerShm ok=%v err=%v", name, ok, err)
		}
		if diff := cmp.Diff(measured, resolved); diff != "" {
			t.Errorf("%s: mount (-ContainerShm +ContainerShmMount):\n%s", name, diff)
		}
		if resolved.HostPath != wantHost[name] {
			t.Errorf("%s: host path %q, want %q", name, resolved.HostPath, wantHost[name])
		}
		if resolved.HostPath != "" {
			r := s.StatHosts([]Mount{resolved})[0]
			if r.Err != nil || r.Usage != u {
				t.Errorf("%s: StatHosts at %s = %+v, %v; through the container %+v", name, resolved.HostPath, r.Usage, r.Err, u)
			}
		}
		t.Logf("%s: device %s source %s host path %q used %d of %d", name, resolved.Device, resolved.Source, resolved.HostPath, u.UsedBytes, u.SizeBytes)
	}
	if _, ok, err := s.ContainerShmMount([]int{1 << 30}); ok || !errors.Is(err, ErrNoProcess) {
		t.Errorf("no such pid: ok=%v err=%v, want ErrNoProcess", ok, err)
	}
}

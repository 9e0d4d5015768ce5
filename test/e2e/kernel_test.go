//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// The kernel's side of every comparison, read straight from the node: the tests run on
// the node as root. The rig is cgroup v1 with the kubelet's cgroupfs driver, cgroup root "/".

const (
	memcgV1 = "/sys/fs/cgroup/memory"
	memcgV2 = "/sys/fs/cgroup"
)

// memcgRoot is the memory hierarchy holding kubepods, and whether it is v1.
func memcgRoot() (string, bool) {
	if _, err := os.Stat(filepath.Join(memcgV1, "kubepods")); err == nil {
		return memcgV1, true
	}
	return memcgV2, false
}

// podCgroupDir is the kubelet's cgroupfs-driver pod cgroup: kubepods/pod<uid> for
// Guaranteed, kubepods/<qos>/pod<uid> otherwise.
func podCgroupDir(t *testing.T, p *corev1.Pod) string {
	t.Helper()
	root, _ := memcgRoot()
	dir := filepath.Join(root, "kubepods", "pod"+string(p.UID))
	if qos := strings.ToLower(string(p.Status.QOSClass)); qos != "guaranteed" {
		dir = filepath.Join(root, "kubepods", qos, "pod"+string(p.UID))
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("pod %s (qos %s): cgroup: %v", p.Name, p.Status.QOSClass, err)
	}
	return dir
}

func containerCgroupDir(t *testing.T, p *corev1.Pod, container string) string {
	t.Helper()
	return filepath.Join(podCgroupDir(t, p), containerID(t, p, container))
}

// readSmall reads a pseudo-file with one bounded read.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// keyed reads a "key value" file (memory.stat, memory.oom_control, memory.events).
func keyed(t *testing.T, path string) map[string]uint64 {
	t.Helper()
	b, err := readSmall(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
			out[f[0]] = v
		}
	}
	return out
}

func readUint(t *testing.T, path string) uint64 {
	t.Helper()
	b, err := readSmall(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return v
}

// kernelShmem is the pod's shmem as the kernel counts it: v1 total_shmem (hierarchical:
// the pages are charged to the container cgroups), v2 shmem.
func kernelShmem(t *testing.T, podDir string) uint64 {
	t.Helper()
	_, v1 := memcgRoot()
	key := "shmem"
	if v1 {
		key = "total_shmem"
	}
	v, ok := keyed(t, filepath.Join(podDir, "memory.stat"))[key]
	if !ok {
		t.Fatalf("%s/memory.stat has no %s", podDir, key)
	}
	return v
}

func kernelLimit(t *testing.T, dir string) uint64 {
	if _, v1 := memcgRoot(); v1 {
		return readUint(t, filepath.Join(dir, "memory.limit_in_bytes"))
	}
	return readUint(t, filepath.Join(dir, "memory.max"))
}

func kernelUsage(t *testing.T, dir string) uint64 {
	if _, v1 := memcgRoot(); v1 {
		return readUint(t, filepath.Join(dir, "memory.usage_in_bytes"))
	}
	return readUint(t, filepath.Join(dir, "memory.current"))
}

// kernelOOMKills is the container cgroup's OOM kill counter.
func kernelOOMKills(t *testing.T, dir string) uint64 {
	t.Helper()
	f := "memory.events"
	if _, v1 := memcgRoot(); v1 {
		f = "memory.oom_control"
	}
	return keyed(t, filepath.Join(dir, f))["oom_kill"]
}

// kernelLimitHits is how often the cgroup hit its limit: v1 memory.failcnt, v2 memory.events max.
func kernelLimitHits(t *testing.T, dir string) uint64 {
	t.Helper()
	if _, v1 := memcgRoot(); v1 {
		return readUint(t, filepath.Join(dir, "memory.failcnt"))
	}
	return keyed(t, filepath.Join(dir, "memory.events"))["max"]
}

// firstPID is a process in a container cgroup.
func firstPID(t *testing.T, dir string) int {
	t.Helper()
	b, err := readSmall(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatalf("%v", err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		t.Fatalf("%s: no processes", dir)
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		t.Fatalf("%s/cgroup.procs: %v", dir, err)
	}
	return pid
}

// mountEntry is one line of a mountinfo file.
// opts are the per-mount options (ro|rw,...), not the superblock's.
type mountEntry struct{ device, root, point, fstype, opts string }

func mountinfo(t *testing.T, pid string) []mountEntry {
	t.Helper()
	b, err := readSmall("/proc/" + pid + "/mountinfo")
	if err != nil {
		t.Fatalf("%v", err)
	}
	var out []mountEntry
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 6 || len(g) < 3 {
			continue
		}
		out = append(out, mountEntry{device: f[2], root: f[3], point: f[4], fstype: g[0], opts: f[5]})
	}
	return out
}

// hostShmPath is where the tmpfs at a process's /dev/shm is mounted in the host's mount
// namespace: the same device in /proc/1/mountinfo (sandbox shm or emptyDir volume dir).
func hostShmPath(t *testing.T, pid int) string {
	t.Helper()
	var dev string
	for _, m := range mountinfo(t, strconv.Itoa(pid)) {
		if m.point == "/dev/shm" {
			dev = m.device // the last mount at /dev/shm is the visible one
		}
	}
	if dev == "" {
		t.Fatalf("pid %d: nothing mounted at /dev/shm", pid)
	}
	for _, m := range mountinfo(t, "1") {
		if m.device == dev && m.root == "/" && m.fstype == "tmpfs" {
			return m.point
		}
	}
	t.Fatalf("pid %d: /dev/shm device %s not mounted in the host mount namespace", pid, dev)
	return ""
}

// fsUsage is one statfs, computed the way df does.
type fsUsage struct{ size, used, avail uint64 }

func statfs(t *testing.T, path string) fsUsage {
	t.Helper()
	var s unix.Statfs_t
	if err := unix.Statfs(path, &s); err != nil {
		t.Fatalf("statfs %s: %v", path, err)
	}
	bs := uint64(s.Frsize)
	return fsUsage{size: s.Blocks * bs, used: (s.Blocks - s.Bfree) * bs, avail: s.Bavail * bs}
}

// dfShm is `df -k /dev/shm` inside the container, in bytes.
func dfShm(t *testing.T, p *corev1.Pod, container string) fsUsage {
	t.Helper()
	// stdout only: kubectl logs its own warnings (websocket streams) to stderr.
	out, stderr, code := execSplit(t, p.Namespace, p.Name, container, "df", "-k", "/dev/shm")
	if code != 0 {
		t.Fatalf("df -k /dev/shm in %s exited %d: %s%s", p.Name, code, out, stderr)
	}
	return parseDf(t, out)
}

// dfShmNsenter is the container's own df -k /dev/shm (its busybox, its mount namespace)
// started from the host with nsenter, so that the process is not charged to the pod's
// memory cgroup: after an OOM kill the cgroup is full and a `kubectl exec` (runc init +
// df) can itself be OOM-killed.
func dfShmNsenter(t *testing.T, pid int) fsUsage {
	t.Helper()
	out, err := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-m", "-p", "--", "df", "-k", "/dev/shm").CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter -t %d -m -p df -k /dev/shm: %v: %s", pid, err, out)
	}
	return parseDf(t, string(out))
}

func parseDf(t *testing.T, out string) fsUsage {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) < 4 {
		t.Fatalf("df output: %q", out)
	}
	var v [3]uint64
	for i := range v {
		n, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			t.Fatalf("df output %q: %v", out, err)
		}
		v[i] = n * 1024
	}
	return fsUsage{size: v[0], used: v[1], avail: v[2]}
}

// dyingMemcgs is the kernel's count of dying memory cgroups. v1: /proc/cgroups counts
// every memcg not yet freed, the directories only the live ones. v2: nr_dying_descendants
// of the root.
func dyingMemcgs(t *testing.T) uint64 {
	t.Helper()
	root, v1 := memcgRoot()
	if !v1 {
		return keyed(t, filepath.Join(root, "cgroup.stat"))["nr_dying_descendants"]
	}
	b, err := readSmall("/proc/cgroups")
	if err != nil {
		t.Fatalf("%v", err)
	}
	var total uint64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "memory" {
			total, _ = strconv.ParseUint(f[2], 10, 64)
		}
	}
	var live uint64
	_ = filepath.WalkDir(root, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			live++
		}
		return nil
	})
	if live > total {
		return 0
	}
	return total - live
}

// orphanCgroup is a pod cgroup with no pod: what a kubelet leaves when it cannot finish a
// pod's cleanup. The kubelet removes pod cgroups without a pod within seconds unless the
// pod still has a mounted volume, so a 64 KiB tmpfs is mounted in the volume dir too.
type orphanCgroup struct {
	uid, cgroupDir, volumeDir, podDir string
}

func makeOrphanCgroup() (*orphanCgroup, error) {
	root, _ := memcgRoot()
	uid := newUUID()
	o := &orphanCgroup{
		uid:       uid,
		cgroupDir: filepath.Join(root, "kubepods", "besteffort", "pod"+uid),
		podDir:    filepath.Join("/var/lib/kubelet/pods", uid),
	}
	o.volumeDir = filepath.Join(o.podDir, "volumes", "kubernetes.io~empty-dir", "e2e-orphan")
	if err := os.MkdirAll(o.volumeDir, 0o750); err != nil {
		return nil, fmt.Errorf("orphan: %w", err)
	}
	if err := unix.Mount("shmwatch-e2e-orphan", o.volumeDir, "tmpfs", 0, "size=64k"); err != nil {
		return nil, fmt.Errorf("orphan: mount tmpfs at %s: %w", o.volumeDir, err)
	}
	if err := os.Mkdir(o.cgroupDir, 0o755); err != nil {
		_ = o.remove()
		return nil, fmt.Errorf("orphan: %w", err)
	}
	return o, nil
}

func (o *orphanCgroup) remove() error {
	var errs []string
	if err := os.Remove(o.cgroupDir); err != nil && !os.IsNotExist(err) {
		errs = append(errs, err.Error())
	}
	if err := unix.Unmount(o.volumeDir, 0); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		errs = append(errs, fmt.Sprintf("umount %s: %v", o.volumeDir, err))
	} else if err := os.RemoveAll(o.podDir); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("orphan cleanup: %s", strings.Join(errs, "; "))
	}
	return nil
}

func newUUID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// procStatus reads /proc/<pid>/status fields.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := readSmall(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("%v", err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

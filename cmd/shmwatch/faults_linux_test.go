package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmwatch/shmwatch/internal/podtree"
	"github.com/shmwatch/shmwatch/internal/realkernel"
)

// withoutCaps is a command prefix that runs the agent as root without the
// given capabilities (setpriv's names, e.g. "dac_override,dac_read_search"),
// as a least-privilege DaemonSet that lacks them would run.
func withoutCaps(t *testing.T, caps string) []string {
	t.Helper()
	if _, err := exec.LookPath("setpriv"); err != nil {
		realkernel.Skip(t, "fault test: needs setpriv (util-linux) to drop %s", caps)
	}
	drop := "-" + strings.ReplaceAll(caps, ",", ",-")
	return []string{"setpriv", "--inh-caps=-all", "--bounding-set=" + drop, "--"}
}

// runtimeShmPod adds a Burstable pod with an 8 MiB runtime-style shm and one
// container that has written 1 MiB into it.
func runtimeShmPod(t *testing.T, tree *podtree.Tree) (*podtree.Pod, *podtree.Container) {
	t.Helper()
	p := tree.MustAddPod(podtree.Burstable)
	shm, err := p.RuntimeShm(podtree.RandomHex(32), 8*mib)
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Start(shm, mib)
	if err != nil {
		t.Fatal(err)
	}
	return p, c
}

// scrapeTimes scrapes n times and returns the last scrape.
func (s *server) scrapeTimes(t *testing.T, n int) *scrape {
	t.Helper()
	var sc *scrape
	for i := 0; i < n; i++ {
		var err error
		if sc, err = s.Scrape(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return sc
}

// A container's memory.stat the agent may not read: the pod and the
// container are still reported, the fields from memory.stat are absent (not
// 0), shmwatch_read_errors_total{field="memory.stat"} counts it, and the
// log says so once, not once per scrape.
func TestFaultPermissionDenied(t *testing.T) {
	requireBinary(t)
	prefix := withoutCaps(t, "dac_override,dac_read_search")
	tree := podtree.New(t)
	p, c := runtimeShmPod(t, tree)
	denied := filepath.Join(c.Dir, "memory.stat")
	if err := os.Chmod(denied, 0); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, serveOpts{prefix: prefix, args: []string{"--cgroup-root=" + tree.CgroupRoot}})
	sc := srv.scrapeTimes(t, 3)
	pod := map[string]string{"uid": p.UID}
	ctr := map[string]string{"uid": p.UID, "container": c.ID[:12]}
	if _, ok := sc.value("shmwatch_pod_info", pod); !ok {
		t.Fatalf("pod with an unreadable container memory.stat is not reported")
	}
	if v, ok := sc.value("shmwatch_pod_memory_shmem_bytes", pod); !ok || v != mib {
		t.Errorf("pod shmem = %v (present %v), want %d: the pod's own memory.stat is readable", v, ok, mib)
	}
	if v, ok := sc.value("shmwatch_container_memory_shmem_bytes", ctr); ok {
		t.Errorf("container shmem = %v from an unreadable memory.stat: want the series absent, not invented", v)
	}
	if _, ok := sc.value("shmwatch_container_memory_usage_bytes", ctr); !ok {
		t.Errorf("container usage (memory.usage_in_bytes is readable) is missing")
	}
	errs, ok := sc.value("shmwatch_read_errors_total", map[string]string{"field": "memory.stat"})
	if !ok || errs < 3 {
		t.Errorf(`shmwatch_read_errors_total{field="memory.stat"} = %v (present %v), want >= 3 after 3 scrapes`, errs, ok)
	}
	var lines []string
	for _, l := range strings.Split(srv.Stderr.String(), "\n") {
		if strings.Contains(l, denied) && strings.Contains(l, "permission denied") {
			lines = append(lines, l)
		}
	}
	t.Logf("read_errors_total{field=memory.stat}=%v after 4 collections; log lines naming %s: %d", errs, denied, len(lines))
	if len(lines) != 1 {
		t.Errorf("want exactly one log line for the denied file, got %d:\n%s", len(lines), strings.Join(lines, "\n"))
	}
}

// A FUSE mount that never answers statfs at a container's /dev/shm: every
// scrape still returns within the statfs timeout plus a margin,
// shmwatch_shm_stuck_mounts says 1, the pod is still reported, and the hung
// filesystem is asked only once however often it is scraped.
func TestFaultHungMount(t *testing.T) {
	requireBinary(t)
	podtree.Require(t)
	fuse := podtree.MountHungFUSE(t)
	tree := podtree.New(t)
	p := tree.MustAddPod(podtree.Burstable)
	if _, err := p.StartFUSE(fuse.Dir); err != nil {
		t.Fatal(err)
	}
	const timeout = 500 * time.Millisecond
	const margin = 3 * time.Second // a loaded 2-CPU CI machine
	srv := startServe(t, serveOpts{args: []string{"--cgroup-root=" + tree.CgroupRoot, "--statfs-timeout=" + timeout.String()}})
	// Runs before the kill above: a process with a held STATFS cannot exit.
	t.Cleanup(fuse.Release)

	var worst time.Duration
	for i := 0; i < 4; i++ {
		sc, err := srv.Scrape(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		worst = max(worst, sc.Took)
		if sc.Took > timeout+margin {
			t.Errorf("scrape %d took %v with a hung mount, want < %v", i, sc.Took, timeout+margin)
		}
		if v, ok := sc.value("shmwatch_shm_stuck_mounts", nil); !ok || v != 1 {
			t.Errorf("scrape %d: shmwatch_shm_stuck_mounts = %v (present %v), want 1", i, v, ok)
		}
		if _, ok := sc.value("shmwatch_pod_info", map[string]string{"uid": p.UID}); !ok {
			t.Errorf("scrape %d: the pod with the hung /dev/shm is not reported", i)
		}
	}
	t.Logf("hung FUSE at /dev/shm: worst scrape %v (statfs timeout %v), STATFS requests seen by the FUSE server: %d",
		worst, timeout, fuse.StatfsRequests())
	if n := fuse.StatfsRequests(); n != 1 {
		t.Errorf("FUSE server saw %d STATFS requests over 5 collections, want 1 (stuck mount skipped)", n)
	}
	if !srv.Alive() {
		t.Fatal("shmwatch died")
	}
}

// Without CAP_SYS_PTRACE the agent cannot reach a container's mount
// namespace or root (/proc/<pid>/ns/mnt, /proc/<pid>/root), nor pid 1's
// root: the DaemonSet keeps that one capability for them. Here it is
// dropped, with the agent on the host (so its own mount table is the
// host's). A container's mountinfo needs no capability, so a runtime shm of
// the host table is still found and measured at its host path; a tmpfs the
// container mounted itself can only be measured through its root: that pod
// and its memory are still reported, its shm series are absent (not 0),
// and the failure is a metric and one log line naming the capability.
func TestFaultNoSysPtrace(t *testing.T) {
	requireBinary(t)
	prefix := withoutCaps(t, "sys_ptrace")
	tree := podtree.New(t)
	hostShm, _ := runtimeShmPod(t, tree)
	p := tree.MustAddPod(podtree.Burstable)
	if _, err := p.StartPrivateShm(4*mib, mib); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, serveOpts{prefix: prefix, args: []string{"--cgroup-root=" + tree.CgroupRoot}})
	sc := srv.scrapeTimes(t, 3)
	if v, ok := sc.value("shmwatch_shm_size_bytes", map[string]string{"uid": hostShm.UID}); !ok || v != 8*mib {
		t.Errorf("host-table shm size = %v (present %v), want %d: found by mountinfo, measured at the host path", v, ok, 8*mib)
	}
	pod := map[string]string{"uid": p.UID}
	if v, ok := sc.value("shmwatch_pod_memory_shmem_bytes", pod); !ok || v != mib {
		t.Errorf("pod shmem = %v (present %v), want %d: cgroup files need no ptrace", v, ok, mib)
	}
	if v, ok := sc.value("shmwatch_shm_size_bytes", pod); ok {
		t.Errorf("private shm size = %v without CAP_SYS_PTRACE: want the series absent, not a number", v)
	}
	errs, ok := sc.value("shmwatch_read_errors_total", map[string]string{"field": "statfs"})
	if !ok || errs < 1 {
		t.Errorf(`shmwatch_read_errors_total{field="statfs"} = %v (present %v), want >= 1`, errs, ok)
	}
	var lines []string
	for _, l := range strings.Split(srv.Stderr.String(), "\n") {
		if strings.Contains(l, `"level":"warn"`) && strings.Contains(l, "permission denied") {
			lines = append(lines, l)
			if !strings.Contains(l, "CAP_SYS_PTRACE") {
				t.Errorf("the log line does not say which capability is missing: %s", l)
			}
		}
	}
	t.Logf("without CAP_SYS_PTRACE: read_errors_total{field=statfs}=%v after 3 scrapes, %d log line(s): %s", errs, len(lines), strings.Join(lines, " | "))
	if len(lines) != 1 {
		t.Errorf("want exactly one permission warning, got %d", len(lines))
	}
}

// A container that mounted its own tmpfs at /dev/shm (no host mount has
// it) is measured through the container's process from the first scrape:
// the numbers are the kernel's statfs of /proc/<pid>/root/dev/shm, and the
// source says unknown.
func TestPrivateShmMeasuredThroughContainer(t *testing.T) {
	requireBinary(t)
	tree := podtree.New(t)
	p := tree.MustAddPod(podtree.Burstable)
	c, err := p.StartPrivateShm(4*mib, 3*mib)
	if err != nil {
		t.Fatal(err)
	}
	size, used, _, err := podtree.Statfs(filepath.Join("/proc", strconv.Itoa(c.Pid), "root/dev/shm"))
	if err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, serveOpts{args: []string{"--cgroup-root=" + tree.CgroupRoot}})
	sc := srv.scrapeTimes(t, 1)
	pod := map[string]string{"uid": p.UID}
	gotSize, okSize := sc.value("shmwatch_shm_size_bytes", pod)
	gotUsed, okUsed := sc.value("shmwatch_shm_used_bytes", pod)
	t.Logf("kernel statfs through pid %d: size %d used %d; first scrape: size %v used %v", c.Pid, size, used, gotSize, gotUsed)
	if !okSize || !okUsed || gotSize != float64(size) || gotUsed != float64(used) || used != 3*mib {
		t.Fatalf("first scrape: size %v (present %v) used %v (present %v), kernel %d and %d", gotSize, okSize, gotUsed, okUsed, size, used)
	}
	if n := len(sc.series("shmwatch_shm_size_bytes", map[string]string{"uid": p.UID, "source": "unknown"})); n != 1 {
		t.Errorf("%d shm series with source=unknown, want 1", n)
	}
	if sc = srv.scrapeTimes(t, 1); func() bool { v, ok := sc.value("shmwatch_shm_used_bytes", pod); return !ok || v != float64(used) }() {
		t.Errorf("second scrape (mount cached) lost the private shm's usage")
	}
}

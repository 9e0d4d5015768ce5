//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Scenarios 1-3: the seeds' shm experiments on a real kubelet, each compared three ways:
// the pod's own df, the kernel (statfs of the host tmpfs, memory.stat), shmwatch.

// shmRow is one line of the side-by-side table printed at the end of the suite.
type shmRow struct {
	scenario         string
	df, kernel       fsUsage
	kernelShmem      uint64
	agent            fsUsage
	agentShmem       uint64
	binding, comment string
}

func printShmTable(w io.Writer, rows []shmRow) {
	if len(rows) == 0 {
		return
	}
	k := func(b uint64) string { return fmt.Sprintf("%d", b/1024) }
	fmt.Fprintln(w, "\nshm side by side (KiB): pod df -k /dev/shm | kernel statfs(host tmpfs) + memory.stat total_shmem | shmwatch")
	fmt.Fprintln(w, "| scenario | df size | df used | df avail | statfs size | statfs used | statfs avail | total_shmem | shmwatch size | shmwatch used | shmwatch avail | shmwatch shmem | binding | note |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.scenario,
			k(r.df.size), k(r.df.used), k(r.df.avail), k(r.kernel.size), k(r.kernel.used), k(r.kernel.avail),
			k(r.kernelShmem), k(r.agent.size), k(r.agent.used), k(r.agent.avail), k(r.agentShmem), r.binding, r.comment)
	}
}

func logRow(t *testing.T, r shmRow) {
	t.Helper()
	var b strings.Builder
	printShmTable(&b, []shmRow{r})
	t.Log(b.String())
	suite.table = append(suite.table, r)
}

// agentShm reads shmwatch's numbers for one shm of a pod from /metrics, retrying until the
// series exist and check accepts them.
func agentShm(t *testing.T, labels map[string]string, check func(m metrics, u fsUsage) error) (metrics, fsUsage) {
	t.Helper()
	var m metrics
	var u fsUsage
	eventually(t, 45*time.Second, fmt.Sprintf("shm series %v", labels), func() error {
		var err error
		if m, err = scrapeViaAPI(context.Background()); err != nil {
			return err
		}
		vals := [3]float64{}
		for i, name := range []string{"shmwatch_shm_size_bytes", "shmwatch_shm_used_bytes", "shmwatch_shm_available_bytes"} {
			if vals[i], err = m.one(name, labels); err != nil {
				return fmt.Errorf("%w; this pod's shm series: %v", err,
					m.find("shmwatch_shm_size_bytes", map[string]string{"uid": labels["uid"]}))
			}
		}
		u = fsUsage{size: uint64(vals[0]), used: uint64(vals[1]), avail: uint64(vals[2])}
		return check(m, u)
	})
	return m, u
}

// bindingOf is the limit whose shmwatch_shm_binding_limit series is 1.
func bindingOf(m metrics, labels map[string]string) (string, error) {
	var on []string
	for _, s := range m.find("shmwatch_shm_binding_limit", labels) {
		if s.value == 1 {
			on = append(on, s.labels["limit"])
		}
	}
	if len(on) != 1 {
		return "", fmt.Errorf("shmwatch_shm_binding_limit%v: want exactly one limit at 1, got %v", labels, on)
	}
	return on[0], nil
}

func scanShmOf(t *testing.T, r *scanReport, uid, source string) (*scanPod, *scanShm) {
	t.Helper()
	p := r.pod(uid)
	if p == nil {
		t.Fatalf("scan: pod %s missing (%d pods)", uid, len(r.Pods))
	}
	for i := range p.Shm {
		if p.Shm[i].Source == source {
			return p, &p.Shm[i]
		}
	}
	t.Fatalf("scan: pod %s has no %s shm: %+v", uid, source, p.Shm)
	return nil, nil
}

func fmtPtr[T any](p *T) string {
	if p == nil {
		return "absent"
	}
	return fmt.Sprint(*p)
}

func eqU(t *testing.T, what string, got *uint64, want uint64) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: absent, kernel says %d", what, want)
	} else if *got != want {
		t.Errorf("%s = %d, kernel says %d", what, *got, want)
	}
}

func near(a, b, tol uint64) bool {
	if a > b {
		return a-b <= tol
	}
	return b-a <= tol
}

// Scenario 1: no shm volume: containerd's 64 MiB sandbox shm. Filling it ends in ENOSPC in
// the pod; shmwatch says available 0 and that the tmpfs is the binding limit.
func TestS1RuntimeShmFillsToENOSPC(t *testing.T) {
	p := startPod(t, podSpec("s1-runtime-shm", corev1.Container{Name: "c", Resources: memLimit("128Mi")}))
	out, code := execIn(t, p.Namespace, p.Name, "c", "dd", "if=/dev/zero", "of=/dev/shm/fill", "bs=1M", "count=100")
	if code == 0 || !strings.Contains(out, "No space left on device") {
		t.Fatalf("dd 100 MiB into the 64 MiB runtime shm: exit %d, want ENOSPC: %s", code, out)
	}
	df := dfShm(t, p, "c")
	podDir := podCgroupDir(t, p)
	host := hostShmPath(t, firstPID(t, containerCgroupDir(t, p, "c")))
	k := statfs(t, host)
	shmem := kernelShmem(t, podDir)
	t.Logf("pod df: %+v; host tmpfs %s statfs: %+v; pod total_shmem %d", df, host, k, shmem)
	if df.size != 64*mib || df.avail != 0 || df != k {
		t.Errorf("runtime shm: df %+v, statfs %+v: want both 64 MiB with 0 available", df, k)
	}
	if !strings.Contains(host, "/sandboxes/") {
		t.Errorf("host path %s is not a containerd sandbox shm", host)
	}

	labels := with(podLabels(p), "source", "runtime")
	m, u := agentShm(t, labels, func(m metrics, u fsUsage) error {
		if u != k {
			return fmt.Errorf("shmwatch %+v, statfs %+v", u, k)
		}
		return nil
	})
	binding, err := bindingOf(m, labels)
	if err != nil || binding != "tmpfs" {
		t.Errorf("binding limit %q (%v), want tmpfs", binding, err)
	}
	if h, err := m.one("shmwatch_shm_headroom_bytes", with(labels, "limit", "tmpfs")); err != nil || h != 0 {
		t.Errorf("tmpfs headroom %v (%v), want 0", h, err)
	}
	agentShmem, err := m.one("shmwatch_pod_memory_shmem_bytes", podLabels(p))
	if err != nil || !near(uint64(agentShmem), shmem, mib) {
		t.Errorf("shmwatch_pod_memory_shmem_bytes %v (%v), kernel total_shmem %d", agentShmem, err, shmem)
	}

	r := scan(t)
	sp, s := scanShmOf(t, r, string(p.UID), "runtime")
	eqU(t, "scan size_bytes", s.Size, k.size)
	eqU(t, "scan used_bytes", s.Used, k.used)
	eqU(t, "scan available_bytes", s.Available, 0)
	if s.Binding != "tmpfs" || sp.Binding != "tmpfs" {
		t.Errorf("scan binding_limit shm %q pod %q, want tmpfs", s.Binding, sp.Binding)
	}
	if s.HostPath != host {
		t.Errorf("scan host_path %q, kernel mount table %q", s.HostPath, host)
	}
	logRow(t, shmRow{scenario: "1 runtime shm, filled", df: df, kernel: k, kernelShmem: shmem, agent: u,
		agentShmem: uint64(agentShmem), binding: binding, comment: "dd: " + lineWith(out, "No space")})
}

// Scenario 2: emptyDir{medium: Memory, sizeLimit: 256Mi} at /dev/shm with a 128Mi memory
// limit: the kubelet sizes the tmpfs to the smaller one, 128 MiB. shmwatch reports that size,
// the 256Mi sizeLimit, and a binding limit that agrees with the kernel's headrooms.
func TestS2EmptyDirSizeLimitCappedByMemoryLimit(t *testing.T) {
	spec := podSpec("s2-emptydir-256", corev1.Container{Name: "c", Resources: memLimit("128Mi"),
		VolumeMounts: []corev1.VolumeMount{{Name: "shm", MountPath: "/dev/shm"}}})
	spec.Spec.Volumes = []corev1.Volume{memoryEmptyDir("shm", "256Mi")}
	p := startPod(t, spec)
	if out, code := execIn(t, p.Namespace, p.Name, "c", "dd", "if=/dev/zero", "of=/dev/shm/f8", "bs=1M", "count=8"); code != 0 {
		t.Fatalf("dd 8 MiB: exit %d: %s", code, out)
	}
	df := dfShm(t, p, "c")
	podDir := podCgroupDir(t, p)
	host := hostShmPath(t, firstPID(t, containerCgroupDir(t, p, "c")))
	k := statfs(t, host)
	shmem := kernelShmem(t, podDir)
	limit := kernelLimit(t, podDir)
	if df.size != 128*mib || k.size != 128*mib || limit != 128*mib {
		t.Errorf("tmpfs size: df %d, statfs %d, pod memory limit %d: want all 128 MiB", df.size, k.size, limit)
	}
	if !strings.Contains(host, "/volumes/kubernetes.io~empty-dir/shm") {
		t.Errorf("host path %s is not the emptyDir volume", host)
	}

	labels := with(podLabels(p), "source", "emptydir", "volume", "shm")
	var usage uint64
	m, u := agentShm(t, labels, func(m metrics, u fsUsage) error {
		usage = kernelUsage(t, podDir)
		if u != k {
			return fmt.Errorf("shmwatch %+v, statfs %+v", u, k)
		}
		return nil
	})
	if v, err := m.one("shmwatch_shm_size_limit_bytes", labels); err != nil || v != 256*mib {
		t.Errorf("shmwatch_shm_size_limit_bytes %v (%v), want 256Mi", v, err)
	}
	if v, err := m.one("shmwatch_pod_memory_limit_bytes", podLabels(p)); err != nil || uint64(v) != limit {
		t.Errorf("shmwatch_pod_memory_limit_bytes %v (%v), kernel %d", v, err, limit)
	}
	head := map[string]float64{}
	for _, l := range []string{"tmpfs", "memcg", "eviction"} {
		v, err := m.one("shmwatch_shm_headroom_bytes", with(labels, "limit", l))
		if err != nil {
			t.Errorf("headroom: %v", err)
		}
		head[l] = v
	}
	// The kernel's view: the tmpfs can take k.avail more; the pod cgroup limit-usage (usage
	// includes the shm pages plus the processes, so it is the smaller); eviction at sizeLimit.
	if uint64(head["tmpfs"]) != k.avail {
		t.Errorf("tmpfs headroom %v, statfs available %d", head["tmpfs"], k.avail)
	}
	if !near(uint64(head["memcg"]), limit-usage, 2*mib) {
		t.Errorf("memcg headroom %v, kernel limit-usage %d", head["memcg"], limit-usage)
	}
	if !near(uint64(head["eviction"]), 256*mib-k.used, mib) {
		t.Errorf("eviction headroom %v, want sizeLimit-used %d", head["eviction"], 256*mib-k.used)
	}
	want := "memcg"
	if k.avail < limit-usage {
		want = "tmpfs"
	}
	binding, err := bindingOf(m, labels)
	if err != nil || binding != want {
		t.Errorf("binding limit %q (%v), kernel headrooms tmpfs %d memcg %d say %s", binding, err, k.avail, limit-usage, want)
	}
	agentShmem, _ := m.one("shmwatch_pod_memory_shmem_bytes", podLabels(p))

	r := scan(t)
	sp, s := scanShmOf(t, r, string(p.UID), "emptydir")
	eqU(t, "scan size_bytes", s.Size, 128*mib)
	eqU(t, "scan size_limit_bytes", s.SizeLimit, 256*mib)
	if s.Volume != "shm" || s.Binding != want || sp.Binding != want {
		t.Errorf("scan volume %q binding shm %q pod %q, want shm/%s", s.Volume, s.Binding, sp.Binding, want)
	}
	if sp.Headroom == nil || *sp.Headroom < 0 || !near(uint64(*sp.Headroom), min(k.avail, limit-usage), 2*mib) {
		t.Errorf("scan pod headroom_bytes %s, kernel min(tmpfs %d, memcg %d)", fmtPtr(sp.Headroom), k.avail, limit-usage)
	}
	logRow(t, shmRow{scenario: "2 emptyDir Memory sizeLimit 256Mi, limit 128Mi, 8 MiB written", df: df, kernel: k,
		kernelShmem: shmem, agent: u, agentShmem: uint64(agentShmem), binding: binding,
		comment: fmt.Sprintf("size_limit %d KiB; headroom tmpfs/memcg/eviction %d/%d/%d KiB", 256*1024,
			uint64(head["tmpfs"])/1024, uint64(head["memcg"])/1024, uint64(head["eviction"])/1024)})
}

// Scenario 3: emptyDir{medium: Memory} without sizeLimit, 128Mi memory limit, 160 MiB
// written: the memcg limit comes first, the writer is OOM-killed, the container survives,
// shmwatch's OOM kill counter rises by one and the shm pages stay charged to the pod.
func TestS3EmptyDirWriterOOMKilled(t *testing.T) {
	spec := podSpec("s3-emptydir-oom", corev1.Container{Name: "c", Resources: memLimit("128Mi"),
		VolumeMounts: []corev1.VolumeMount{{Name: "shm", MountPath: "/dev/shm"}}})
	spec.Spec.Volumes = []corev1.Volume{memoryEmptyDir("shm", "")}
	p := startPod(t, spec)
	podDir := podCgroupDir(t, p)
	cDir := containerCgroupDir(t, p, "c")
	cLabels := with(podLabels(p), "container", "c")
	if n := kernelOOMKills(t, cDir); n != 0 {
		t.Fatalf("container c has %d OOM kills before the test", n)
	}
	var before float64
	eventually(t, 45*time.Second, "oom kill counter before", func() error {
		m, err := scrapeViaAPI(context.Background())
		if err != nil {
			return err
		}
		before, err = m.one("shmwatch_container_oom_kills_total", cLabels)
		return err
	})
	if before != 0 {
		t.Errorf("shmwatch_container_oom_kills_total before = %v, kernel 0", before)
	}

	out, code := execIn(t, p.Namespace, p.Name, "c", "dd", "if=/dev/zero", "of=/dev/shm/f160", "bs=1M", "count=160")
	if code != 137 {
		t.Errorf("dd 160 MiB: exit %d, want 137 (SIGKILL by the OOM killer): %s", code, out)
	}
	kills := kernelOOMKills(t, cDir)
	if kills != 1 {
		t.Errorf("kernel %s/memory.oom_control oom_kill = %d, want 1", cDir, kills)
	}
	pid := firstPID(t, cDir)
	df := dfShmNsenter(t, pid)
	k := statfs(t, hostShmPath(t, pid))
	// memory.stat's shmem may lag a burst of charges by seconds (the kernel
	// flushes per-CPU stats lazily); the tmpfs pages stay charged, so wait
	// for the kernel's own count to catch up.
	shmem := kernelShmem(t, podDir)
	for deadline := time.Now().Add(15 * time.Second); shmem < 100*mib && time.Now().Before(deadline); shmem = kernelShmem(t, podDir) {
		time.Sleep(500 * time.Millisecond)
	}
	if shmem < 100*mib || !near(shmem, k.used, 2*mib) {
		t.Errorf("after the OOM kill: pod total_shmem %d, tmpfs used %d: want >100 MiB still charged", shmem, k.used)
	}
	if p = refreshPod(t, p); !podReady(p) || p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("container c should keep running: ready %v, status %+v", podReady(p), p.Status.ContainerStatuses)
	}

	var after, agentShmem float64
	hitsBefore := kernelLimitHits(t, cDir)
	t.Logf("memory.failcnt after the OOM kill: container %d, pod %d", hitsBefore, kernelLimitHits(t, podDir))
	m, u := agentShm(t, with(podLabels(p), "source", "emptydir", "volume", "shm"), func(m metrics, u fsUsage) error {
		var err error
		if after, err = m.one("shmwatch_container_oom_kills_total", cLabels); err != nil {
			return err
		}
		if after != before+1 {
			return fmt.Errorf("oom kills %v, want %v", after, before+1)
		}
		if agentShmem, err = m.one("shmwatch_pod_memory_shmem_bytes", podLabels(p)); err != nil {
			return err
		}
		if !near(uint64(agentShmem), shmem, mib) {
			return fmt.Errorf("shmwatch_pod_memory_shmem_bytes %v, kernel total_shmem %d", agentShmem, shmem)
		}
		// memory.failcnt only grows: shmwatch's value lies between the kernel's before and after.
		// (The pod cgroup, which also holds the sandbox, usually hits the shared 128Mi first,
		// so the container's own failcnt may well stay 0 while its task is the OOM victim.)
		hits, err := m.one("shmwatch_container_memory_limit_hits_total", cLabels)
		if err != nil {
			return err
		}
		if kernelHits := kernelLimitHits(t, cDir); uint64(hits) < hitsBefore || uint64(hits) > kernelHits {
			return fmt.Errorf("shmwatch_container_memory_limit_hits_total %v, kernel failcnt %d..%d", hits, hitsBefore, kernelHits)
		}
		if u != k {
			return fmt.Errorf("shmwatch %+v, statfs %+v", u, k)
		}
		return nil
	})
	binding, _ := bindingOf(m, with(podLabels(p), "source", "emptydir"))

	kills = kernelOOMKills(t, cDir)
	r := scan(t)
	sp, _ := scanShmOf(t, r, string(p.UID), "emptydir")
	c := sp.container("c")
	if c == nil {
		t.Fatalf("scan: pod has no container c: %+v", sp.Containers)
	}
	eqU(t, "scan container oom_kills", c.OOMKills, kills)
	if sp.Memory.Shmem == nil || !near(*sp.Memory.Shmem, shmem, mib) {
		t.Errorf("scan pod shmem_bytes %s, kernel %d", fmtPtr(sp.Memory.Shmem), shmem)
	}
	logRow(t, shmRow{scenario: "3 emptyDir Memory no sizeLimit, limit 128Mi, 160 MiB written", df: df, kernel: k,
		kernelShmem: shmem, agent: u, agentShmem: uint64(agentShmem), binding: binding,
		comment: fmt.Sprintf("dd exit %d; oom_kill kernel %d, shmwatch %v->%v", code, kills, before, after)})
}

// lineWith is the first line of s containing sub.
func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

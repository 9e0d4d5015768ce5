//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Scenario 4: a Guaranteed and a BestEffort pod live under different cgroup parents
// (kubepods/pod<uid> and kubepods/besteffort/pod<uid>); shmwatch finds both, with the
// names, namespaces, QoS and container names the API has.
func TestS4QoSClassesFoundWithAPINames(t *testing.T) {
	guaranteed := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("20m"), corev1.ResourceMemory: resource.MustParse("32Mi")}
	g := startPod(t, podSpec("s4-guaranteed", corev1.Container{Name: "app",
		Resources: corev1.ResourceRequirements{Requests: guaranteed, Limits: guaranteed}}))
	b := startPod(t, podSpec("s4-besteffort", corev1.Container{Name: "worker"}))
	root, _ := memcgRoot()
	cases := []struct {
		pod       *corev1.Pod
		container string
		qos       string
		cgroup    string
	}{
		{g, "app", "guaranteed", filepath.Join(root, "kubepods", "pod"+string(g.UID))},
		{b, "worker", "besteffort", filepath.Join(root, "kubepods", "besteffort", "pod"+string(b.UID))},
	}
	for _, c := range cases {
		if got := strings.ToLower(string(c.pod.Status.QOSClass)); got != c.qos {
			t.Fatalf("pod %s: API QoS %s, want %s", c.pod.Name, got, c.qos)
		}
		if podCgroupDir(t, c.pod) != c.cgroup {
			t.Fatalf("pod %s cgroup not at %s", c.pod.Name, c.cgroup)
		}
	}

	eventually(t, 45*time.Second, "both pods in /metrics with API metadata", func() error {
		m, err := scrapeViaAPI(context.Background())
		if err != nil {
			return err
		}
		for _, c := range cases {
			info := m.find("shmwatch_pod_info", podLabels(c.pod))
			if len(info) != 1 || info[0].value != 1 || !strings.EqualFold(info[0].labels["qos"], c.qos) {
				return fmt.Errorf("shmwatch_pod_info%v = %v, want one series qos=%s value 1", podLabels(c.pod), info, c.qos)
			}
			usage, err := m.one("shmwatch_container_memory_usage_bytes", with(podLabels(c.pod), "container", c.container))
			if err != nil {
				return err
			}
			if usage <= 0 {
				return fmt.Errorf("%s/%s usage %v", c.pod.Name, c.container, usage)
			}
		}
		lim, err := m.one("shmwatch_container_memory_limit_bytes", with(podLabels(g), "container", "app"))
		if err != nil || lim != 32*mib {
			return fmt.Errorf("guaranteed app limit %v (%v), want 32Mi", lim, err)
		}
		if s := m.find("shmwatch_container_memory_limit_bytes", with(podLabels(b), "container", "worker")); len(s) != 0 {
			return fmt.Errorf("besteffort worker has a limit series %v; unlimited must be absent", s)
		}
		if v, err := m.one("shmwatch_metadata_source", map[string]string{"source": "api"}); err != nil || v != 1 {
			return fmt.Errorf("metadata_source{api} = %v (%v), want 1", v, err)
		}
		return nil
	})

	r := scan(t)
	checkSortedByHeadroom(t, r)
	if r.Node.MetadataSource != "api" {
		t.Errorf("scan node.metadata_source %q, want api", r.Node.MetadataSource)
	}
	for _, c := range cases {
		sp := r.pod(string(c.pod.UID))
		if sp == nil {
			t.Errorf("scan: pod %s missing", c.pod.Name)
			continue
		}
		if sp.Namespace != c.pod.Namespace || sp.Name != c.pod.Name || !strings.EqualFold(sp.QOS, c.qos) {
			t.Errorf("scan pod %s: namespace %q name %q qos %q", c.pod.Name, sp.Namespace, sp.Name, sp.QOS)
		}
		if !strings.HasSuffix(c.cgroup, sp.Cgroup) || !strings.Contains(sp.Cgroup, "pod"+string(c.pod.UID)) {
			t.Errorf("scan pod %s cgroup %q, kernel %s", c.pod.Name, sp.Cgroup, c.cgroup)
		}
		ct := sp.container(c.container)
		if ct == nil || ct.ID != containerID(t, c.pod, c.container) || ct.Sandbox {
			t.Errorf("scan pod %s: container %s: %+v", c.pod.Name, c.container, sp.Containers)
		}
		t.Logf("scan: %s/%s qos %s cgroup %s containers %d", sp.Namespace, sp.Name, sp.QOS, sp.Cgroup, len(sp.Containers))
	}
}

// Scenario 5: a deleted pod's series are gone at the next scrape; the memcgs it leaves
// dying are in the node metric (the kernel's count); a pod cgroup without a pod is orphaned.
func TestS5DeletedPodDyingMemcgsAndOrphan(t *testing.T) {
	t.Run("deleted pod and dying memcgs", testDeletedPod)
	t.Run("orphaned pod cgroup", testOrphan)
}

func testDeletedPod(t *testing.T) {
	// Page cache of a file that outlives the pod (hostPath) stays charged to the container's
	// memcg, so that memcg cannot be freed after rmdir: a dying memcg. (Memory emptyDir and
	// the runtime shm are unmounted with the pod, which frees their pages.)
	dir := filepath.Join("/var/tmp", "shmwatch-e2e-"+suite.ns)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	hp := corev1.HostPathDirectoryOrCreate
	spec := podSpec("s5-deleted", corev1.Container{Name: "c", Resources: memLimit("64Mi"),
		VolumeMounts: []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}}})
	spec.Spec.Volumes = []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &hp}}}}
	p := startPod(t, spec)
	dyingEarlier := dyingMemcgs(t)
	if out, code := execIn(t, p.Namespace, p.Name, "c", "sh", "-c", "dd if=/dev/zero of=/cache/f bs=1M count=16 && dd if=/dev/zero of=/dev/shm/f bs=1M count=4"); code != 0 {
		t.Fatalf("write: exit %d: %s", code, out)
	}
	podDir := podCgroupDir(t, p)
	uid := string(p.UID)
	eventually(t, 45*time.Second, "pod in /metrics", func() error {
		m, err := scrapeViaAPI(context.Background())
		if err != nil {
			return err
		}
		if len(m.seriesWith("uid", uid)) == 0 {
			return fmt.Errorf("no series with uid %s", uid)
		}
		return nil
	})
	dyingBefore := dyingMemcgs(t)

	deletePod(t, p.Name, true)
	deadline := time.Now().Add(60 * time.Second)
	for _, err := os.Stat(podDir); err == nil && time.Now().Before(deadline); _, err = os.Stat(podDir) {
		time.Sleep(300 * time.Millisecond)
	}
	if _, err := os.Stat(podDir); err == nil {
		t.Fatalf("pod cgroup %s still there 60s after the pod left the API", podDir)
	}
	k0 := dyingMemcgs(t)
	m, err := scrapeViaAPI(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	k1 := dyingMemcgs(t)
	if left := m.seriesWith("uid", uid); len(left) != 0 {
		t.Errorf("first scrape after the pod cgroup was removed still has series of uid %s: %v", uid, left)
	}
	dying, err := m.one("shmwatch_node_memcg_cgroups", map[string]string{"state": "dying"})
	t.Logf("dying memcgs: kernel before delete %d, after %d..%d; shmwatch %v", dyingBefore, k0, k1, dying)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(dying) < min(k0, k1) || uint64(dying) > max(k0, k1) {
		t.Errorf("shmwatch_node_memcg_cgroups{state=dying} = %v, kernel counted %d and %d around the scrape", dying, k0, k1)
	}
	// The count is the node's: dying memcgs of earlier work that the kernel frees meanwhile
	// (the node was releasing them while the pod ran) can hide the pod's.
	switch {
	case k0 > dyingBefore:
	case dyingBefore < dyingEarlier:
		t.Logf("the node was releasing dying memcgs (%d -> %d while the pod ran): the pod's rise is not told apart (%d -> %d)",
			dyingEarlier, dyingBefore, dyingBefore, k0)
	default:
		t.Errorf("kernel dying memcgs did not rise when the pod left page cache behind: %d -> %d", dyingBefore, k0)
	}
	r := scan(t)
	if r.pod(uid) != nil {
		t.Errorf("scan still lists deleted pod %s", uid)
	}
	if r.Node.Memcg.Dying == nil {
		t.Errorf("scan node.memcg.dying absent, kernel %d", k1)
	} else {
		t.Logf("scan node.memcg.dying %d", *r.Node.Memcg.Dying)
	}
}

func testOrphan(t *testing.T) {
	o := suite.orphan
	if _, err := os.Stat(o.cgroupDir); err != nil {
		t.Fatalf("orphan cgroup made at suite start is gone (kubelet cleanup?): %v", err)
	}
	// The agent waits OrphanGrace (2 min) after the cgroup's creation before calling it orphaned.
	eventually(t, 3*time.Minute, "orphan reported", func() error {
		m, err := scrapeViaAPI(context.Background())
		if err != nil {
			return err
		}
		n, err := m.one("shmwatch_orphaned_pod_cgroups", nil)
		if err != nil {
			return err
		}
		if n < 1 {
			return fmt.Errorf("shmwatch_orphaned_pod_cgroups = %v", n)
		}
		return nil
	})
	r := scan(t)
	for _, orphan := range r.Orphans {
		if orphan.UID == o.uid {
			t.Logf("scan orphan: uid %s cgroup %s age %.0fs", orphan.UID, orphan.Cgroup, orphan.Age)
			if !strings.HasSuffix(o.cgroupDir, orphan.Cgroup) {
				t.Errorf("orphan cgroup %q, made at %s", orphan.Cgroup, o.cgroupDir)
			}
			return
		}
	}
	t.Errorf("scan orphans %+v lack uid %s", r.Orphans, o.uid)
}

// checkSortedByHeadroom checks the contract's order of scan pods: least headroom first,
// pods without a headroom (no limit) after all that have one.
func checkSortedByHeadroom(t *testing.T, r *scanReport) {
	t.Helper()
	for i := 1; i < len(r.Pods); i++ {
		a, b := r.Pods[i-1].Headroom, r.Pods[i].Headroom
		if (a == nil && b != nil) || (a != nil && b != nil && *a > *b) {
			t.Errorf("scan pods not sorted by least headroom first: %s (%s) before %s (%s)",
				r.Pods[i-1].Name, fmtPtr(a), r.Pods[i].Name, fmtPtr(b))
		}
	}
}

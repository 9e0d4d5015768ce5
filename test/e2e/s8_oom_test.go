//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scenario 8: a container whose PID 1 is OOM-killed, again and again
// (restartPolicy Always): containerd removes the killed container's cgroup
// within a second, before any scrape can read its counter. The pod's count
// follows the kubelet's (containers OOM-killed), and the kill's attribution
// names the shm mount that held 24 MiB of the 64 MiB limit.

const oomShmMiB = 24

func TestS8PID1OOMKilledEmptyDir(t *testing.T) { oomLoop(t, true) }

func TestS8PID1OOMKilledRuntimeShm(t *testing.T) { oomLoop(t, false) }

// scanOOM is the part of `scan -o json` this scenario reads (docs/json.md).
type scanOOM struct {
	Pods []struct {
		UID string `json:"uid"`
		OOM *struct {
			Kills uint64 `json:"kills"`
			Last  []struct {
				Source    string `json:"source"`
				Container string `json:"container"`
				Memory    struct {
					Limit *uint64 `json:"limit_bytes"`
					Usage *uint64 `json:"usage_bytes"`
					Shmem *uint64 `json:"shmem_bytes"`
				} `json:"memory"`
				Shm []struct {
					Source string  `json:"source"`
					Volume string  `json:"volume"`
					Used   *uint64 `json:"used_bytes"`
				} `json:"shm"`
			} `json:"last"`
		} `json:"oom"`
	} `json:"pods"`
}

func oomLoop(t *testing.T, emptyDir bool) {
	// PID 1 (the shell) writes 24 MiB to /dev/shm, then doubles a string
	// until the 64Mi limit kills it.
	c := corev1.Container{Name: "hog", Resources: memLimit("64Mi"), Command: []string{"sh", "-c",
		fmt.Sprintf("dd if=/dev/zero of=/dev/shm/fill bs=1M count=%d 2>/dev/null; a=0123456789abcdef; while :; do a=$a$a; done", oomShmMiB)}}
	name := "s8-runtime-" + randHex(3)
	if emptyDir {
		name = "s8-emptydir-" + randHex(3)
		c.VolumeMounts = []corev1.VolumeMount{{Name: "dshm", MountPath: "/dev/shm"}}
	}
	p := podSpec(name, c)
	p.Spec.RestartPolicy = corev1.RestartPolicyAlways
	if emptyDir {
		p.Spec.Volumes = []corev1.Volume{memoryEmptyDir("dshm", "")}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	created, err := suite.kube.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s: %v", p.Name, err)
	}
	t.Cleanup(func() { deletePod(t, p.Name, false) })
	uid := string(created.UID)

	// The kubelet's count: every termination of the container was an OOM kill.
	kubeletKills := func() (uint64, bool) {
		st := refreshPod(t, created).Status.ContainerStatuses
		if len(st) != 1 || st[0].LastTerminationState.Terminated == nil {
			return 0, false
		}
		if r := st[0].LastTerminationState.Terminated.Reason; r != "OOMKilled" {
			t.Fatalf("last termination %q, want OOMKilled", r)
		}
		kills := uint64(st[0].RestartCount)
		if st[0].State.Running == nil { // killed again, not restarted yet
			kills++
		}
		return kills, kills >= 2
	}
	// When the test first sees the kill in the pod's status (polled every
	// 200 ms): the agent's informer sees the same status update.
	var firstSeen time.Time
	for deadline := time.Now().Add(2 * time.Minute); firstSeen.IsZero(); time.Sleep(200 * time.Millisecond) {
		if k, _ := kubeletKills(); k >= 1 {
			firstSeen = time.Now()
		} else if time.Now().After(deadline) {
			t.Fatal("no OOM kill of PID 1 in the pod's status after 2 minutes")
		}
	}
	eventually(t, 3*time.Minute, "two OOM kills of PID 1 (restartCount, OOMKilled)", func() error {
		if k, ok := kubeletKills(); !ok {
			return fmt.Errorf("%d kills so far", k)
		}
		return nil
	})
	// At a scrape, the pod's count equals the kubelet's, read before and after it.
	eventually(t, time.Minute, "shmwatch_pod_oom_kills_total = the kubelet's count", func() error {
		before, _ := kubeletKills()
		m, err := scrapeViaAPI(ctx)
		if err != nil {
			return err
		}
		got, err := m.one("shmwatch_pod_oom_kills_total", map[string]string{"uid": uid})
		if err != nil {
			return err
		}
		after, _ := kubeletKills()
		if before != after || uint64(got) != before {
			return fmt.Errorf("kubelet %d..%d kills, shmwatch %v", before, after, got)
		}
		t.Logf("kubelet: %d containers OOM-killed; shmwatch_pod_oom_kills_total %v", before, got)
		return nil
	})
	// The owner is told where the memory went, on the pod: an OOMKilledWithShm
	// event with the kill's numbers (the 64Mi limit, the shm's share of it).
	ev := waitEvent(t, created, "OOMKilledWithShm", time.Minute)
	// Posted from the informer's callback, not at the next scrape (the
	// test's first scrape came after the second kill).
	lag := ev.EventTime.Sub(firstSeen)
	t.Logf("OOMKilledWithShm %s after the test saw the kill in the status: %s", lag.Round(time.Millisecond), ev.Message)
	if lag > 5*time.Second {
		t.Errorf("OOMKilledWithShm came %s after the status showed the kill, want it within seconds", lag)
	}
	if !strings.Contains(ev.Message, "OOM-killed at 64Mi") || !strings.Contains(ev.Message, "shared memory") {
		t.Errorf("OOMKilledWithShm message %q: want the 64Mi limit and the shared memory named", ev.Message)
	}
	// The attribution names the shm and its 24 MiB.
	out, stderr, code := agentExec(t, "scan", "-o", "json")
	if code != 0 {
		t.Fatalf("scan -o json exited %d: %s", code, stderr)
	}
	var r scanOOM
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("decode scan JSON: %v", err)
	}
	wantSource := "runtime"
	if emptyDir {
		wantSource = "emptydir"
	}
	for _, sp := range r.Pods {
		if sp.UID != uid {
			continue
		}
		// A one-shot scan sees only what the kubelet's status shows now: the
		// last termination of each container (docs/oom.md); serve counted all.
		if sp.OOM == nil || sp.OOM.Kills < 1 || len(sp.OOM.Last) == 0 {
			t.Fatalf("scan: pod oom %+v, want a kill with its record", sp.OOM)
		}
		last := sp.OOM.Last[len(sp.OOM.Last)-1]
		raw, _ := json.Marshal(last)
		t.Logf("last kill: %s", raw)
		found := false
		for _, s := range last.Shm {
			if s.Source == wantSource && s.Used != nil && *s.Used >= oomShmMiB<<20 {
				found = true
			}
		}
		switch {
		case found:
		case !emptyDir && len(last.Shm) == 0 && last.Memory.Shmem != nil && *last.Memory.Shmem >= oomShmMiB<<20:
			// The runtime's shm is found through a running app container;
			// between restarts only the memcg's shmem shows it.
			t.Logf("runtime shm not resolved while the container is down; memcg shmem %d", *last.Memory.Shmem)
		default:
			t.Errorf("last kill's shm %s names no %s mount holding %d MiB", raw, wantSource, oomShmMiB)
		}
		table, _, _ := agentExec(t, "scan")
		for _, line := range strings.Split(table, "\n") {
			if strings.Contains(line, p.Name) {
				t.Logf("scan row: %s", line)
			}
		}
		return
	}
	t.Fatalf("scan has no pod %s", uid)
}

//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scenario 9: Kubernetes Events on the pod (agent/events). The e2e overlay runs the agent
// with --events.interval=2s --events.rediscover=5s --events.window=30s.

const eventsWindow = 30 * time.Second

// podEvents lists the shmwatch events on a pod, as
// `kubectl get events --field-selector involvedObject.uid=<uid>` does, oldest first.
func podEvents(t *testing.T, p *corev1.Pod, reason string) []corev1.Event {
	t.Helper()
	sel := "involvedObject.uid=" + string(p.UID)
	if reason != "" {
		sel += ",reason=" + reason
	}
	list, err := suite.kube.CoreV1().Events(p.Namespace).List(context.Background(), metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		t.Fatalf("list events of %s: %v", p.Name, err)
	}
	var out []corev1.Event
	for _, e := range list.Items {
		if e.ReportingController == "shmwatch" {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].EventTime.Before(&out[j].EventTime) })
	return out
}

// waitEvent waits for the first shmwatch event with reason on p and returns it.
func waitEvent(t *testing.T, p *corev1.Pod, reason string, timeout time.Duration) corev1.Event {
	t.Helper()
	var ev corev1.Event
	deadline := time.Now().Add(timeout)
	for {
		if evs := podEvents(t, p, reason); len(evs) > 0 {
			ev = evs[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event on %s within %s (events: %s)", reason, p.Name, timeout, describeEvents(t, p))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if ev.Type != corev1.EventTypeWarning || ev.ReportingInstance != "shmwatch-"+suite.node || ev.InvolvedObject.Kind != "Pod" {
		t.Errorf("event %+v: want a Warning from shmwatch-%s on the Pod", ev, suite.node)
	}
	return ev
}

// describeEvents is the Events part of `kubectl describe pod`.
func describeEvents(t *testing.T, p *corev1.Pod) string {
	out, _, _, err := kubectl(context.Background(), "describe", "pod", "-n", p.Namespace, p.Name)
	if err != nil {
		return err.Error()
	}
	if i := strings.Index(out, "Events:"); i >= 0 {
		return out[i:]
	}
	return out
}

func TestS9EventsShmFull(t *testing.T) {
	// The runtime's 64 MiB /dev/shm filled to ENOSPC.
	p := startPod(t, podSpec("s9-full-"+randHex(3), corev1.Container{
		Name:    "trainer",
		Command: []string{"sh", "-c", "head -c 70m /dev/zero > /dev/shm/fill; sleep 100000"},
	}))
	ready := time.Now()
	ev := waitEvent(t, p, "ShmFull", 15*time.Second)
	t.Logf("ShmFull %s after the pod was ready", time.Since(ready).Round(time.Second))
	df := dfShm(t, p, "trainer")
	if df.avail != 0 {
		t.Fatalf("df /dev/shm: %d available, want 0 (the fill did not reach ENOSPC)", df.avail)
	}
	if want := fmt.Sprintf("(%dMi used of %dMi)", df.used>>20, df.size>>20); !strings.Contains(ev.Message, want) {
		t.Errorf("note %q does not give df numbers %s", ev.Message, want)
	}
	t.Logf("kubectl describe pod %s:\n%s", p.Name, describeEvents(t, p))
}

func TestS9EventsWillOOMBeforeFull(t *testing.T) {
	// limits.memory 100Mi; a memory emptyDir at /dev/shm (sized to the limit by the kubelet)
	// and a scratch memory emptyDir: 30 + 62 MiB of tmpfs leave the memcg ~7 MiB while
	// /dev/shm still has ~38 MiB free.
	spec := podSpec("s9-oom-"+randHex(3), corev1.Container{
		Name:      "trainer",
		Command:   []string{"sh", "-c", "head -c 30m /dev/zero > /scratch/a; head -c 62m /dev/zero > /dev/shm/b; sleep 100000"},
		Resources: memLimit("100Mi"),
		VolumeMounts: []corev1.VolumeMount{
			{Name: "dshm", MountPath: "/dev/shm"}, {Name: "scratch", MountPath: "/scratch"},
		},
	})
	spec.Spec.Volumes = []corev1.Volume{memoryEmptyDir("dshm", ""), memoryEmptyDir("scratch", "")}
	p := startPod(t, spec)
	ev := waitEvent(t, p, "ShmWillOOMBeforeFull", 30*time.Second)
	if !strings.Contains(ev.Message, "of the 100Mi limit is in use") {
		t.Errorf("note %q does not name the 100Mi limit", ev.Message)
	}
	t.Logf("kubectl describe pod %s:\n%s", p.Name, describeEvents(t, p))
}

func TestS9EventsOnePerWindow(t *testing.T) {
	p := startPod(t, podSpec("s9-window-"+randHex(3), corev1.Container{
		Name:    "trainer",
		Command: []string{"sh", "-c", "head -c 70m /dev/zero > /dev/shm/fill; sleep 100000"},
	}))
	first := waitEvent(t, p, "ShmFull", 15*time.Second)
	// Full for 3 windows after the first event, checked every 2 s (45 checks): one event
	// per window, so 3 more, not one per check.
	time.Sleep(3*eventsWindow + 10*time.Second)
	evs := podEvents(t, p, "ShmFull")
	var times []string
	for _, e := range evs {
		times = append(times, e.EventTime.Sub(first.EventTime.Time).Round(time.Second).String())
	}
	t.Logf("%d ShmFull events, at %v after the first", len(evs), times)
	if len(evs) != 4 {
		t.Errorf("%d ShmFull events in 3 windows after the first, want 4 (one per %s window)", len(evs), eventsWindow)
	}
	for i := 1; i < len(evs); i++ {
		if gap := evs[i].EventTime.Sub(evs[i-1].EventTime.Time); gap < eventsWindow {
			t.Errorf("events %d and %d are %s apart, less than the window", i-1, i, gap)
		}
	}
	m, err := scrapeViaAPI(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d, err := m.one("shmwatch_events_dropped_total", map[string]string{"reason": "ShmFull", "cause": "window"}); err != nil || d < 30 {
		t.Errorf("dropped in the window: %v (%v), want the checks between events counted", d, err)
	}
}

// withoutEventsRBAC removes the events rule from the agent's ClusterRole until cleanup.
func withoutEventsRBAC(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	roles := suite.kube.RbacV1().ClusterRoles()
	role, err := roles.Get(ctx, "shmwatch", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get ClusterRole shmwatch: %v", err)
	}
	orig := role.DeepCopy()
	kept := role.Rules[:0]
	for _, r := range role.Rules {
		if !slicesContains(r.Resources, "events") {
			kept = append(kept, r)
		}
	}
	role.Rules = kept
	if _, err := roles.Update(ctx, role, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("drop the events rule: %v", err)
	}
	t.Cleanup(func() {
		cur, err := roles.Get(ctx, "shmwatch", metav1.GetOptions{})
		if err == nil {
			cur.Rules = orig.Rules
			_, err = roles.Update(ctx, cur, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Errorf("restore the events rule: %v", err)
		}
	})
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestS9EventsWithoutRBAC(t *testing.T) {
	before, err := scrapeViaAPI(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	failed0, err := before.one("shmwatch_events_failed_total", map[string]string{"reason": "ShmFull"})
	if err != nil {
		t.Fatal(err)
	}
	withoutEventsRBAC(t)
	since := time.Now()
	var pods []*corev1.Pod
	for i := range 3 {
		pods = append(pods, startPod(t, podSpec(fmt.Sprintf("s9-norbac-%d-%s", i, randHex(3)), corev1.Container{
			Name:    "trainer",
			Command: []string{"sh", "-c", "head -c 70m /dev/zero > /dev/shm/fill; sleep 100000"},
		})))
	}
	var m metrics
	eventually(t, 30*time.Second, "3 failed ShmFull events", func() error {
		if m, err = scrapeViaAPI(context.Background()); err != nil {
			return err
		}
		f, err := m.one("shmwatch_events_failed_total", map[string]string{"reason": "ShmFull"})
		if err != nil {
			return err
		}
		if f-failed0 < 3 {
			return fmt.Errorf("failed %v -> %v", failed0, f)
		}
		return nil
	})
	for _, p := range pods {
		if _, err := m.one("shmwatch_shm_used_bytes", with(podLabels(p), "source", "runtime")); err != nil {
			t.Errorf("metrics without events RBAC: %v", err)
		}
		if evs := podEvents(t, p, ""); len(evs) != 0 {
			t.Errorf("%s got %d events without RBAC", p.Name, len(evs))
		}
	}
	logs, _, _, err := kubectl(context.Background(), "-n", agentNamespace, "logs", "-l", "app.kubernetes.io/name=shmwatch",
		"--since-time="+since.UTC().Format(time.RFC3339))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs, "cannot post events"); n != 1 {
		t.Errorf("%d warnings about posting events for 3+ failures, want 1:\n%s", n, logs)
	}
	t.Logf("agent log since the rule was dropped:\n%s", logs)
}

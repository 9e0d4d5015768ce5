//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scenario 9, the storm: stormPods pods whose /dev/shm fills at the same moment. The node
// posts at most --events.node-cap (60, the default) events in any minute; the rest are
// dropped and counted, and do not start the pods' windows. e2e.sh starts the rig's kubelet
// with --max-pods=250 for it.
const (
	stormPods    = 200
	stormNodeCap = 60
)

func TestS9EventsNodeCapStorm(t *testing.T) {
	ctx := context.Background()
	needStormCapacity(t)
	trigger := t.TempDir() // on this host, which is the rig's node
	if err := os.Chmod(trigger, 0o755); err != nil {
		t.Fatal(err)
	}
	prefix := "s9-storm-" + randHex(3) + "-"
	startStormPods(t, prefix, trigger)

	before, err := scrapeViaAPI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	droppedCap := func(m metrics) float64 {
		v, _ := m.one("shmwatch_events_dropped_total", map[string]string{"reason": "ShmFull", "cause": "node_cap"})
		return v
	}
	if err := os.WriteFile(filepath.Join(trigger, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	time.Sleep(75 * time.Second)

	times := stormEventTimes(t, prefix)
	after, err := scrapeViaAPI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	most, at := busiestMinute(times)
	t.Logf("%d pods full at once: %d ShmFull events in the 75 s after, at most %d in one minute (from %s after the trigger); dropped by the node cap %.0f",
		stormPods, len(times), most, at.Sub(start).Round(time.Second), droppedCap(after)-droppedCap(before))
	if most > stormNodeCap {
		t.Errorf("%d events in one minute, over the node cap of %d", most, stormNodeCap)
	}
	if len(times) < stormNodeCap {
		t.Errorf("%d events in 75 s, want the cap of %d posted at once", len(times), stormNodeCap)
	}
	if d := droppedCap(after) - droppedCap(before); d < stormPods-stormNodeCap {
		t.Errorf("dropped by the node cap %.0f, want at least the %d pods over the cap", d, stormPods-stormNodeCap)
	}
}

// needStormCapacity fails unless the node takes stormPods more pods: a run that cannot
// show the cap must not pass.
func needStormCapacity(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	node, err := suite.kube.CoreV1().Nodes().Get(ctx, suite.node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods, err := suite.kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + suite.node})
	if err != nil {
		t.Fatal(err)
	}
	if free := node.Status.Allocatable.Pods().Value() - int64(len(pods.Items)); free < stormPods {
		t.Fatalf("node %s takes %d more pods, the storm needs %d: start its kubelet with --max-pods=250 (.ci/run and e2e.sh do)",
			suite.node, free, stormPods)
	}
}

// startStormPods starts the pods, each waiting for trigger/go to fill its 1 MiB memory
// emptyDir at /dev/shm, and deletes them all at cleanup, waiting until they are gone so
// that later scenarios have the node to themselves.
func startStormPods(t *testing.T, prefix, trigger string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	pods := suite.kube.CoreV1().Pods(suite.ns)
	t.Cleanup(func() { deleteStormPods(t, prefix) })
	hostDir := corev1.HostPathDirectory
	var wg sync.WaitGroup
	errs := make(chan error, stormPods)
	sem := make(chan struct{}, 8)
	for i := range stormPods {
		p := podSpec(fmt.Sprintf("%s%03d", prefix, i), corev1.Container{
			Name:      "trainer",
			Command:   []string{"sh", "-c", "until [ -e /trigger/go ]; do sleep 1; done; head -c 2m /dev/zero > /dev/shm/fill; sleep 100000"},
			Resources: memLimit("16Mi"),
			VolumeMounts: []corev1.VolumeMount{{Name: "dshm", MountPath: "/dev/shm"},
				{Name: "trigger", MountPath: "/trigger", ReadOnly: true}},
		})
		p.Labels = map[string]string{"shmwatch-e2e/storm": strings.TrimSuffix(prefix, "-")}
		p.Spec.Volumes = []corev1.Volume{memoryEmptyDir("dshm", "1Mi"),
			{Name: "trigger", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: trigger, Type: &hostDir}}}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
				errs <- fmt.Errorf("create %s: %w", p.Name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sel := metav1.ListOptions{LabelSelector: "shmwatch-e2e/storm=" + strings.TrimSuffix(prefix, "-")}
	for {
		list, err := pods.List(ctx, sel)
		running := 0
		if err == nil {
			for _, p := range list.Items {
				if p.Status.Phase == corev1.PodRunning {
					running++
				}
			}
		}
		if running == stormPods {
			t.Logf("%d storm pods running", running)
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d storm pods running after 6 min (last err %v)", running, stormPods, err)
		case <-time.After(2 * time.Second):
		}
	}
}

func deleteStormPods(t *testing.T, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pods := suite.kube.CoreV1().Pods(suite.ns)
	sel := metav1.ListOptions{LabelSelector: "shmwatch-e2e/storm=" + strings.TrimSuffix(prefix, "-")}
	zero := int64(0)
	if err := pods.DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, sel); err != nil {
		t.Errorf("delete storm pods: %v", err)
		return
	}
	for ctx.Err() == nil {
		if list, err := pods.List(ctx, sel); err == nil && len(list.Items) == 0 {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if ctx.Err() != nil {
		t.Errorf("storm pods still in the API 5 min after delete")
		return
	}
	// Gone from the API is not gone from the node: the kubelet tears 200 pods down for a
	// while after, and their log directories (which the agent's degraded metadata reads)
	// go last. This host is the node.
	logs := filepath.Join("/var/log/pods", suite.ns+"_"+prefix+"*")
	for ctx.Err() == nil {
		if left, _ := filepath.Glob(logs); len(left) == 0 {
			return
		}
		time.Sleep(2 * time.Second)
	}
	left, _ := filepath.Glob(logs)
	t.Errorf("%d storm pods' log directories still on the node 5 min after delete", len(left))
}

// stormEventTimes lists the times of the shmwatch ShmFull events on the storm's pods.
func stormEventTimes(t *testing.T, prefix string) []time.Time {
	t.Helper()
	list, err := suite.kube.CoreV1().Events(suite.ns).List(context.Background(),
		metav1.ListOptions{FieldSelector: "reason=ShmFull"})
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Time
	for _, e := range list.Items {
		if e.ReportingController == "shmwatch" && strings.HasPrefix(e.InvolvedObject.Name, prefix) {
			out = append(out, e.EventTime.Time)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// busiestMinute is the most events within one minute of each other (sorted times) and
// when that minute starts. An event is timed when posted, a little after the cap let it
// through, so the minute is taken a second short.
func busiestMinute(times []time.Time) (int, time.Time) {
	most, at, j := 0, time.Time{}, 0
	for i := range times {
		for times[i].Sub(times[j]) >= time.Minute-time.Second {
			j++
		}
		if n := i - j + 1; n > most {
			most, at = n, times[j]
		}
	}
	return most, at
}

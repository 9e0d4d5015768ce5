//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scenario 6: the rig's kube-apiserver is stopped (its PID file) and started again by
// re-running the rig's idempotent up.sh. /metrics, read on the agent directly, keeps
// flowing; the metadata source goes api -> kubelet_logs and back to api.
func TestS6APIServerDownMetadataDegradesAndRecovers(t *testing.T) {
	state := os.Getenv("K8S_RIG_STATE")
	if state == "" {
		state = "/var/lib/k8s-rig"
	}
	pidFile := filepath.Join(state, "pids", "kube-apiserver.pid")
	if _, err := os.Stat(pidFile); err != nil {
		t.Skipf("not the k8s rig (no %s): cannot stop the API server", pidFile)
	}
	upSh := filepath.Join(rigDir(), "up.sh")
	if _, err := os.Stat(upSh); err != nil {
		t.Fatalf("rig up.sh (needed to restart the API server): %v; set K8S_RIG_DIR or SHMWATCH_SHARED", err)
	}
	p := startPod(t, podSpec("s6-meta", corev1.Container{Name: "c"}))
	ctx := context.Background()
	agent, err := agentPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	agentPID := firstPID(t, containerCgroupDir(t, agent, agent.Spec.Containers[0].Name))
	source := func(m metrics) (string, error) {
		var on []string
		for _, s := range m.find("shmwatch_metadata_source", nil) {
			if s.value == 1 {
				on = append(on, s.labels["source"])
			}
		}
		if len(on) != 1 {
			return "", fmt.Errorf("shmwatch_metadata_source: want one state at 1, got %v", on)
		}
		return on[0], nil
	}
	var slowest time.Duration
	wantSource := func(want string) func() error {
		return func() error {
			start := time.Now()
			m, err := scrapeDirect(ctx, agent, agentPID)
			slowest = max(slowest, time.Since(start))
			if err != nil {
				return err
			}
			got, err := source(m)
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("metadata source %s, want %s", got, want)
			}
			if s := m.find("shmwatch_pod_info", podLabels(p)); len(s) != 1 {
				return fmt.Errorf("shmwatch_pod_info%v: %d series", podLabels(p), len(s))
			}
			return nil
		}
	}
	eventually(t, 45*time.Second, "metadata from the API before", wantSource("api"))

	pid := apiserverPID(t, pidFile, state)
	t.Cleanup(func() {
		restartAPIServer(t, upSh)
		waitClusterHealthy(t)
	})
	t.Logf("stopping kube-apiserver pid %d", pid)
	stopped := time.Now()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("kill -TERM %d: %v", pid, err)
	}
	for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(200 * time.Millisecond)
	}
	if syscall.Kill(pid, 0) == nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}

	// While the API is down, every direct scrape must answer; the source degrades.
	var scrapes, failed int
	eventually(t, 2*time.Minute, "metadata degraded to kubelet_logs", func() error {
		scrapes++
		err := wantSource("kubelet_logs")()
		if err != nil && !strings.Contains(err.Error(), "metadata source") {
			failed++
		}
		return err
	})
	t.Logf("degraded %s after the API server stopped; %d scrapes, %d without the pod's series or failing", time.Since(stopped).Round(time.Second), scrapes, failed)
	if failed > 0 {
		t.Errorf("%d of %d scrapes failed or lost the pod while the API server was down", failed, scrapes)
	}
	// Keep it down a little longer: every scrape answers, still degraded, pod still named.
	for i := 0; i < 3; i++ {
		time.Sleep(time.Second)
		scrapes++
		if err := wantSource("kubelet_logs")(); err != nil {
			t.Errorf("scrape %d while the API server is down: %v", scrapes, err)
		}
	}
	t.Logf("API server down for %s: %d direct scrapes, slowest %s", time.Since(stopped).Round(time.Second), scrapes, slowest.Round(time.Millisecond))
	if _, err := suite.kube.CoreV1().Pods(suite.ns).Get(ctx, p.Name, metav1.GetOptions{}); err == nil {
		t.Fatalf("the API server still answers after SIGTERM to pid %d", pid)
	}

	restartAPIServer(t, upSh)
	restarted := time.Now()
	eventually(t, 2*time.Minute, "metadata back to api", wantSource("api"))
	t.Logf("metadata source back to api %s after up.sh returned", time.Since(restarted).Round(time.Second))
	// The node controller may have marked the node (and so the agent pod) NotReady while
	// the kubelet could not renew its lease; the next kubelet status sync heals both.
	waitClusterHealthy(t)
	if _, err := scrapeViaAPI(ctx); err != nil {
		t.Errorf("scrape through the API proxy after the restart: %v", err)
	}
	if a, err := agentPod(ctx); err == nil && a.Status.ContainerStatuses[0].RestartCount > agent.Status.ContainerStatuses[0].RestartCount {
		t.Errorf("the agent restarted while the API server was down (%d -> %d restarts)",
			agent.Status.ContainerStatuses[0].RestartCount, a.Status.ContainerStatuses[0].RestartCount)
	}
}

// waitClusterHealthy waits until the API server is ready, the node is Ready and the agent
// pod is Ready again.
func waitClusterHealthy(t *testing.T) {
	t.Helper()
	start := time.Now()
	eventually(t, 3*time.Minute, "cluster healthy after the API server restart", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := suite.kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
			return fmt.Errorf("readyz: %w", err)
		}
		node, err := suite.kube.CoreV1().Nodes().Get(ctx, suite.node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
				return fmt.Errorf("node %s Ready=%s: %s", suite.node, c.Status, c.Message)
			}
		}
		_, err = agentPod(ctx)
		return err
	})
	t.Logf("cluster healthy (API ready, node Ready, agent Ready) %s after the restart", time.Since(start).Round(time.Second))
}

// apiserverPID is the rig's kube-apiserver pid, checked like up.sh does: alive and its
// command line naming the state dir (pids get reused).
func apiserverPID(t *testing.T, pidFile, state string) int {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("read %s: %v", pidFile, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", pidFile, err)
	}
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmd, []byte("kube-apiserver")) || !bytes.Contains(cmd, []byte(state+"/")) {
		t.Fatalf("pid %d from %s is not the rig's kube-apiserver (%v)", pid, pidFile, err)
	}
	return pid
}

// restartAPIServer re-runs the rig's up.sh, which starts whatever of its components is not
// running and waits for the API server and the node to be ready. No-op when healthy.
func restartAPIServer(t *testing.T, upSh string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := suite.kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err == nil {
		return
	}
	cmd := exec.CommandContext(ctx, upSh)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("%s: %v\n%s", upSh, err, lastLines(out.String(), 6))
	if err != nil {
		t.Fatalf("restart with %s: %v", upSh, err)
	}
	if _, err := suite.kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
		t.Fatalf("API server not ready after up.sh: %v", err)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

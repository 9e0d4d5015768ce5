//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// agentDaemonSet returns the one DaemonSet in the agent namespace.
func agentDaemonSet(ctx context.Context) (*appsv1.DaemonSet, error) {
	list, err := suite.kube.AppsV1().DaemonSets(agentNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list daemonsets in %s: %w", agentNamespace, err)
	}
	if len(list.Items) != 1 {
		return nil, fmt.Errorf("want 1 daemonset in %s, found %d (is the overlay applied?)", agentNamespace, len(list.Items))
	}
	return &list.Items[0], nil
}

// agentPod returns the DaemonSet's pod on this node (the only node on the rig).
func agentPod(ctx context.Context) (*corev1.Pod, error) {
	ds, err := agentDaemonSet(ctx)
	if err != nil {
		return nil, err
	}
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("daemonset selector: %w", err)
	}
	pods, err := suite.kube.CoreV1().Pods(agentNamespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("list agent pods: %w", err)
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp == nil && (suite.node == "" || p.Spec.NodeName == suite.node) && podReady(p) {
			return p, nil
		}
	}
	return nil, fmt.Errorf("no ready agent pod (selector %s) among %d", labels.Selector(sel), len(pods.Items))
}

func waitAgentReady(ctx context.Context) (*corev1.Pod, error) {
	for {
		p, err := agentPod(ctx)
		if err == nil {
			return p, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("agent not ready: %w", err)
		case <-time.After(time.Second):
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podSpec is a small busybox pod pinned to the node under test. It sleeps; the tests
// exec what they need. No service account token, no network needed.
func podSpec(name string, containers ...corev1.Container) *corev1.Pod {
	grace := int64(1)
	no := false
	for i := range containers {
		c := &containers[i]
		c.Image = busybox
		c.ImagePullPolicy = corev1.PullNever
		if len(c.Command) == 0 {
			c.Command = []string{"sleep", "100000"}
		}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: suite.ns},
		Spec: corev1.PodSpec{
			NodeName:                      suite.node,
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			AutomountServiceAccountToken:  &no,
			Containers:                    containers,
		},
	}
}

func memLimit(q string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(q)}}
}

// memoryEmptyDir is an emptyDir{medium: Memory} volume, with sizeLimit when limit != "".
func memoryEmptyDir(name, limit string) corev1.Volume {
	ed := &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}
	if limit != "" {
		q := resource.MustParse(limit)
		ed.SizeLimit = &q
	}
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: ed}}
}

// startPod creates the pod, waits until it is Running and Ready, and deletes it at cleanup.
func startPod(t *testing.T, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := suite.kube.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", p.Name, err)
	}
	t.Cleanup(func() { deletePod(t, p.Name, false) })
	for {
		got, err := suite.kube.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err == nil && podReady(got) {
			return got
		}
		if err == nil && (got.Status.Phase == corev1.PodFailed || got.Status.Phase == corev1.PodSucceeded) {
			t.Fatalf("pod %s ended: %s %s %s", p.Name, got.Status.Phase, got.Status.Reason, got.Status.Message)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s not ready in time (last err %v, status %+v)", p.Name, err, got.Status)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// refreshPod re-reads a pod (container statuses change after OOM kills).
func refreshPod(t *testing.T, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	got, err := suite.kube.CoreV1().Pods(p.Namespace).Get(context.Background(), p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get pod %s: %v", p.Name, err)
	}
	return got
}

// deletePod deletes a test pod; with wait it returns once the API no longer has it.
func deletePod(t *testing.T, name string, wait bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	zero := int64(0)
	err := suite.kube.CoreV1().Pods(suite.ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil || !wait {
		return
	}
	for ctx.Err() == nil {
		if _, err := suite.kube.CoreV1().Pods(suite.ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("pod %s still in the API 90s after delete", name)
}

// kubectl runs kubectl with the suite's KUBECONFIG. It returns stdout, stderr and the
// exit code of the command run by `kubectl exec` (kubectl passes it through).
func kubectl(ctx context.Context, args ...string) (string, string, int, error) {
	cmd := exec.CommandContext(ctx, kubectlPath(), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return stdout.String(), stderr.String(), ee.ExitCode(), nil
	}
	if err != nil {
		return stdout.String(), stderr.String(), -1, fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	return stdout.String(), stderr.String(), 0, nil
}

// kubectlPath is kubectl from PATH, else the rig's build.
func kubectlPath() string {
	if p, err := exec.LookPath("kubectl"); err == nil {
		return p
	}
	m, _ := filepath.Glob("/var/cache/k8s-rig/bin-*/kubectl")
	if len(m) > 0 {
		return m[len(m)-1]
	}
	return "kubectl"
}

// execIn runs a command in a container and returns its output (stdout then stderr) and
// exit code.
func execIn(t *testing.T, ns, pod, container string, cmd ...string) (string, int) {
	t.Helper()
	stdout, stderr, code := execSplit(t, ns, pod, container, cmd...)
	return stdout + stderr, code
}

// execSplit is execIn with stdout and stderr apart (logs go to stderr, reports to stdout).
func execSplit(t *testing.T, ns, pod, container string, cmd ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"exec", "-n", ns, pod, "-c", container, "--"}, cmd...)
	stdout, stderr, code, err := kubectl(ctx, args...)
	if err != nil {
		t.Fatalf("%v: %s%s", err, stdout, stderr)
	}
	return stdout, stderr, code
}

// containerID is the runtime id of a pod's container (without the "containerd://" scheme).
func containerID(t *testing.T, p *corev1.Pod, name string) string {
	t.Helper()
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == name {
			if i := strings.Index(s.ContainerID, "://"); i >= 0 {
				return s.ContainerID[i+3:]
			}
			return s.ContainerID
		}
	}
	t.Fatalf("pod %s has no status for container %s", p.Name, name)
	return ""
}

// rigDir is the k8s rig's directory: $K8S_RIG_DIR, $SHMWATCH_SHARED/rigs/k8s, or
// <repo>/../shared/rigs/k8s.
func rigDir() string {
	if d := os.Getenv("K8S_RIG_DIR"); d != "" {
		return d
	}
	if s := os.Getenv("SHMWATCH_SHARED"); s != "" {
		return filepath.Join(s, "rigs", "k8s")
	}
	wd, _ := os.Getwd() // go test runs in test/e2e
	return filepath.Join(wd, "..", "..", "..", "shared", "rigs", "k8s")
}

package podmeta

import (
	"context"
	"fmt"
	"go.uber.org/zap/zaptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// rigClient returns an admin client for the real API server named by SHMWATCH_TEST_KUBECONFIG
// (the k8s rig: /work/shared/rigs/k8s/up.sh, then KUBECONFIG from /var/lib/k8s-rig/env.sh) and
// the node name (SHMWATCH_TEST_NODE, else K8S_RIG_NODE_NAME, else the only node).
func rigClient(t *testing.T) (string, string, *kubernetes.Clientset) {
	kc := os.Getenv("SHMWATCH_TEST_KUBECONFIG")
	if kc == "" {
		t.Skip("SHMWATCH_TEST_KUBECONFIG not set: no real API server to test against (bring up ../shared/rigs/k8s)")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	client := kubernetes.NewForConfigOrDie(cfg)
	node := os.Getenv("SHMWATCH_TEST_NODE")
	if node == "" {
		node = os.Getenv("K8S_RIG_NODE_NAME")
	}
	if node == "" {
		nodes, err := client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
		if err != nil || len(nodes.Items) != 1 {
			t.Fatalf("set SHMWATCH_TEST_NODE: cannot pick the node (%d nodes, %v)", len(nodes.Items), err)
		}
		node = nodes.Items[0].Name
	}
	return kc, node, client
}

// TestRigPodMetadata starts a real pod on the rig's node and checks what the provider says
// against the API server, the kubelet's log directories and the pod cgroup's limit that the
// kubelet wrote (cgroup v1, cgroupfs driver).
func TestRigPodMetadata(t *testing.T) {
	kc, node, client := rigClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)

	p, err := Start(ctx, Config{Kubeconfig: kc, NodeName: node, LogRoot: "/var/log/pods", Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop) // before the test ends: the provider logs to t
	d := waitFor(t, 30*time.Second, "source api", func() bool { return p.Source() == SourceAPI && p.Known() })
	t.Logf("source api after %v", d)
	waitFor(t, 30*time.Second, "node facts", func() bool { return p.Node().AllocatableMemory != nil })
	if v := p.Node().ServerVersion; !strings.HasPrefix(v, "v1.") {
		t.Errorf("ServerVersion = %q", v)
	}

	name := fmt.Sprintf("podmeta-test-%d", os.Getpid())
	never := v1.PullNever
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.PodSpec{
			NodeName:                      node,
			AutomountServiceAccountToken:  ptr(false),
			TerminationGracePeriodSeconds: ptr(int64(0)),
			Volumes: []v1.Volume{{Name: "dshm", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{
				Medium: v1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("32Mi"))}}}},
			Containers: []v1.Container{
				{Name: "app", Image: "localhost/rig-busybox:1", ImagePullPolicy: never, Command: []string{"sleep", "3600"},
					Resources:    v1.ResourceRequirements{Limits: mem("64Mi")},
					VolumeMounts: []v1.VolumeMount{{Name: "dshm", MountPath: "/dev/shm"}}},
				{Name: "side", Image: "localhost/rig-busybox:1", ImagePullPolicy: never, Command: []string{"sleep", "3600"},
					Resources: v1.ResourceRequirements{Limits: mem("32Mi")}},
			},
		},
	}
	created, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	uid := string(created.UID)
	t.Cleanup(func() {
		_ = client.CoreV1().Pods("default").Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))})
	})

	waitFor(t, 90*time.Second, "pod running with both container ids", func() bool {
		got, ok := p.Pod(uid)
		return ok && got.Phase == "Running" && len(got.Containers) == 2
	})
	got, _ := p.Pod(uid)
	live, err := client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range live.Status.ContainerStatuses {
		if id := stripRuntime(s.ContainerID); got.Containers[id] != s.Name {
			t.Errorf("container %s id %s: provider has %q", s.Name, id, got.Containers[id])
		}
	}
	if got.QOS != "burstable" || got.MemoryLimit == nil || *got.MemoryLimit != 96<<20 {
		t.Errorf("qos %q limit %s, want burstable 96Mi", got.QOS, ptrStr(got.MemoryLimit))
	}
	if len(got.MemoryVolumes) != 1 || got.MemoryVolumes[0].Name != "dshm" || ptrStr(got.MemoryVolumes[0].SizeLimit) != strconv.Itoa(32<<20) ||
		len(got.MemoryVolumes[0].AtDevShm) != 1 || got.MemoryVolumes[0].AtDevShm[0] != "app" {
		t.Errorf("memory volumes %+v", got.MemoryVolumes)
	}
	// The kubelet's own verdict: the pod cgroup limit it wrote (v1, cgroupfs driver).
	limitFile := filepath.Join("/sys/fs/cgroup/memory/kubepods/burstable", "pod"+uid, "memory.limit_in_bytes")
	if raw, err := os.ReadFile(limitFile); err == nil {
		if v, _ := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64); v != *got.MemoryLimit {
			t.Errorf("%s = %d, provider says %d", limitFile, v, *got.MemoryLimit)
		}
	} else {
		t.Logf("kubelet's pod cgroup limit not checked: %v", err)
	}
	// The fallback sees the same pod and containers.
	logs := NewKubeletLogs("/var/log/pods")
	lp, ok := logs.Pod(uid)
	if !ok || lp.Namespace != "default" || lp.Name != name {
		t.Errorf("kubelet logs: %+v %v", lp, ok)
	}
	for id, c := range got.Containers {
		if lp.Containers[id] != c {
			t.Errorf("kubelet logs: container %s %s missing (%v)", c, id, lp.Containers)
		}
	}

	if err := client.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "pod gone", func() bool { _, ok := p.Pod(uid); return !ok })
}

// TestRigForbiddenThenGranted runs the provider as a service account without RBAC (403 from the
// real API server: degraded), then grants pods list/watch and node get, and waits for recovery.
func TestRigForbiddenThenGranted(t *testing.T) {
	kc, node, client := rigClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	name := fmt.Sprintf("podmeta-test-%d", os.Getpid())

	if _, err := client.CoreV1().ServiceAccounts("default").Create(ctx,
		&v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bg := context.Background()
		_ = client.RbacV1().ClusterRoleBindings().Delete(bg, name, metav1.DeleteOptions{})
		_ = client.RbacV1().ClusterRoles().Delete(bg, name, metav1.DeleteOptions{})
		_ = client.CoreV1().ServiceAccounts("default").Delete(bg, name, metav1.DeleteOptions{})
	})
	tok, err := client.CoreV1().ServiceAccounts("default").CreateToken(ctx, name,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	saKubeconfig := writeTokenKubeconfig(t, kc, tok.Status.Token)

	p, err := Start(ctx, Config{Kubeconfig: saKubeconfig, NodeName: node, LogRoot: "/var/log/pods",
		Logger: zaptest.NewLogger(t), ProbeInterval: time.Second, RestartAfter: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop) // before the test ends: the provider logs to t
	time.Sleep(3 * time.Second)
	if p.Source() == SourceAPI || p.Known() {
		t.Fatalf("source %s known %v without RBAC", p.Source(), p.Known())
	}
	t.Logf("without RBAC: source %s", p.Source())

	if _, err := client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: "default"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d := waitFor(t, 60*time.Second, "recovery after RBAC grant", func() bool { return p.Source() == SourceAPI && p.Known() })
	t.Logf("source api %v after the grant", d)
}

// writeTokenKubeconfig copies the admin kubeconfig's cluster and authenticates with token only.
func writeTokenKubeconfig(t *testing.T, adminKubeconfig, token string) string {
	raw, err := clientcmd.LoadFromFile(adminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cur := raw.Contexts[raw.CurrentContext]
	if cur == nil {
		t.Fatalf("%s: no current context", adminKubeconfig)
	}
	cluster := raw.Clusters[cur.Cluster]
	out := clientcmdapi.NewConfig()
	out.Clusters["c"] = cluster
	out.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: token}
	out.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "sa"}
	out.CurrentContext = "c"
	path := filepath.Join(t.TempDir(), "sa.kubeconfig")
	if err := clientcmd.WriteToFile(*out, path); err != nil {
		t.Fatal(err)
	}
	return path
}

package podmeta

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
)

const (
	idApp  = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	idInit = "1111111111111111111111111111111111111111111111111111111111111111"
	idDbg  = "2222222222222222222222222222222222222222222222222222222222222222"
	idSide = "3333333333333333333333333333333333333333333333333333333333333333"
)

func mem(s string) v1.ResourceList { return v1.ResourceList{v1.ResourceMemory: resource.MustParse(s)} }

func ptr[T any](v T) *T { return &v }

func ctr(name, limit string, mounts ...v1.VolumeMount) v1.Container {
	c := v1.Container{Name: name, VolumeMounts: mounts}
	if limit != "" {
		c.Resources.Limits = mem(limit)
	}
	return c
}

func basePod(uid, name string, qos v1.PodQOSClass) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid), Namespace: "ns1", Name: name},
		Spec:       v1.PodSpec{NodeName: "node-a"},
		Status:     v1.PodStatus{QOSClass: qos, Phase: v1.PodRunning},
	}
}

// mappingCases are pods as the API server returns them and what the kubelet would do with them.
func mappingCases() []struct {
	name string
	pod  *v1.Pod
	want Pod
} {
	always := v1.ContainerRestartPolicyAlways

	guaranteed := basePod("u-guaranteed", "guaranteed", v1.PodQOSGuaranteed)
	guaranteed.Spec.Containers = []v1.Container{ctr("app", "100Mi"), ctr("log", "200Mi")}
	guaranteed.Spec.InitContainers = []v1.Container{ctr("init", "50Mi")}
	guaranteed.Spec.HostIPC = true
	guaranteed.Status.ContainerStatuses = []v1.ContainerStatus{
		{Name: "app", ContainerID: "containerd://" + idApp},
		{Name: "log"}, // not started yet: no id
	}
	guaranteed.Status.InitContainerStatuses = []v1.ContainerStatus{{Name: "init", ContainerID: "cri-o://" + idInit}}
	guaranteed.Status.EphemeralContainerStatuses = []v1.ContainerStatus{{Name: "debug", ContainerID: "docker://" + idDbg}}

	partial := basePod("u-partial", "partial", v1.PodQOSBurstable)
	partial.Spec.Containers = []v1.Container{ctr("app", "100Mi"), ctr("nolimit", "")}

	initMax := basePod("u-initmax", "initmax", v1.PodQOSBurstable)
	initMax.Spec.Containers = []v1.Container{ctr("app", "100Mi")}
	initMax.Spec.InitContainers = []v1.Container{ctr("migrate", "500Mi")}

	initNoLimit := basePod("u-initnolimit", "initnolimit", v1.PodQOSBurstable)
	initNoLimit.Spec.Containers = []v1.Container{ctr("app", "100Mi")}
	initNoLimit.Spec.InitContainers = []v1.Container{ctr("migrate", "")}

	// Sidecar (restartable init) first: it runs beside the later init container and the apps.
	sidecar := basePod("u-sidecar", "sidecar", v1.PodQOSBurstable)
	side := ctr("proxy", "50Mi")
	side.RestartPolicy = &always
	sidecar.Spec.InitContainers = []v1.Container{side, ctr("migrate", "120Mi")}
	sidecar.Spec.Containers = []v1.Container{ctr("app", "100Mi")}
	sidecar.Status.InitContainerStatuses = []v1.ContainerStatus{{Name: "proxy", ContainerID: "containerd://" + idSide}}

	overhead := basePod("u-overhead", "overhead", v1.PodQOSBurstable)
	overhead.Spec.Containers = []v1.Container{ctr("app", "100Mi")}
	overhead.Spec.Overhead = mem("10Mi")

	bestEffort := basePod("u-besteffort", "besteffort", v1.PodQOSBestEffort)
	bestEffort.Spec.Containers = []v1.Container{ctr("app", "")}
	bestEffort.Status.Phase = v1.PodPending

	podLevel := basePod("u-podlevel", "podlevel", v1.PodQOSBurstable)
	podLevel.Spec.Resources = &v1.ResourceRequirements{Limits: mem("1Gi")}
	podLevel.Spec.Containers = []v1.Container{ctr("app", ""), ctr("b", "")}

	shm := basePod("u-shm", "shm", v1.PodQOSBurstable)
	shm.Spec.Volumes = []v1.Volume{
		{Name: "dshm", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{
			Medium: v1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("64Mi"))}}},
		{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{
			Medium: v1.StorageMediumMemory}}},
		{Name: "disk", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}},
		{Name: "cm", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{}}},
	}
	shm.Spec.InitContainers = []v1.Container{ctr("prep", "", v1.VolumeMount{Name: "dshm", MountPath: "/dev/shm"})}
	shm.Spec.Containers = []v1.Container{
		ctr("app", "256Mi", v1.VolumeMount{Name: "dshm", MountPath: "/dev/shm/"}, v1.VolumeMount{Name: "scratch", MountPath: "/tmp"}),
		ctr("other", "", v1.VolumeMount{Name: "dshm", MountPath: "/data"}, v1.VolumeMount{Name: "disk", MountPath: "/dev/shm"}),
	}

	return []struct {
		name string
		pod  *v1.Pod
		want Pod
	}{
		{"guaranteed: sum of app limits, runtime prefixes stripped", guaranteed, Pod{
			UID: "u-guaranteed", Namespace: "ns1", Name: "guaranteed", QOS: "guaranteed", HostIPC: true, Phase: "Running",
			Containers:  map[string]string{idApp: "app", idInit: "init", idDbg: "debug"},
			MemoryLimit: ptr(uint64(300 << 20)), Source: SourceAPI}},
		{"one app container without a limit: no pod limit", partial, Pod{
			UID: "u-partial", Namespace: "ns1", Name: "partial", QOS: "burstable", Phase: "Running",
			Containers: map[string]string{}, Source: SourceAPI}},
		{"init container larger than apps: max rule", initMax, Pod{
			UID: "u-initmax", Namespace: "ns1", Name: "initmax", QOS: "burstable", Phase: "Running",
			Containers: map[string]string{}, MemoryLimit: ptr(uint64(500 << 20)), Source: SourceAPI}},
		{"init container without a limit: no pod limit (kubelet checks init containers too)", initNoLimit, Pod{
			UID: "u-initnolimit", Namespace: "ns1", Name: "initnolimit", QOS: "burstable", Phase: "Running",
			Containers: map[string]string{}, Source: SourceAPI}},
		{"sidecar adds to apps and to later init containers", sidecar, Pod{
			UID: "u-sidecar", Namespace: "ns1", Name: "sidecar", QOS: "burstable", Phase: "Running",
			Containers: map[string]string{idSide: "proxy"}, MemoryLimit: ptr(uint64(170 << 20)), Source: SourceAPI}},
		{"pod overhead added", overhead, Pod{
			UID: "u-overhead", Namespace: "ns1", Name: "overhead", QOS: "burstable", Phase: "Running",
			Containers: map[string]string{}, MemoryLimit: ptr(uint64(110 << 20)), Source: SourceAPI}},
		{"best effort: no limit", bestEffort, Pod{
			UID: "u-besteffort", Namespace: "ns1", Name: "besteffort", QOS: "besteffort", Phase: "Pending",
			Containers: map[string]string{}, Source: SourceAPI}},
		{"pod-level limit wins over undeclared containers", podLevel, Pod{
			UID: "u-podlevel", Namespace: "ns1", Name: "podlevel", QOS: "burstable", Phase: "Running",
			Containers: map[string]string{}, MemoryLimit: ptr(uint64(1 << 30)), Source: SourceAPI}},
		{"memory emptyDirs with sizeLimit and /dev/shm mounts", shm, Pod{
			UID: "u-shm", Namespace: "ns1", Name: "shm", QOS: "burstable", Phase: "Running",
			Containers: map[string]string{},
			MemoryVolumes: []Volume{
				{Name: "dshm", SizeLimit: ptr(uint64(64 << 20)), AtDevShm: []string{"prep", "app"}},
				{Name: "scratch"},
			}, Source: SourceAPI}},
	}
}

func TestFromAPI(t *testing.T) {
	for _, tc := range mappingCases() {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, fromAPI(tc.pod)); diff != "" {
				t.Errorf("fromAPI (-want +got):\n%s", diff)
			}
		})
	}
}

// TestInformerMappingFakeClientset runs the informer path (events, updates, deletes, node and
// version probe) against client-go's fake clientset; degraded mode is tested against a real
// HTTP server in degraded_test.go.
func TestInformerMappingFakeClientset(t *testing.T) {
	cases := mappingCases()
	client := fake.NewClientset()
	client.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{GitVersion: "v1.33.13"}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, tc := range cases {
		if _, err := client.CoreV1().Pods("ns1").Create(ctx, tc.pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.CoreV1().Nodes().Create(ctx, &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-a"},
		Status:     v1.NodeStatus{Allocatable: mem("7Gi"), Capacity: mem("8Gi")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	cfg := Config{NodeName: "node-a", ProbeInterval: 50 * time.Millisecond}
	cfg.setDefaults()
	p := startWithClient(ctx, cfg, typedClient{client}, newKubeletLogs("", time.Second))
	t.Cleanup(p.Stop)
	waitFor(t, 5*time.Second, "source api", func() bool { return p.Source() == SourceAPI && p.Known() })

	for _, tc := range cases {
		got, ok := p.Pod(tc.want.UID)
		if !ok {
			t.Errorf("%s: pod %s not known", tc.name, tc.want.UID)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: Pod (-want +got):\n%s", tc.name, diff)
		}
	}
	if n := len(p.Pods()); n != len(cases) {
		t.Errorf("Pods() has %d pods, want %d", n, len(cases))
	}
	waitFor(t, 5*time.Second, "node facts", func() bool { return p.Node().ServerVersion != "" })
	wantNode := Node{AllocatableMemory: ptr(uint64(7 << 30)), CapacityMemory: ptr(uint64(8 << 30)), ServerVersion: "v1.33.13"}
	if diff := cmp.Diff(wantNode, p.Node()); diff != "" {
		t.Errorf("Node (-want +got):\n%s", diff)
	}

	// A restarted container gets a new id; the old one must go.
	restarted := cases[0].pod.DeepCopy()
	restarted.Status.ContainerStatuses[0].ContainerID = "containerd://" + idDbg[:60] + "beef"
	if _, err := client.CoreV1().Pods("ns1").UpdateStatus(ctx, restarted, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "container id update", func() bool {
		got, _ := p.Pod("u-guaranteed")
		return got.Containers[idDbg[:60]+"beef"] == "app" && got.Containers[idApp] == ""
	})
	if err := client.CoreV1().Pods("ns1").Delete(ctx, "partial", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "delete", func() bool { _, ok := p.Pod("u-partial"); return !ok })
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not reached within %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

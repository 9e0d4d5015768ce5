package podmeta

import (
	"context"
	"fmt"
	"go.uber.org/zap/zaptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
)

// logTree is a kubelet log layout in a temp dir: <dir>/pods/<ns>_<name>_<uid>/<container>/0.log and
// <dir>/containers/<name>_<ns>_<container>-<id>.log -> the pod's log file.
type logTree struct{ dir string }

func newLogTree(t *testing.T) logTree {
	dir := t.TempDir()
	for _, d := range []string{"pods", "containers"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return logTree{dir}
}

func (l logTree) root() string { return filepath.Join(l.dir, "pods") }

func (l logTree) addPod(t *testing.T, ns, name, uid, container, id string) {
	podDir := fmt.Sprintf("%s_%s_%s", ns, name, uid)
	logFile := filepath.Join(l.dir, "pods", podDir, container, "0.log")
	if err := os.MkdirAll(filepath.Dir(logFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(logFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(l.dir, "containers", fmt.Sprintf("%s_%s_%s-%s.log", name, ns, container, id))
	if err := os.Symlink(logFile, link); err != nil {
		t.Fatal(err)
	}
}

func apiPod(uid, name, node, limit, id string) *v1.Pod {
	p := basePod(uid, name, v1.PodQOSGuaranteed)
	p.Spec.NodeName = node
	p.Spec.Containers = []v1.Container{ctr("app", limit)}
	p.Status.ContainerStatuses = []v1.ContainerStatus{{Name: "app", ContainerID: "containerd://" + id}}
	return p
}

func hexID(i int) string { return fmt.Sprintf("%064x", 0xc0ffee00+i) }

// TestDegradeAndRecover runs the provider against a real HTTP API server on loopback, breaks the
// server four ways (stopped: connection refused; 503; 403 as with missing RBAC; connections
// dropped after accept) and checks each time that the source flips to the kubelet's log
// directories, that pods created during the outage are named from the logs, and that after
// recovery the API's data comes back without a restart.
func TestDegradeAndRecover(t *testing.T) {
	const node = "node-a"
	srv := newTestAPIServer(t, node)
	logs := newLogTree(t)

	const uidA, uidB, uidX = "aaaaaaaa-0000-4000-8000-00000000000a", "bbbbbbbb-0000-4000-8000-00000000000b", "eeeeeeee-0000-4000-8000-00000000000e"
	srv.put(apiPod(uidA, "web-a", node, "128Mi", hexID(0)))
	srv.put(apiPod(uidB, "gone-b", node, "64Mi", hexID(1)))
	srv.put(apiPod(uidX, "elsewhere", "node-b", "64Mi", hexID(2)))
	logs.addPod(t, "ns1", "web-a", uidA, "app", hexID(0))

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p, err := Start(ctx, Config{
		Kubeconfig: srv.kubeconfig(t), NodeName: node, LogRoot: logs.root(), Logger: zaptest.NewLogger(t),
		ProbeInterval: 200 * time.Millisecond, ProbeTimeout: time.Second, RestartAfter: time.Second,
		LogsCacheTTL: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop) // before the test ends: the provider logs to t
	if got := p.Source(); got == SourceAPI {
		t.Fatalf("Source() = %q before any sync", got)
	}
	d := waitFor(t, 10*time.Second, "first sync", func() bool { return p.Source() == SourceAPI && p.Known() })
	t.Logf("synced: source api after %v", d.Round(time.Millisecond))
	assertPod(t, p, uidA, "web-a", SourceAPI, ptr(uint64(128<<20)))
	if _, ok := p.Pod(uidX); ok {
		t.Errorf("pod of node-b known: the field selector was not applied")
	}
	waitFor(t, 5*time.Second, "node facts", func() bool { return p.Node().ServerVersion != "" })
	if diff := cmp.Diff(Node{AllocatableMemory: ptr(uint64(3 << 30)), CapacityMemory: ptr(uint64(4 << 30)), ServerVersion: "v1.33.13"}, p.Node()); diff != "" {
		t.Errorf("Node (-want +got):\n%s", diff)
	}

	const outage = 1500 * time.Millisecond
	faults := []struct {
		name          string
		break_, mend_ func()
	}{
		{"refused", srv.stop, srv.restart},
		{"503", func() { srv.setFault("503") }, func() { srv.setFault("") }},
		{"403", func() { srv.setFault("403") }, func() { srv.setFault("") }},
		{"drop", func() { srv.setFault("drop") }, func() { srv.setFault("") }},
	}
	for i, f := range faults {
		uid := fmt.Sprintf("cccccccc-0000-4000-8000-%012d", i)
		name := "late-" + f.name
		id := hexID(10 + i)

		f.break_()
		broken := time.Now()
		degraded := waitFor(t, 10*time.Second, f.name+": degrade", func() bool { return p.Source() == SourceKubeletLogs })
		if p.Known() {
			t.Errorf("%s: Known() true while degraded", f.name)
		}
		// The pod starts while the API is unreachable: only the kubelet's directories know it.
		logs.addPod(t, "ns1", name, uid, "app", id)
		waitFor(t, 2*time.Second, f.name+": pod from logs", func() bool { _, ok := p.Pod(uid); return ok })
		got, _ := p.Pod(uid)
		want := Pod{UID: uid, Namespace: "ns1", Name: name, Containers: map[string]string{id: "app"}, Source: SourceKubeletLogs}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: pod from logs (-want +got):\n%s", f.name, diff)
		}
		// The last API record of a pod the informer knew still answers, with its limit.
		assertPod(t, p, uidA, "web-a", SourceAPI, ptr(uint64(128<<20)))
		srv.put(apiPod(uid, name, node, "64Mi", id))
		if i == 0 {
			srv.remove(uidB)
		}
		// Outages shorter than watchGap are bridged by design; make this one longer.
		time.Sleep(time.Until(broken.Add(outage)))
		if p.Source() != SourceKubeletLogs {
			t.Errorf("%s: source %s during the outage", f.name, p.Source())
		}

		f.mend_()
		recovered := waitFor(t, 15*time.Second, f.name+": recover", func() bool {
			got, _ := p.Pod(uid)
			return p.Source() == SourceAPI && p.Known() && got.Source == SourceAPI
		})
		assertPod(t, p, uid, name, SourceAPI, ptr(uint64(64<<20)))
		// Recovered for good: no flap back once watchGap has passed.
		for end := time.Now().Add(watchGap + 200*time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if s := p.Source(); s != SourceAPI {
				t.Fatalf("%s: source flapped back to %s after recovery; informer state: %s", f.name, s, p.(*provider).api.state())
			}
		}
		t.Logf("%-7s degraded after %v; after the fix, source api with the outage pod's API record after %v",
			f.name, degraded.Round(time.Millisecond), recovered.Round(time.Millisecond))
	}

	if _, ok := p.Pod(uidB); ok {
		t.Errorf("pod deleted during an outage still known")
	}
	var names []string
	for _, pod := range p.Pods() {
		names = append(names, pod.Name)
	}
	if want := []string{"late-403", "late-503", "late-drop", "late-refused", "web-a"}; !cmp.Equal(want, names) {
		t.Errorf("Pods() names = %v, want %v", names, want)
	}
	if n := srv.sawSelector("spec.nodeName=" + node); n == 0 {
		t.Errorf("the server never saw the node field selector")
	}
}

func assertPod(t *testing.T, p Provider, uid, name string, src Source, limit *uint64) {
	t.Helper()
	got, ok := p.Pod(uid)
	if !ok {
		t.Fatalf("pod %s (%s) not known; source %s", uid, name, p.Source())
	}
	if got.Name != name || got.Namespace != "ns1" || got.Source != src || !cmp.Equal(got.MemoryLimit, limit) {
		t.Errorf("pod %s = %s/%s source %s limit %v, want ns1/%s source %s limit %v",
			uid, got.Namespace, got.Name, got.Source, ptrStr(got.MemoryLimit), name, src, ptrStr(limit))
	}
}

func ptrStr(v *uint64) string {
	if v == nil {
		return "nil"
	}
	return fmt.Sprint(*v)
}

// TestNoAPIServer: outside a cluster with no kubeconfig the provider answers from the kubelet's
// directories, and says "none" when there are none.
func TestNoAPIServer(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	p, err := Start(ctx, Config{NodeName: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop) // before the test ends: the provider logs to t
	if p.Source() != SourceNone || p.Known() || len(p.Pods()) != 0 {
		t.Errorf("no API, no logs: source %s known %v pods %d", p.Source(), p.Known(), len(p.Pods()))
	}

	logs := newLogTree(t)
	logs.addPod(t, "kube-system", "etcd-node-a", "0123456789abcdef0123456789abcdef", "etcd", hexID(3))
	p, err = Start(ctx, Config{NodeName: "node-a", LogRoot: logs.root()})
	if err != nil {
		t.Fatal(err)
	}
	if p.Source() != SourceKubeletLogs || p.Known() {
		t.Errorf("no API, logs: source %s known %v", p.Source(), p.Known())
	}
	got, ok := p.Pod("0123456789abcdef0123456789abcdef")
	if !ok || got.Namespace != "kube-system" || got.Name != "etcd-node-a" || got.Containers[hexID(3)] != "etcd" {
		t.Errorf("static pod from logs = %+v, %v", got, ok)
	}
	if (p.Node() != Node{}) {
		t.Errorf("Node() without API = %+v, want zero", p.Node())
	}
}

func TestStartBadKubeconfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte("not: [a kubeconfig"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), Config{Kubeconfig: path, NodeName: "n"})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Start with a broken kubeconfig: err = %v, want one naming %s", err, path)
	}
}

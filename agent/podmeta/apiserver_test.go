package podmeta

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apimachinery/pkg/watch"
)

// testAPIServer is a small API server over real HTTP on 127.0.0.1: pods list and watch (with
// resourceVersion resume, field selector spec.nodeName), get node, /version. It can be stopped
// (connection refused), made to answer 503 or 403, or to drop connections, and brought back.
type testAPIServer struct {
	t    *testing.T
	addr string

	mu        sync.Mutex
	srv       *http.Server
	rv        int
	pods      map[string]v1.Pod // by uid
	history   []watchEntry
	fault     string        // "", "503", "403", "drop"
	changed   chan struct{} // closed and replaced on every change
	node      v1.Node
	selectors map[string]int // field selectors seen on pod requests
}

type watchEntry struct {
	rv  int
	typ watch.EventType
	pod v1.Pod
}

func newTestAPIServer(t *testing.T, nodeName string) *testAPIServer {
	s := &testAPIServer{
		t:         t,
		pods:      make(map[string]v1.Pod),
		changed:   make(chan struct{}),
		selectors: make(map[string]int),
		node: v1.Node{
			TypeMeta:   metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{Name: nodeName, ResourceVersion: "1"},
			Status:     v1.NodeStatus{Allocatable: mem("3Gi"), Capacity: mem("4Gi")},
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	t.Cleanup(s.stop)
	return s
}

func (s *testAPIServer) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(s.handle)}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// stop closes the listener and every connection: clients get "connection refused".
func (s *testAPIServer) stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// restart listens again on the same address, like an API server coming back.
func (s *testAPIServer) restart() {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.t.Fatalf("listen again on %s: %v", s.addr, err)
	}
	s.serve(ln)
}

func (s *testAPIServer) setFault(f string) {
	s.mu.Lock()
	s.fault = f
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *testAPIServer) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *testAPIServer) put(p *v1.Pod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rv++
	cp := *p.DeepCopy()
	cp.TypeMeta = metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}
	cp.ResourceVersion = strconv.Itoa(s.rv)
	typ := watch.Added
	if _, ok := s.pods[string(cp.UID)]; ok {
		typ = watch.Modified
	}
	s.pods[string(cp.UID)] = cp
	s.history = append(s.history, watchEntry{s.rv, typ, cp})
	s.notifyLocked()
}

func (s *testAPIServer) remove(uid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pods[uid]
	if !ok {
		return
	}
	s.rv++
	delete(s.pods, uid)
	p.ResourceVersion = strconv.Itoa(s.rv)
	s.history = append(s.history, watchEntry{s.rv, watch.Deleted, p})
	s.notifyLocked()
}

func (s *testAPIServer) sawSelector(sel string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.selectors[sel]
}

func (s *testAPIServer) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	fault := s.fault
	s.mu.Unlock()
	switch fault {
	case "503":
		writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "apiserver is shutting down")
		return
	case "403":
		writeStatus(w, http.StatusForbidden, "Forbidden",
			`pods is forbidden: User "system:serviceaccount:shmwatch:shmwatch" cannot list resource "pods"`)
		return
	case "drop":
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
			}
		}
		return
	}
	switch {
	case r.URL.Path == "/version":
		writeJSON(w, version.Info{Major: "1", Minor: "33", GitVersion: "v1.33.13"})
	case r.URL.Path == "/api/v1/nodes/"+s.node.Name:
		s.mu.Lock()
		n := s.node
		s.mu.Unlock()
		writeJSON(w, n)
	case r.URL.Path == "/api/v1/pods" && r.URL.Query().Get("watch") == "true":
		s.watchPods(w, r)
	case r.URL.Path == "/api/v1/pods":
		s.listPods(w, r)
	default:
		writeStatus(w, http.StatusNotFound, "NotFound", r.URL.Path+" not served by the test API server")
	}
}

// nodeFilter reads the only field selector the agent may use: spec.nodeName=<node>.
func (s *testAPIServer) nodeFilter(r *http.Request) (string, bool) {
	sel := r.URL.Query().Get("fieldSelector")
	s.mu.Lock()
	s.selectors[sel]++
	s.mu.Unlock()
	node, ok := strings.CutPrefix(sel, "spec.nodeName=")
	return node, ok
}

func (s *testAPIServer) listPods(w http.ResponseWriter, r *http.Request) {
	node, ok := s.nodeFilter(r)
	if !ok {
		writeStatus(w, http.StatusBadRequest, "BadRequest", "test server wants fieldSelector spec.nodeName=<node>")
		return
	}
	s.mu.Lock()
	list := v1.PodList{
		TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"},
		ListMeta: metav1.ListMeta{ResourceVersion: strconv.Itoa(s.rv)},
	}
	for _, p := range s.pods {
		if p.Spec.NodeName == node {
			list.Items = append(list.Items, p)
		}
	}
	s.mu.Unlock()
	writeJSON(w, list)
}

// watchPods replays history after the requested resourceVersion, then streams changes until a
// fault is injected, the server stops or the client goes.
func (s *testAPIServer) watchPods(w http.ResponseWriter, r *http.Request) {
	node, ok := s.nodeFilter(r)
	if !ok {
		writeStatus(w, http.StatusBadRequest, "BadRequest", "test server wants fieldSelector spec.nodeName=<node>")
		return
	}
	from, _ := strconv.Atoi(r.URL.Query().Get("resourceVersion"))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	flusher := w.(http.Flusher)
	flusher.Flush()
	enc := json.NewEncoder(w)
	for {
		s.mu.Lock()
		var pending []watchEntry
		for _, e := range s.history {
			if e.rv > from && e.pod.Spec.NodeName == node {
				pending = append(pending, e)
			}
		}
		if n := len(s.history); n > 0 {
			from = max(from, s.history[n-1].rv)
		}
		changed, fault := s.changed, s.fault
		s.mu.Unlock()
		if fault != "" {
			return
		}
		for _, e := range pending {
			raw, _ := json.Marshal(e.pod)
			if err := enc.Encode(metav1.WatchEvent{Type: string(e.typ), Object: runtime.RawExtension{Raw: raw}}); err != nil {
				return
			}
		}
		flusher.Flush()
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Message: msg, Reason: metav1.StatusReason(reason), Code: int32(code),
	})
}

// kubeconfig writes a kubeconfig for the test server and returns its path.
func (s *testAPIServer) kubeconfig(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: http://%s
contexts:
- name: test
  context:
    cluster: test
    user: test
current-context: test
users:
- name: test
  user:
    token: test-token
`, s.addr)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

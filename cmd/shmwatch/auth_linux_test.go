package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmwatch/shmwatch/internal/podtree"
)

// startReviewAPI serves TokenReviews (one valid token) and
// SubjectAccessReviews (always allowed) over HTTP on 127.0.0.1, and answers
// every other API path 404, and returns a kubeconfig naming it.
func startReviewAPI(t *testing.T, validToken string) (kubeconfig string, reviews *atomic.Int64) {
	t.Helper()
	reviews = new(atomic.Int64)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /apis/authentication.k8s.io/v1/tokenreviews", func(w http.ResponseWriter, r *http.Request) {
		reviews.Add(1)
		body, _ := io.ReadAll(r.Body)
		ok := strings.Contains(string(body), validToken)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
			"status": map[string]any{"authenticated": ok, "user": map[string]any{"username": "system:serviceaccount:monitoring:prometheus"}}})
	})
	mux.HandleFunc("POST /apis/authorization.k8s.io/v1/subjectaccessreviews", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
			"status": map[string]any{"allowed": true}})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://%s"}}]
users: [{name: u, user: {token: agent-token}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, ln.Addr())
	if err := os.WriteFile(kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return kubeconfig, reviews
}

// TestServeAuthKubernetes runs the real binary with --web.auth=kubernetes and
// no web config: TLS with a self-signed certificate, /metrics refused without
// a token, served with one (reviewed once, then cached), probes open.
func TestServeAuthKubernetes(t *testing.T) {
	tree := podtree.New(t)
	kubeconfig, reviews := startReviewAPI(t, "scraper-token")
	srv := startServe(t, serveOpts{tls: true, kubeconfig: kubeconfig,
		args: []string{"--web.auth=kubernetes", "--cgroup-root=" + tree.CgroupRoot}})
	srv.waitReady(t, "/readyz", nil)
	status := func(path, token string) int {
		req, _ := http.NewRequest(http.MethodGet, srv.URL(path), nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		path, token string
		want        int
	}{
		{"/healthz", "", 200},
		{"/metrics", "", 401},
		{"/metrics", "garbage", 401},
		{"/metrics", "scraper-token", 200},
		{"/metrics", "scraper-token", 200},
	} {
		if got := status(c.path, c.token); got != c.want {
			t.Errorf("GET %s token %q: %d, want %d", c.path, c.token, got, c.want)
		}
	}
	if n := reviews.Load(); n != 2 {
		t.Errorf("token reviews = %d, want 2 (garbage once, scraper once then cached)", n)
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://" + srv.Addr + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP /metrics answered 200; want TLS only")
		}
	}
}

// TestServeAuthKubernetesNeedsAPI: asking for RBAC without an API server is a
// start-up error, never an open /metrics.
func TestServeAuthKubernetesNeedsAPI(t *testing.T) {
	requireBinary(t)
	cmd := exec.Command(binPath, "serve", "--web.auth=kubernetes", "--kubeconfig=", "--web.listen-address=127.0.0.1:0", "--log-root="+t.TempDir())
	cmd.Env = append(os.Environ(), "KUBECONFIG=", "KUBERNETES_SERVICE_HOST=")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("serve --web.auth=kubernetes without an API server exited 0:\n%s", out)
	}
	if !strings.Contains(string(out), "needs an API server") {
		t.Errorf("error does not say why:\n%s", out)
	}
}

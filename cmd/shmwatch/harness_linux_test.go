package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/shmwatch/shmwatch/internal/realkernel"
)

// binPath is the shmwatch binary TestMain built for the process-level tests;
// "" when it could not be built (those tests then skip with buildErr).
var (
	binPath  string
	buildErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shmwatch-bin-")
	if err == nil {
		binPath = filepath.Join(dir, "shmwatch")
		goTool, lerr := exec.LookPath("go")
		if lerr != nil {
			goTool = "/usr/local/go/bin/go"
		}
		cmd := exec.Command(goTool, "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, berr := cmd.CombinedOutput(); berr != nil {
			buildErr = fmt.Errorf("go build: %v: %s", berr, out)
			binPath = ""
		}
	} else {
		buildErr = err
	}
	code := m.Run()
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
	os.Exit(code)
}

func requireBinary(t testing.TB) {
	t.Helper()
	if binPath == "" {
		realkernel.Skip(t, "shmwatch binary not built: %v", buildErr)
	}
}

// freePort returns a loopback port nothing listens on right now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lockedBuffer collects a child's stderr while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// server is a running `shmwatch serve` this test started.
type server struct {
	cmd    *exec.Cmd
	Addr   string // host:port
	Scheme string
	Stderr *lockedBuffer
	client *http.Client
	exited chan struct{}
}

// serveOpts configures startServe.
type serveOpts struct {
	args   []string // extra flags
	prefix []string // command in front of the binary (setpriv ...)
	tls    bool     // https with an unverified client (self-signed)
	// kubeconfig names an API server; "" runs without one.
	kubeconfig string
}

// startServe starts `shmwatch serve` on a free loopback port with the given
// tree, waits for /readyz (or /healthz over TLS with auth, via ready) and
// kills it by its pid at cleanup.
func startServe(t testing.TB, o serveOpts) *server {
	t.Helper()
	requireBinary(t)
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	emptyLogs := t.TempDir()
	args := append([]string{binPath, "serve", "--web.listen-address=" + addr,
		"--log-root=" + emptyLogs, "--kubeconfig=" + o.kubeconfig, "--node-name=podtree-node", "--log.format=json"}, o.args...)
	args = append(append([]string(nil), o.prefix...), args...)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=", "KUBERNETES_SERVICE_HOST=")
	s := &server{cmd: cmd, Addr: addr, Scheme: "http", Stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = s.Stderr
	s.client = &http.Client{Timeout: 30 * time.Second}
	if o.tls {
		s.Scheme = "https"
		s.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // self-signed test cert
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start shmwatch: %v", err)
	}
	go func() { _ = cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.exited
		if t.Failed() {
			t.Logf("shmwatch stderr:\n%s", tail(s.Stderr.String(), 4000))
		}
	})
	if !o.tls {
		s.waitReady(t, "/readyz", nil)
	}
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// Pid is the shmwatch process id.
func (s *server) Pid() int { return s.cmd.Process.Pid }

// Alive says whether the process is still running.
func (s *server) Alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

func (s *server) URL(path string) string { return s.Scheme + "://" + s.Addr + path }

// waitReady polls path until it answers 200.
func (s *server) waitReady(t testing.TB, path string, mod func(*http.Request)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if !s.Alive() {
			t.Fatalf("shmwatch exited: %s", s.Stderr.String())
		}
		req, _ := http.NewRequest(http.MethodGet, s.URL(path), nil)
		if mod != nil {
			mod(req)
		}
		resp, err := s.client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("shmwatch %s not ready after 20s; stderr:\n%s", path, tail(s.Stderr.String(), 4000))
}

// scrape is one GET /metrics: the raw body, the parsed families, the time it started and took.
type scrape struct {
	Body     []byte
	Families map[string]*dto.MetricFamily
	Start    time.Time
	Took     time.Duration
}

// Scrape fetches and parses /metrics; any non-200 or parse error fails.
func (s *server) Scrape(ctx context.Context) (*scrape, error) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL("/metrics"), nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("read /metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s: %s", resp.Status, body)
	}
	fams, err := parseExposition(body)
	if err != nil {
		return nil, err
	}
	return &scrape{Body: body, Families: fams, Start: start, Took: took}, nil
}

// parseExposition parses the text format strictly, as Prometheus would.
func parseExposition(body []byte) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parse exposition: %w", err)
	}
	return fams, nil
}

// value returns the value of the one series of family name whose labels
// include want, and whether exactly one such series exists.
func (sc *scrape) value(name string, want map[string]string) (float64, bool) {
	ms := sc.series(name, want)
	if len(ms) != 1 {
		return 0, false
	}
	return metricValue(ms[0]), true
}

// series lists the series of family name whose labels include want.
func (sc *scrape) series(name string, want map[string]string) []*dto.Metric {
	f := sc.Families[name]
	if f == nil {
		return nil
	}
	var out []*dto.Metric
	for _, m := range f.GetMetric() {
		if hasLabels(m, want) {
			out = append(out, m)
		}
	}
	return out
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	have := map[string]string{}
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// uids lists the uid label values present in any family of a scrape.
func (sc *scrape) uids() map[string]bool {
	out := map[string]bool{}
	for _, f := range sc.Families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "uid" && l.GetValue() != "" {
					out[l.GetValue()] = true
				}
			}
		}
	}
	return out
}

// fdCount counts the open file descriptors of pid.
func fdCount(pid int) (int, error) {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	return len(es), nil
}

func containsPanic(stderr string) bool {
	return strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") && strings.Contains(stderr, "[running]")
}

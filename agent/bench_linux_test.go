package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/shmwatch/shmwatch/agent/podmeta"
	"github.com/shmwatch/shmwatch/cgroupfs"
	"github.com/shmwatch/shmwatch/shmscan"
)

// The collection benchmarks run on a real cgroup tree. With
// SHMWATCH_BENCH_CGROUP_ROOT set (e.g. /benchroot after
// ../shared/bench/mkpods.sh 1000) they read that tree as serve would: its
// processes, mount namespaces and tmpfs shm, names from
// SHMWATCH_BENCH_LOG_ROOT (default /tmp/benchroot/log/pods). Without it they
// build 1000 empty pod cgroups (2 containers + a sandbox each) in this
// machine's memory hierarchy and measure the cgroup part only (no shm).
// They need root; see docs/performance.md for the numbers.

const agentBenchPods = 1000

// agentBench is where one benchmark run reads: the harness tree, or a tree
// it built (removed by the run's Cleanup).
type agentBench struct {
	cgroupRoot string
	withShm    bool
	logRoot    string
}

func setupAgentBench(b *testing.B) agentBench {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("needs root to read a real cgroup tree")
	}
	if r := os.Getenv("SHMWATCH_BENCH_CGROUP_ROOT"); r != "" {
		logRoot := os.Getenv("SHMWATCH_BENCH_LOG_ROOT")
		if logRoot == "" {
			logRoot = "/tmp/benchroot/log/pods"
		}
		return agentBench{cgroupRoot: r, withShm: true, logRoot: logRoot}
	}
	return agentBench{cgroupRoot: buildAgentBenchTree(b)}
}

func buildAgentBenchTree(b *testing.B) string {
	b.Helper()
	fs, err := cgroupfs.NewFS("/proc")
	if err != nil {
		b.Skip("no memory hierarchy: " + err.Error())
	}
	root := fmt.Sprintf("/shmwatch-agent-bench-%d", os.Getpid())
	mem := fs.Hierarchy.MemoryRoot
	var dirs []string
	b.Cleanup(func() {
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = syscall.Rmdir(dirs[i])
		}
	})
	mk := func(p string) {
		if err := os.Mkdir(mem+p, 0o755); err != nil {
			b.Skip("cannot build bench tree: " + err.Error())
		}
		dirs = append(dirs, mem+p)
		if fs.Hierarchy.Mode == cgroupfs.ModeV2 {
			_ = os.WriteFile(mem+p+"/cgroup.subtree_control", []byte("+memory"), 0)
		}
	}
	for _, p := range []string{root, root + "/kubepods", root + "/kubepods/burstable"} {
		mk(p)
	}
	for i := range agentBenchPods {
		pod := fmt.Sprintf("%s/kubepods/burstable/pod%08x-0000-4000-8000-%012x", root, i, i)
		mk(pod)
		for c := range 3 {
			mk(fmt.Sprintf("%s/%056x%08x", pod, i, c))
		}
	}
	return root
}

// benchCollector is a Collector as serve builds it (serve: skip peak and
// sandbox memory) or as scan does (everything).
func benchCollector(b *testing.B, serve bool) *Collector {
	b.Helper()
	at := setupAgentBench(b)
	fs, err := cgroupfs.NewFS("/proc")
	if err != nil {
		b.Fatal(err)
	}
	var scanner *shmscan.Scanner
	var meta podmeta.Provider
	if at.withShm {
		hostPID := 1
		if d, err := os.Open("/proc/1/root"); err != nil {
			hostPID = 2 // as cmd/shmwatch falls back when pid 1's root is out of reach
		} else {
			_ = d.Close()
		}
		scanner = shmscan.NewScanner(shmscan.Config{ProcRoot: "/proc", HostPID: hostPID, StatfsTimeout: 2 * time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		b.Cleanup(cancel)
		meta, err = podmeta.Start(ctx, podmeta.Config{LogRoot: at.logRoot})
		if err != nil {
			b.Fatal(err)
		}
	}
	// serve: as cmd/shmwatch serve configures it.
	return NewCollector(Config{CgroupRoot: at.cgroupRoot, SkipPeak: serve, SkipSandboxMemory: serve, SkipSlabinfo: serve}, fs, scanner, meta, nil)
}

func collectOnce(b *testing.B, c *Collector) *Snapshot {
	snap, err := c.Collect(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	if len(snap.Pods) == 0 {
		b.Fatalf("no pods under %s", c.cfg.CgroupRoot)
	}
	return snap
}

// BenchmarkCollect is one serve collection of the whole tree (warm mount
// cache, as every scrape after the first).
func BenchmarkCollect(b *testing.B) {
	c := benchCollector(b, true)
	snap := collectOnce(b, c)
	b.ReportAllocs()
	for b.Loop() {
		collectOnce(b, c)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/collect")
	b.ReportMetric(float64(len(snap.Pods)), "pods")
}

// BenchmarkCollectAll is one scan collection: every file the JSON reports.
func BenchmarkCollectAll(b *testing.B) {
	c := benchCollector(b, false)
	collectOnce(b, c)
	b.ReportAllocs()
	for b.Loop() {
		collectOnce(b, c)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/collect")
}

// BenchmarkScrape is a whole GET /metrics as serve answers Prometheus
// (text format, no compression), minus the network: collect, write the
// text, merge it with an empty base registry.
func BenchmarkScrape(b *testing.B) {
	c := benchCollector(b, true)
	collectOnce(b, c)
	h := NewExporter(c, 10*time.Second, false).Handler(prometheus.NewRegistry(), promhttp.HandlerOpts{})
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	w := &countingWriter{header: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		w.lines = 0
		h.ServeHTTP(w, req)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/scrape")
	b.ReportMetric(float64(w.lines), "lines")
}

// BenchmarkScrapeConstMetrics is the same scrape through the constant
// metrics, a registry and expfmt: the protobuf path, and what the text
// path replaced.
func BenchmarkScrapeConstMetrics(b *testing.B) {
	c := benchCollector(b, true)
	collectOnce(b, c)
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewExporter(c, 10*time.Second, false))
	series := 0
	b.ReportAllocs()
	for b.Loop() {
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		enc := expfmt.NewEncoder(io.Discard, expfmt.NewFormat(expfmt.TypeTextPlain))
		series = 0
		for _, mf := range mfs {
			series += len(mf.GetMetric())
			if err := enc.Encode(mf); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/scrape")
	b.ReportMetric(float64(series), "series")
}

// countingWriter is an http.ResponseWriter that keeps only a line count.
type countingWriter struct {
	header http.Header
	lines  int
}

func (w *countingWriter) Header() http.Header { return w.header }
func (w *countingWriter) WriteHeader(int)     {}
func (w *countingWriter) Write(p []byte) (int, error) {
	w.lines += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}

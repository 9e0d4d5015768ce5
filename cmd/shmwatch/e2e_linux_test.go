package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/shmwatch/shmwatch/internal/podtree"
	"github.com/shmwatch/shmwatch/internal/realkernel"
)

const mib = 1 << 20

// e2ePods is the tree of the end-to-end tests: a Burstable pod whose one
// container writes 16 MiB into a 64 MiB runtime (containerd sandbox) shm under
// a 48 MiB pod limit, so the memcg binds first; and a Guaranteed pod with a
// 256 MiB limit whose container writes 8 MiB into a 32 MiB emptyDir "dshm"
// mounted at its /dev/shm, so the tmpfs binds first.
type e2ePods struct {
	tree                 *podtree.Tree
	burst, guar          *podtree.Pod
	burstCtr, guarCtr    *podtree.Container
	runtimeShm, emptyDir string
}

func buildE2EPods(t *testing.T) *e2ePods {
	t.Helper()
	e := &e2ePods{tree: podtree.New(t)}
	var err error
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	e.burst = e.tree.MustAddPod(podtree.Burstable)
	must(e.burst.SetLimit(48 * mib))
	e.runtimeShm, err = e.burst.RuntimeShm(podtree.RandomHex(32), 64*mib)
	must(err)
	e.burstCtr, err = e.burst.Start(e.runtimeShm, 16*mib)
	must(err)

	e.guar = e.tree.MustAddPod(podtree.Guaranteed)
	must(e.guar.SetLimit(256 * mib))
	e.emptyDir, err = e.guar.EmptyDir("dshm", 32*mib)
	must(err)
	e.guarCtr, err = e.guar.Start(e.emptyDir, 8*mib)
	must(err)
	return e
}

// promServer is a real Prometheus server this test started.
type promServer struct {
	addr string
}

// startPrometheus runs Debian's prometheus on loopback scraping target every
// second, with its storage in a temp dir; killed by pid at cleanup.
func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		realkernel.Skip(t, "end-to-end test: needs prometheus (Debian package prometheus)")
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: shmwatch
    static_configs:
      - targets: [%q]
`, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("prometheus log:\n%s", tail(logs.String(), 3000))
		}
	})
	return &promServer{addr: addr}
}

// query runs an instant PromQL query and returns the one sample's value;
// ok is false while Prometheus has no (or several) samples.
func (p *promServer) query(q string) (float64, bool, error) {
	resp, err := http.Get("http://" + p.addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, false, nil // not up yet
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, false, fmt.Errorf("query %s: %v: %s", q, err, body)
	}
	if r.Status != "success" {
		return 0, false, fmt.Errorf("query %s: %s", q, r.Error)
	}
	if len(r.Data.Result) != 1 {
		return 0, false, nil
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil, err
}

// await polls q until Prometheus has exactly one sample for it.
func (p *promServer) await(t *testing.T, q string) float64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		v, ok, err := p.query(q)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return v
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("prometheus has no single sample for %s after 30s", q)
	return 0
}

// The agent end to end: real pod cgroups, processes and tmpfs; shmwatch serve
// as a process; a real Prometheus scraping it; the values queried back from
// Prometheus equal the kernel's own files.
func TestE2EPrometheusMatchesKernel(t *testing.T) {
	requireBinary(t)
	e := buildE2EPods(t)
	srv := startServe(t, serveOpts{args: []string{"--cgroup-root=" + e.tree.CgroupRoot}})
	prom := startPrometheus(t, srv.Addr)

	// Wait until Prometheus has scraped both pods' shm.
	bsel := fmt.Sprintf(`uid=%q`, e.burst.UID)
	gsel := fmt.Sprintf(`uid=%q`, e.guar.UID)
	prom.await(t, `shmwatch_shm_used_bytes{`+bsel+`,source="runtime"}`)
	prom.await(t, `shmwatch_shm_used_bytes{`+gsel+`,source="emptydir",volume="dshm"}`)

	kernel := func(v uint64, err error) float64 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return float64(v)
	}
	type check struct {
		query string
		want  float64
	}
	bSize, bUsed, bAvail, err := podtree.Statfs(e.runtimeShm)
	if err != nil {
		t.Fatal(err)
	}
	gSize, gUsed, gAvail, err := podtree.Statfs(e.emptyDir)
	if err != nil {
		t.Fatal(err)
	}
	checks := []check{
		{`shmwatch_pod_info{` + bsel + `,qos="burstable"}`, 1},
		{`shmwatch_pod_info{` + gsel + `,qos="guaranteed"}`, 1},
		{`shmwatch_pod_memory_limit_bytes{` + bsel + `}`, kernel(podtree.ReadUint(e.burst.Dir, "memory.limit_in_bytes"))},
		{`shmwatch_pod_memory_limit_bytes{` + gsel + `}`, kernel(podtree.ReadUint(e.guar.Dir, "memory.limit_in_bytes"))},
		{`shmwatch_pod_memory_shmem_bytes{` + bsel + `}`, kernel(podtree.Stat(e.burst.Dir, "total_shmem"))},
		{`shmwatch_pod_memory_shmem_bytes{` + gsel + `}`, kernel(podtree.Stat(e.guar.Dir, "total_shmem"))},
		{`shmwatch_container_memory_shmem_bytes{` + bsel + `,container="` + e.burstCtr.ID[:12] + `"}`, kernel(podtree.Stat(e.burstCtr.Dir, "total_shmem"))},
		{`shmwatch_shm_size_bytes{` + bsel + `,source="runtime",volume=""}`, float64(bSize)},
		{`shmwatch_shm_used_bytes{` + bsel + `,source="runtime",volume=""}`, float64(bUsed)},
		{`shmwatch_shm_available_bytes{` + bsel + `,source="runtime",volume=""}`, float64(bAvail)},
		{`shmwatch_shm_size_bytes{` + gsel + `,source="emptydir",volume="dshm"}`, float64(gSize)},
		{`shmwatch_shm_used_bytes{` + gsel + `,source="emptydir",volume="dshm"}`, float64(gUsed)},
		{`shmwatch_shm_available_bytes{` + gsel + `,source="emptydir",volume="dshm"}`, float64(gAvail)},
		{`shmwatch_shm_headroom_bytes{` + gsel + `,limit="tmpfs"}`, float64(gAvail)},
		{`shmwatch_shm_binding_limit{` + bsel + `,limit="memcg"}`, 1},
		{`shmwatch_shm_binding_limit{` + bsel + `,limit="tmpfs"}`, 0},
		{`shmwatch_shm_binding_limit{` + gsel + `,limit="tmpfs"}`, 1},
		{`shmwatch_shm_binding_limit{` + gsel + `,limit="memcg"}`, 0},
		{`count(shmwatch_shm_size_bytes{` + bsel + `})`, 1},
		{`count(shmwatch_shm_size_bytes{` + gsel + `})`, 1},
		{`shmwatch_shm_stuck_mounts`, 0},
		{`up{job="shmwatch"}`, 1},
	}
	for _, c := range checks {
		got := prom.await(t, c.query)
		t.Logf("%-95s prometheus=%.0f kernel=%.0f", c.query, got, c.want)
		if got != c.want {
			t.Errorf("%s = %v in Prometheus, kernel says %v", c.query, got, c.want)
		}
	}
	// The numbers are the written bytes, not just self-consistent.
	if bUsed != 16*mib || gUsed != 8*mib {
		t.Errorf("statfs used: runtime %d (want 16 MiB), emptyDir %d (want 8 MiB)", bUsed, gUsed)
	}
	// memcg headroom is limit minus working set; the working set moves by a
	// few pages between the scrape and this read, so compare within 1 MiB.
	usage := kernel(podtree.ReadUint(e.burst.Dir, "memory.usage_in_bytes"))
	inactive := kernel(podtree.Stat(e.burst.Dir, "total_inactive_file"))
	wantHeadroom := 48*mib - (usage - inactive)
	got := prom.await(t, `shmwatch_shm_headroom_bytes{`+bsel+`,limit="memcg"}`)
	t.Logf("memcg headroom of the burstable pod: prometheus=%.0f kernel=%.0f", got, wantHeadroom)
	if d := got - wantHeadroom; d > mib || d < -mib {
		t.Errorf("memcg headroom %v, kernel limit-working set %v", got, wantHeadroom)
	}
}

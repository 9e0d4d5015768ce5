package agent

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

var update = flag.Bool("update", false, "rewrite agent/testdata/*.golden* from the current output")

// renderMetrics is the text exposition of one Exporter scrape, families in
// name order (as promhttp serves them).
func renderMetrics(t *testing.T, e *Exporter) []byte {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var buf bytes.Buffer
	for _, f := range fams {
		if _, err := expfmt.MetricFamilyToText(&buf, f); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

var (
	durationLine = regexp.MustCompile(`(?m)^(shmwatch_scrape_collector_duration_seconds\{[^}]*\}) \S+$`)
	jsonTime     = regexp.MustCompile(`(?m)^  "time": "[^"]*",$`)
)

// normalizeMetrics replaces what differs between runs and machines: phase
// durations and the Go version of build_info.
func normalizeMetrics(b []byte) []byte {
	b = durationLine.ReplaceAll(b, []byte("$1 0"))
	return bytes.ReplaceAll(b, []byte(`goversion="`+runtime.Version()+`"`), []byte(`goversion="GOVERSION"`))
}

// normalizeJSON replaces the collection time and the temp dir the fixture
// was built in.
func normalizeJSON(b []byte, fixtureRoot string) []byte {
	b = bytes.ReplaceAll(b, []byte(fixtureRoot), []byte("/FIXTURE"))
	return jsonTime.ReplaceAll(b, []byte(`  "time": "TIME",`))
}

// compareGolden compares got with testdata/name, or rewrites it with -update.
func compareGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./agent -run TestGolden -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-golden +got); if the change is intended, rerun with -update:\n%s", path, diff)
	}
}

// promtoolCheck lints an exposition with promtool check metrics when
// promtool is installed.
func promtoolCheck(t *testing.T, metrics []byte) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed: lint skipped (Debian package prometheus)")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(metrics)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// Golden files of /metrics and scan -o json (node_exporter style) over
// fixture trees copied from captured kernel files, with static pod metadata
// and no shm scanner. Regenerate with: go test ./agent -run TestGolden -update
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name    string
		build   func(*testing.T) fixtureTree
		metrics string
		json    string
	}{
		{"v1", buildV1Fixture, "metrics.golden", "scan.golden.json"},
		{"v2", buildV2Fixture, "metrics-v2.golden", "scan-v2.golden.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ft := tc.build(t)
			col := fixtureCollector(ft, fixtureMeta())
			raw := renderMetrics(t, NewExporter(col, 10*time.Second, false))
			promtoolCheck(t, raw)
			compareGolden(t, tc.metrics, normalizeMetrics(raw))

			snap, err := col.Collect(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var js bytes.Buffer
			if err := WriteJSON(&js, snap); err != nil {
				t.Fatal(err)
			}
			compareGolden(t, tc.json, normalizeJSON(js.Bytes(), filepath.Dir(ft.ProcRoot)))
		})
	}
}

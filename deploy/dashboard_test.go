package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// contractMetrics are the shmwatch_* metric names of the output contract;
// rules, dashboard and docs may use no others, and docs/metrics.md must
// describe every one. They are the families of the agent's golden scrapes
// (agent/testdata, rendered from captured kernel files) plus the ones their
// fixtures cannot show.
var contractMetrics = goldenMetrics()

// notInGolden are families the golden fixtures have no series for: they
// hold no shm mount, no orphaned pod cgroup, no read error of that kind,
// and no kernel older than 4.7.
var notInGolden = []string{
	"shmwatch_shm_size_bytes", "shmwatch_shm_used_bytes", "shmwatch_shm_available_bytes",
	"shmwatch_shm_size_limit_bytes", "shmwatch_shm_headroom_bytes", "shmwatch_shm_binding_limit",
	"shmwatch_node_memcg_id_headroom", "shmwatch_orphaned_pod_cgroups", "shmwatch_read_errors_total",
	// the base registry's families: events (serve --events) and the /metrics guard (--web.auth)
	"shmwatch_events_sent_total", "shmwatch_events_dropped_total", "shmwatch_events_failed_total",
	"shmwatch_metrics_auth_failures_total",
	// the kernel OOM watch (no fixture runs one)
	"shmwatch_oom_watches", "shmwatch_oom_watch_fds", "shmwatch_oom_watch_failures_total",
}

func goldenMetrics() []string {
	names := slices.Clone(notInGolden)
	for _, f := range []string{"metrics.golden", "metrics-v2.golden"} {
		data, err := os.ReadFile(filepath.Join("..", "agent", "testdata", f))
		if err != nil {
			panic(err) // tracked files: a missing one is a broken checkout
		}
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" && strings.HasPrefix(f[2], "shmwatch_") && !slices.Contains(names, f[2]) {
				names = append(names, f[2])
			}
		}
	}
	slices.Sort(names)
	return names
}

// The golden scrapes hold at least the families every node reports, so a
// golden that lost them (or moved) cannot shrink the contract unnoticed.
func TestContractFromGolden(t *testing.T) {
	for _, m := range []string{"shmwatch_pod_info", "shmwatch_container_memory_usage_bytes", "shmwatch_node_memcg_cgroups", "shmwatch_build_info"} {
		if !slices.Contains(contractMetrics, m) {
			t.Errorf("contract has no %s: agent/testdata goldens changed?", m)
		}
	}
	if len(contractMetrics) < 25 {
		t.Errorf("contract of %d metrics: %v", len(contractMetrics), contractMetrics)
	}
}

var metricName = regexp.MustCompile(`\bshmwatch_[a-z_]+[a-z]\b`)

func checkNamesKnown(t *testing.T, where, text string) {
	t.Helper()
	for _, m := range metricName.FindAllString(text, -1) {
		if !slices.Contains(contractMetrics, m) {
			t.Errorf("%s uses %s, which is not in the metrics contract", where, m)
		}
	}
}

type dashboard struct {
	UID        string
	Templating struct {
		List []struct {
			Name  string
			Type  string
			Query any
		}
	}
	Panels []dashPanel
}

type dashPanel struct {
	ID         int
	Type       string
	Title      string
	Datasource struct{ UID string }
	Targets    []struct {
		Expr  string
		RefID string `json:"refId"`
	}
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("grafana", "shmwatch.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("grafana/shmwatch.json: %v", err)
	}
	return d
}

// TestDashboardShape checks what Grafana needs and what the views promise;
// test/promtool.sh parses every expression with promtool.
func TestDashboardShape(t *testing.T) {
	d := loadDashboard(t)
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if q, _ := json.Marshal(v.Query); v.Type == "query" {
			checkNamesKnown(t, "variable "+v.Name, string(q))
		}
	}
	for _, v := range []string{"datasource", "node", "namespace", "pod"} {
		if !vars[v] {
			t.Errorf("template variable $%s missing", v)
		}
	}
	ids := map[int]bool{}
	var podPanels int
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource uid %q, want ${datasource}", p.Title, p.Datasource.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" || refs[tg.RefID] {
				t.Errorf("panel %q: empty expr or duplicate refId %q", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			checkNamesKnown(t, "panel "+p.Title, tg.Expr)
			if strings.Contains(tg.Expr, `pod="$pod"`) {
				podPanels++
			}
		}
	}
	if podPanels == 0 {
		t.Error("no pod-view query filters on $pod")
	}
	for _, want := range []string{"shmwatch_node_memcg_cgroups", "shmwatch_node_kmem_limited_cgroups",
		"shmwatch_node_memcg_id_headroom", "shmwatch_shm_headroom_bytes", "shmwatch_shm_used_bytes",
		"shmwatch_shm_size_bytes", "shmwatch_pod_memory_working_set_bytes", "shmwatch_pod_memory_limit_bytes",
		"shmwatch_container_oom_kills_total"} {
		found := false
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				found = found || strings.Contains(tg.Expr, want)
			}
		}
		if !found {
			t.Errorf("dashboard shows no %s", want)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string
		Rules []struct {
			Alert       string
			Expr        string
			For         string
			Labels      map[string]string
			Annotations map[string]string
		}
	}
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	var rf ruleFile
	readYAML(t, filepath.Join("prometheus", "rules.yaml"), &rf)
	return rf
}

// TestAlertsAreDocumentedAndTested checks each alert's labels, annotations,
// runbook page and that rules_test.yaml has a firing and a quiet case for it
// (promtool test rules, run by test/promtool.sh, checks that they pass).
func TestAlertsAreDocumentedAndTested(t *testing.T) {
	rf := loadRules(t)
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string
				ExpAlerts []any `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		}
	}
	readYAML(t, filepath.Join("prometheus", "rules_test.yaml"), &tests)
	firing, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				firing[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	var n int
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			n++
			checkNamesKnown(t, "alert "+r.Alert, r.Expr)
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: annotation %s missing", r.Alert, a)
				}
			}
			if want := "https://github.com/shmwatch/shmwatch/blob/main/docs/runbooks/" + r.Alert + ".md"; r.Annotations["runbook_url"] != want {
				t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
			}
			if _, err := os.Stat(filepath.Join("..", "docs", "runbooks", r.Alert+".md")); err != nil {
				t.Errorf("%s: runbook page: %v", r.Alert, err)
			}
			podAlert := strings.Contains(r.Expr, "shmwatch_pod_") || strings.Contains(r.Expr, "shmwatch_shm_used") ||
				strings.Contains(r.Expr, "shmwatch_container_")
			if podAlert && !strings.Contains(r.Annotations["summary"], "{{ $labels.namespace }}/{{ $labels.pod }}") {
				t.Errorf("%s: summary does not name {{ $labels.namespace }}/{{ $labels.pod }}", r.Alert)
			}
			if !firing[r.Alert] || !quiet[r.Alert] {
				t.Errorf("%s: rules_test.yaml needs a firing case (%v) and a quiet case (%v)", r.Alert, firing[r.Alert], quiet[r.Alert])
			}
		}
	}
	if n < 13 {
		t.Errorf("%d alerts, want at least 13", n)
	}
}

// TestPrometheusRuleMatchesRules: the PrometheusRule's spec is rules.yaml.
func TestPrometheusRuleMatchesRules(t *testing.T) {
	var pr struct {
		Kind string
		Spec ruleFile
	}
	readYAML(t, filepath.Join("prometheus", "prometheusrule.yaml"), &pr)
	if pr.Kind != "PrometheusRule" {
		t.Errorf("kind %q", pr.Kind)
	}
	if diff := cmp.Diff(loadRules(t), pr.Spec); diff != "" {
		t.Errorf("prometheusrule.yaml differs from rules.yaml (run bash test/promtool.sh --write):\n%s", diff)
	}
}

// TestMetricsDocCoversContract: docs/metrics.md describes every metric of
// the contract and names no other.
func TestMetricsDocCoversContract(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range contractMetrics {
		if !strings.Contains(string(doc), "`"+m+"`") && !strings.Contains(string(doc), "`"+m+"{") {
			t.Errorf("docs/metrics.md does not describe `%s`", m)
		}
	}
	checkNamesKnown(t, "docs/metrics.md", string(doc))
}

//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
)

// metrics is one parsed /metrics page of the agent.
type metrics map[string]*dto.MetricFamily

// sample is one series: its labels and value.
type sample struct {
	labels map[string]string
	value  float64
}

// scrapeViaAPI reads the agent's /metrics through the API server's pod proxy
// (/api/v1/namespaces/shmwatch/pods/<pod>:9850/proxy/metrics).
func scrapeViaAPI(ctx context.Context) (metrics, error) {
	pod, err := agentPod(ctx)
	if err != nil {
		return nil, err
	}
	raw, err := suite.kube.CoreV1().RESTClient().Get().
		Namespace(agentNamespace).Resource("pods").Name(fmt.Sprintf("%s:%d", pod.Name, agentPort)).
		SubResource("proxy").Suffix("metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("proxy scrape of %s: %w", pod.Name, err)
	}
	return parseMetrics(raw)
}

// scrapeDirect reads /metrics without the API server: the host port when the agent runs
// with hostNetwork, else from inside the agent's network namespace (nsenter + curl).
func scrapeDirect(ctx context.Context, agent *corev1.Pod, agentPID int) (metrics, error) {
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", agentPort)
	if agent.Spec.HostNetwork {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", url, err)
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err != nil || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: status %d, %v", url, resp.StatusCode, err)
		}
		return parseMetrics(raw)
	}
	out, err := exec.CommandContext(ctx, "nsenter", "--net=/proc/"+strconv.Itoa(agentPID)+"/ns/net", "--", "curl", "-fsS", url).Output()
	if err != nil {
		return nil, fmt.Errorf("nsenter curl %s in pid %d's netns: %w", url, agentPID, err)
	}
	return parseMetrics(out)
}

func parseMetrics(raw []byte) (metrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	return fams, nil
}

// find returns the series of a metric whose labels include all of match.
func (m metrics) find(name string, match map[string]string) []sample {
	fam, ok := m[name]
	if !ok {
		return nil
	}
	var out []sample
	for _, mt := range fam.GetMetric() {
		ls := map[string]string{}
		for _, lp := range mt.GetLabel() {
			ls[lp.GetName()] = lp.GetValue()
		}
		if !matches(ls, match) {
			continue
		}
		var v float64
		switch {
		case mt.Gauge != nil:
			v = mt.Gauge.GetValue()
		case mt.Counter != nil:
			v = mt.Counter.GetValue()
		case mt.Untyped != nil:
			v = mt.Untyped.GetValue()
		default:
			continue
		}
		out = append(out, sample{labels: ls, value: v})
	}
	return out
}

// one returns the value of the single series matching, or an error naming what was there.
func (m metrics) one(name string, match map[string]string) (float64, error) {
	s := m.find(name, match)
	if len(s) != 1 {
		return 0, fmt.Errorf("%s%v: want 1 series, found %d: %v", name, match, len(s), s)
	}
	return s[0].value, nil
}

// seriesWith counts series of all shmwatch_* metrics carrying label=value.
func (m metrics) seriesWith(label, value string) []string {
	var names []string
	for name, fam := range m {
		if !strings.HasPrefix(name, "shmwatch_") {
			continue
		}
		for _, mt := range fam.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					names = append(names, name)
				}
			}
		}
	}
	sort.Strings(names)
	return names
}

func matches(ls, match map[string]string) bool {
	for k, v := range match {
		if ls[k] != v {
			return false
		}
	}
	return true
}

// scanReport is `shmwatch scan -o json` as the contract defines it. Pointers: a field the
// kernel does not give is null/absent, never 0.
type scanReport struct {
	Time string `json:"time"`
	Node struct {
		Name           string `json:"name"`
		CgroupMode     string `json:"cgroup_mode"`
		Kernel         string `json:"kernel"`
		KmemAccounting string `json:"kmem_accounting"`
		Memcg          struct {
			Live  *uint64 `json:"live"`
			Dying *uint64 `json:"dying"`
		} `json:"memcg"`
		MetadataSource string `json:"metadata_source"`
	} `json:"node"`
	Pods    []scanPod `json:"pods"`
	Orphans []struct {
		UID    string  `json:"uid"`
		Cgroup string  `json:"cgroup"`
		Age    float64 `json:"age_seconds"`
	} `json:"orphans"`
}

type scanPod struct {
	UID        string          `json:"uid"`
	Namespace  string          `json:"namespace"`
	Name       string          `json:"name"`
	QOS        string          `json:"qos"`
	Cgroup     string          `json:"cgroup"`
	Memory     scanMemory      `json:"memory"`
	Shm        []scanShm       `json:"shm"`
	Binding    string          `json:"binding_limit"`
	Headroom   *int64          `json:"headroom_bytes"`
	Containers []scanContainer `json:"containers"`
	Errors     []string        `json:"errors"`
}

type scanMemory struct {
	Limit      *uint64 `json:"limit_bytes"`
	Usage      *uint64 `json:"usage_bytes"`
	WorkingSet *uint64 `json:"working_set_bytes"`
	Shmem      *uint64 `json:"shmem_bytes"`
	Kernel     *uint64 `json:"kernel_bytes"`
}

type scanShm struct {
	Source     string           `json:"source"`
	Volume     string           `json:"volume"`
	HostPath   string           `json:"host_path"`
	Size       *uint64          `json:"size_bytes"`
	Used       *uint64          `json:"used_bytes"`
	Available  *uint64          `json:"available_bytes"`
	SizeLimit  *uint64          `json:"size_limit_bytes"`
	Headroom   map[string]int64 `json:"headroom"`
	Binding    string           `json:"binding_limit"`
	Containers []string         `json:"containers"`
	Error      string           `json:"error"`
}

type scanContainer struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Sandbox   bool       `json:"sandbox"`
	Memory    scanMemory `json:"memory"`
	OOMKills  *uint64    `json:"oom_kills"`
	LimitHits *uint64    `json:"limit_hits"`
}

// sharedFlags are the DaemonSet container's flags that say where the host is (--host-root
// and the like); `scan` and `audit` exec'd in the pod need the same ones as `serve`.
func sharedFlags(agent *corev1.Pod) []string {
	prefixes := []string{"--host-root", "--procfs", "--log-root",
		"--cgroup-root", "--kubeconfig", "--all-cgroups", "--statfs-timeout", "--node-name", "--host-pid",
		"--orphan-grace", "--metadata-wait"}
	var out []string
	for _, c := range agent.Spec.Containers {
		for _, a := range append(append([]string{}, c.Command...), c.Args...) {
			for _, p := range prefixes {
				if a == p || strings.HasPrefix(a, p+"=") {
					out = append(out, a)
				}
			}
		}
	}
	return out
}

// agentExec runs /shmwatch <args> <shared flags> in the agent container; stdout and stderr apart.
func agentExec(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	agent, err := agentPod(context.Background())
	if err != nil {
		t.Fatalf("agent pod: %v", err)
	}
	cmd := append([]string{"/shmwatch"}, args...)
	cmd = append(cmd, sharedFlags(agent)...)
	return execSplit(t, agentNamespace, agent.Name, agent.Spec.Containers[0].Name, cmd...)
}

// scan runs `shmwatch scan -o json` in the agent pod and decodes it.
func scan(t *testing.T) *scanReport {
	t.Helper()
	out, stderr, code := agentExec(t, "scan", "-o", "json")
	if code != 0 {
		t.Fatalf("shmwatch scan -o json exited %d: %s%s", code, out, stderr)
	}
	var r scanReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("decode scan JSON: %v\n%s", err, out)
	}
	return &r
}

func (r *scanReport) pod(uid string) *scanPod {
	for i := range r.Pods {
		if r.Pods[i].UID == uid {
			return &r.Pods[i]
		}
	}
	return nil
}

func (p *scanPod) container(name string) *scanContainer {
	for i := range p.Containers {
		if p.Containers[i].Name == name {
			return &p.Containers[i]
		}
	}
	return nil
}

// eventually retries check every 2 s until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
		}
		time.Sleep(2 * time.Second)
	}
}

// podLabels are the pod labels of every pod-level series.
func podLabels(p *corev1.Pod) map[string]string {
	return map[string]string{"namespace": p.Namespace, "pod": p.Name, "uid": string(p.UID)}
}

func with(m map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(m)+len(kv)/2)
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/shmwatch/shmwatch/internal/realkernel"
)

// helmEnv names the helm binary; test/manifests.sh sets it (and fails
// without helm). Plain `go test ./deploy` falls back to helm on PATH.
const helmEnv = "SHMWATCH_HELM"

const chartDir = "helm/shmwatch"

// releaseNS is the namespace the chart is rendered into.
const releaseNS = "monitoring"

func helmBin(t *testing.T) string {
	t.Helper()
	if h := os.Getenv(helmEnv); h != "" {
		return h
	}
	h, err := exec.LookPath("helm")
	if err != nil {
		// Where the suite must run whole (CI), a missing helm fails these.
		realkernel.Skip(t, "no helm (set %s; test/manifests.sh builds it and always runs these)", helmEnv)
	}
	return h
}

// helmTemplate renders the chart as release "shmwatch" with extra helm args.
func helmTemplate(t *testing.T, args ...string) objects {
	t.Helper()
	cmd := exec.Command(helmBin(t), append([]string{"template", "shmwatch", chartDir, "--namespace", releaseNS}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr.String())
	}
	return decodeAll(t, fmt.Sprintf("helm template %v", args), out)
}

// chartRenderings are the default values and each ci/*-values.yaml.
func chartRenderings(t *testing.T) map[string][]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no ci values files under %s/ci: %v", chartDir, err)
	}
	r := map[string][]string{"default": nil}
	for _, f := range files {
		r[filepath.Base(f)] = []string{"--values", f}
	}
	return r
}

// TestHelmRenderingsLeastPrivilege puts every rendering through the
// kustomize base's checks: strict decode, least privilege, RBAC, service.
func TestHelmRenderingsLeastPrivilege(t *testing.T) {
	for name, args := range chartRenderings(t) {
		t.Run(name, func(t *testing.T) {
			objs := helmTemplate(t, args...)
			ds := only[*appsv1.DaemonSet](t, objs)
			if p := checkDaemonSet(ds); len(p) > 0 {
				t.Errorf("DaemonSet:\n%s", strings.Join(p, "\n"))
			}
			crb := only[*rbacv1.ClusterRoleBinding](t, objs)
			role := clusterRole(t, objs, crb.RoleRef.Name)
			if p := checkRules(role.Rules); len(p) > 0 {
				t.Errorf("ClusterRole %s:\n%s", role.Name, strings.Join(p, "\n"))
			}
			if p := checkReaderRules(clusterRole(t, objs, role.Name+"-metrics-reader").Rules); len(p) > 0 {
				t.Errorf("reader ClusterRole: %v", p)
			}
			sa := only[*corev1.ServiceAccount](t, objs)
			want := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: releaseNS}}
			if !slices.Equal(crb.Subjects, want) || ds.Spec.Template.Spec.ServiceAccountName != sa.Name {
				t.Errorf("binding subjects %+v / pod service account %q, want %+v", crb.Subjects, ds.Spec.Template.Spec.ServiceAccountName, want)
			}
			if svc := only[*corev1.Service](t, objs); svc.Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("service clusterIP %q, want None (headless)", svc.Spec.ClusterIP)
			}
			for _, o := range objs.typed {
				if m, ok := o.(interface{ GetNamespace() string }); ok {
					if ns := m.GetNamespace(); ns != "" && ns != releaseNS {
						t.Errorf("%T in namespace %q, want %s", o, ns, releaseNS)
					}
				}
			}
		})
	}
}

func container(t *testing.T, objs objects) corev1.Container {
	t.Helper()
	return only[*appsv1.DaemonSet](t, objs).Spec.Template.Spec.Containers[0]
}

// TestHelmValueSwitches checks what each value turns on and off.
func TestHelmValueSwitches(t *testing.T) {
	def := helmTemplate(t)
	c := container(t, def)
	if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--events") || strings.HasPrefix(a, "--web.auth") }) {
		t.Errorf("default args %v: want neither --events nor --web.auth (agent defaults)", c.Args)
	}
	if c.Image != "ghcr.io/shmwatch/shmwatch:latest" || c.LivenessProbe.HTTPGet.Scheme != corev1.URISchemeHTTP {
		t.Errorf("default image %q, probe scheme %q", c.Image, c.LivenessProbe.HTTPGet.Scheme)
	}
	if _, ok := grants(clusterRole(t, def, "shmwatch").Rules)["events.k8s.io/events"]; !ok {
		t.Errorf("events.enabled=true: no events rule")
	}
	if len(def.custom) != 0 {
		t.Errorf("default rendering has %d Operator objects, want none", len(def.custom))
	}

	host := helmTemplate(t, "--set", "hostNetwork=true")
	hs := only[*appsv1.DaemonSet](t, host).Spec.Template
	hc := hs.Spec.Containers[0]
	if !hs.Spec.HostNetwork || hc.ReadinessProbe.HTTPGet.Scheme != corev1.URISchemeHTTPS || hs.Annotations["prometheus.io/scheme"] != "https" {
		t.Errorf("hostNetwork=true: hostNetwork %v, probe %q, scheme annotation %q; want true, HTTPS, https",
			hs.Spec.HostNetwork, hc.ReadinessProbe.HTTPGet.Scheme, hs.Annotations["prometheus.io/scheme"])
	}

	off := container(t, helmTemplate(t, "--set", "hostNetwork=true", "--set", "auth.mode=none"))
	if !slices.Contains(off.Args, "--web.auth=none") || off.LivenessProbe.HTTPGet.Scheme != corev1.URISchemeHTTP {
		t.Errorf("auth.mode=none: args %v, probe %q", off.Args, off.LivenessProbe.HTTPGet.Scheme)
	}
	on := container(t, helmTemplate(t, "--set", "auth.mode=kubernetes"))
	if !slices.Contains(on.Args, "--web.auth=kubernetes") || on.LivenessProbe.HTTPGet.Scheme != corev1.URISchemeHTTPS {
		t.Errorf("auth.mode=kubernetes: args %v, probe %q", on.Args, on.LivenessProbe.HTTPGet.Scheme)
	}

	ev := helmTemplate(t, "--set", "events.enabled=false")
	if !slices.Contains(container(t, ev).Args, "--events=false") {
		t.Errorf("events.enabled=false: args %v lack --events=false", container(t, ev).Args)
	}
	for res := range grants(clusterRole(t, ev, "shmwatch").Rules) {
		if strings.HasSuffix(res, "/events") {
			t.Errorf("events.enabled=false still grants %s", res)
		}
	}

	img := container(t, helmTemplate(t, "--set", "image.tag=v1", "--set", "image.digest=sha256:abc"))
	if img.Image != "ghcr.io/shmwatch/shmwatch@sha256:abc" {
		t.Errorf("digest: image %q, want the digest to win over the tag", img.Image)
	}
	extra := container(t, helmTemplate(t, "--set", "extraArgs={--collector.sandbox}"))
	if !slices.Contains(extra.Args, "--collector.sandbox") {
		t.Errorf("extraArgs not passed: %v", extra.Args)
	}

	norbac := helmTemplate(t, "--set", "rbac.create=false", "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=existing")
	for _, o := range norbac.typed {
		switch o.(type) {
		case *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding, *corev1.ServiceAccount:
			t.Errorf("rbac.create=false, serviceAccount.create=false still render a %T", o)
		}
	}
	if sa := only[*appsv1.DaemonSet](t, norbac).Spec.Template.Spec.ServiceAccountName; sa != "existing" {
		t.Errorf("serviceAccount.name=existing: pod uses %q", sa)
	}
	if _, err := exec.Command(helmBin(t), "template", "x", chartDir, "--set", "auth.mode=open").CombinedOutput(); err == nil {
		t.Errorf("auth.mode=open rendered; want a failure")
	}
}

func serviceMonitorEndpoint(t *testing.T, objs objects) map[string]any {
	t.Helper()
	for _, m := range objs.custom {
		if m["kind"] == "ServiceMonitor" {
			eps := m["spec"].(map[string]any)["endpoints"].([]any)
			return eps[0].(map[string]any)
		}
	}
	t.Fatalf("no ServiceMonitor rendered")
	return nil
}

func TestHelmServiceMonitorFollowsAuth(t *testing.T) {
	plain := serviceMonitorEndpoint(t, helmTemplate(t, "--set", "prometheus.monitor.enabled=true"))
	if plain["scheme"] != "http" || plain["bearerTokenFile"] != nil || plain["tlsConfig"] != nil {
		t.Errorf("pod network: endpoint %v, want http without token or TLS", plain)
	}
	guarded := serviceMonitorEndpoint(t, helmTemplate(t, "--set", "prometheus.monitor.enabled=true", "--set", "hostNetwork=true",
		"--set", "prometheus.monitor.interval=15s"))
	tls, _ := guarded["tlsConfig"].(map[string]any)
	if guarded["scheme"] != "https" || guarded["bearerTokenFile"] != "/var/run/secrets/kubernetes.io/serviceaccount/token" ||
		tls["insecureSkipVerify"] != true || guarded["interval"] != "15s" || guarded["honorLabels"] != true {
		t.Errorf("node network: endpoint %v, want https, the SA token, insecureSkipVerify, interval 15s, honorLabels", guarded)
	}
	rel, _ := guarded["relabelings"].([]any)
	if len(rel) != 1 {
		t.Errorf("relabelings %v, want the node relabeling", rel)
	}
}

// TestHelmMatchesKustomize fails when the chart and the kustomize base drift:
// the container (but image, args the chart adds and probe schemes), the pod's
// security settings and volumes, the RBAC rules (events rules compared only
// where both have them), and the alerts and dashboard of deploy/.
func TestHelmMatchesKustomize(t *testing.T) {
	chart := helmTemplate(t, "--set", "prometheusRule.enabled=true", "--set", "dashboard.enabled=true")
	t.Setenv(renderedEnv, "")
	kust := loadObjects(t)

	cds, kds := only[*appsv1.DaemonSet](t, chart), only[*appsv1.DaemonSet](t, kust)
	cc, kc := comparable(cds.Spec.Template.Spec.Containers[0]), comparable(kds.Spec.Template.Spec.Containers[0])
	if !reflect.DeepEqual(cc, kc) {
		t.Errorf("container drift:\nchart     %s\nkustomize %s", jsonOf(cc), jsonOf(kc))
	}
	cp, kp := cds.Spec.Template.Spec, kds.Spec.Template.Spec
	if !reflect.DeepEqual(cp.Volumes, kp.Volumes) || !reflect.DeepEqual(cp.SecurityContext, kp.SecurityContext) ||
		!reflect.DeepEqual(cp.Tolerations, kp.Tolerations) || cp.HostPID != kp.HostPID || cp.HostNetwork != kp.HostNetwork {
		t.Errorf("pod spec drift (volumes, securityContext, tolerations, hostPID, hostNetwork)")
	}
	for _, name := range []string{"shmwatch", "shmwatch-metrics-reader"} {
		cr, kr := grants(clusterRole(t, chart, name).Rules), grants(clusterRole(t, kust, name).Rules)
		for res := range optionalRules {
			if _, ok := kr[res]; !ok {
				delete(cr, res) // the events issue's rules, not yet in kustomize
			}
		}
		if !reflect.DeepEqual(cr, kr) {
			t.Errorf("ClusterRole %s drift: chart %v, kustomize %v", name, cr, kr)
		}
		cu, ku := nonResource(clusterRole(t, chart, name).Rules), nonResource(clusterRole(t, kust, name).Rules)
		if !slices.Equal(cu, ku) {
			t.Errorf("ClusterRole %s nonResourceURLs drift: chart %v, kustomize %v", name, cu, ku)
		}
	}

	var rules struct {
		Groups []any `json:"groups"`
	}
	readYAML(t, "prometheus/rules.yaml", &rules)
	var cm *corev1.ConfigMap
	for _, o := range chart.typed {
		if c, ok := o.(*corev1.ConfigMap); ok {
			cm = c
		}
	}
	for _, m := range chart.custom {
		if m["kind"] == "PrometheusRule" {
			got := m["spec"].(map[string]any)["groups"]
			if !reflect.DeepEqual(jsonOf(got), jsonOf(rules.Groups)) {
				t.Errorf("chart PrometheusRule groups differ from deploy/prometheus/rules.yaml")
			}
		}
	}
	dash, err := os.ReadFile("grafana/shmwatch.json")
	if err != nil {
		t.Fatal(err)
	}
	if cm == nil || strings.TrimSpace(cm.Data["shmwatch.json"]) != strings.TrimSpace(string(dash)) {
		t.Errorf("chart dashboard ConfigMap differs from deploy/grafana/shmwatch.json")
	}
}

// comparable is a container with what legitimately differs cleared: the
// image, the chart's optional args, the probe scheme (switched with auth).
func comparable(c corev1.Container) corev1.Container {
	c = *c.DeepCopy()
	c.Image = ""
	c.Args = slices.DeleteFunc(c.Args, func(a string) bool {
		return strings.HasPrefix(a, "--events") || strings.HasPrefix(a, "--web.auth")
	})
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
		if p != nil && p.HTTPGet != nil {
			p.HTTPGet.Scheme = ""
		}
	}
	return c
}

func nonResource(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		for _, u := range r.NonResourceURLs {
			for _, v := range r.Verbs {
				out = append(out, v+" "+u)
			}
		}
	}
	slices.Sort(out)
	return out
}

func jsonOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

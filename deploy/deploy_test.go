package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// renderedEnv names a file with `kubectl kustomize` output to check instead
// of the base's source files (test/manifests.sh sets it for each rendering).
const renderedEnv = "SHMWATCH_MANIFESTS"

const baseDir = "kubernetes"

// wantCaps are the only capabilities the agent keeps (docs/security.md).
var wantCaps = []corev1.Capability{"SYS_PTRACE"}

// wantHostPaths maps each host path to where the container sees it.
var wantHostPaths = map[string]string{
	"/sys/fs/cgroup":      "/host/sys/fs/cgroup",
	"/proc":               "/host/proc",
	"/var/log/pods":       "/host/var/log/pods",
	"/var/log/containers": "/host/var/log/containers",
}

// objects is one decoded rendering.
type objects struct {
	typed []runtime.Object
	// custom holds documents of kinds the client-go scheme does not know
	// (ServiceMonitor), as generic maps.
	custom []map[string]any
}

// loadObjects decodes the rendering named by $SHMWATCH_MANIFESTS, else the
// source files the base kustomization lists (the base sets no patches, so
// they are what kustomize renders, up to order and common labels).
func loadObjects(t *testing.T) objects {
	t.Helper()
	if f := os.Getenv(renderedEnv); f != "" {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
		return decodeAll(t, f, data)
	}
	var k struct {
		Namespace string   `json:"namespace"`
		Resources []string `json:"resources"`
		Patches   []any    `json:"patches"`
	}
	readYAML(t, filepath.Join(baseDir, "kustomization.yaml"), &k)
	if k.Namespace != "shmwatch" {
		t.Errorf("kustomization namespace = %q, want shmwatch", k.Namespace)
	}
	if len(k.Patches) != 0 {
		t.Fatalf("the base has patches; decoding its source files no longer equals rendering it")
	}
	var all objects
	for _, r := range k.Resources {
		p := filepath.Join(baseDir, r)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		o := decodeAll(t, p, data)
		all.typed = append(all.typed, o.typed...)
		all.custom = append(all.custom, o.custom...)
	}
	return all
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
}

// decodeAll decodes every document strictly: unknown or duplicate fields fail.
func decodeAll(t *testing.T, name string, data []byte) objects {
	t.Helper()
	strict := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out objects
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: split YAML: %v", name, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if strings.HasPrefix(head.APIVersion, "monitoring.coreos.com/") {
			var m map[string]any
			if err := yaml.UnmarshalStrict(doc, &m); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			out.custom = append(out.custom, m)
			continue
		}
		obj, _, err := strict.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: strict decode: %v\n%s", name, err, doc)
		}
		out.typed = append(out.typed, obj)
	}
}

func only[T runtime.Object](t *testing.T, objs objects) T {
	t.Helper()
	var found []T
	for _, o := range objs.typed {
		if v, ok := o.(T); ok {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("want exactly one %T, found %d", zero, len(found))
	}
	return found[0]
}

func TestOnlyExpectedKinds(t *testing.T) {
	objs := loadObjects(t)
	allowed := map[string]bool{"Namespace": true, "ServiceAccount": true, "ClusterRole": true,
		"ClusterRoleBinding": true, "DaemonSet": true, "Service": true,
		// From the priorityclass component only.
		"ResourceQuota": true}
	for _, o := range objs.typed {
		kind := fmt.Sprintf("%T", o)
		kind = kind[strings.LastIndex(kind, ".")+1:]
		if !allowed[kind] {
			t.Errorf("unexpected object kind %s in the rendering", kind)
		}
		if m, ok := o.(interface{ GetNamespace() string }); ok {
			ns := m.GetNamespace()
			clusterScoped := kind == "Namespace" || kind == "ClusterRole" || kind == "ClusterRoleBinding"
			if !clusterScoped && ns != "shmwatch" {
				t.Errorf("%s in namespace %q, want shmwatch", kind, ns)
			}
		}
	}
	ns := only[*corev1.Namespace](t, objs)
	// hostPID, hostPath and SYS_PTRACE are rejected below the privileged level.
	if ns.Name != "shmwatch" || ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace %s labels %v: want shmwatch with pod-security.kubernetes.io/enforce=privileged", ns.Name, ns.Labels)
	}
	only[*corev1.ServiceAccount](t, objs)
}

func TestClusterRoleGrantsOnlyPodsAndNodes(t *testing.T) {
	objs := loadObjects(t)
	role := only[*rbacv1.ClusterRole](t, objs)
	if problems := checkRules(role.Rules); len(problems) > 0 {
		t.Errorf("ClusterRole %s:\n%s", role.Name, strings.Join(problems, "\n"))
	}
	crb := only[*rbacv1.ClusterRoleBinding](t, objs)
	if crb.RoleRef.Kind != "ClusterRole" || crb.RoleRef.Name != role.Name {
		t.Errorf("binding refers to %s/%s, want ClusterRole/%s", crb.RoleRef.Kind, crb.RoleRef.Name, role.Name)
	}
	sa := only[*corev1.ServiceAccount](t, objs)
	want := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: sa.Namespace}}
	if !slices.Equal(crb.Subjects, want) {
		t.Errorf("binding subjects = %+v, want %+v", crb.Subjects, want)
	}
}

// checkRules accepts exactly pods get/list/watch and nodes get in the core group,
// and events create/patch in the core and events.k8s.io groups.
func checkRules(rules []rbacv1.PolicyRule) []string {
	want := map[string][]string{"pods": {"get", "list", "watch"}, "nodes": {"get"}, "events": {"create", "patch"}}
	got := map[string][]string{}
	var problems []string
	for _, r := range rules {
		if len(r.NonResourceURLs) > 0 || len(r.ResourceNames) > 0 {
			problems = append(problems, fmt.Sprintf("rule %+v: nonResourceURLs/resourceNames not expected", r))
		}
		if slices.Equal(r.Resources, []string{"events"}) && slices.Equal(r.APIGroups, []string{"", "events.k8s.io"}) {
			// the events rule: both groups
		} else if !slices.Equal(r.APIGroups, []string{""}) {
			problems = append(problems, fmt.Sprintf("rule %+v: apiGroups must be exactly [\"\"]", r))
		}
		for _, res := range r.Resources {
			got[res] = append(got[res], r.Verbs...)
		}
	}
	for res, verbs := range got {
		slices.Sort(verbs)
		if !slices.Equal(verbs, want[res]) {
			problems = append(problems, fmt.Sprintf("%s: verbs %v, want %v", res, verbs, want[res]))
		}
	}
	for res := range want {
		if _, ok := got[res]; !ok {
			problems = append(problems, fmt.Sprintf("%s: not granted", res))
		}
	}
	slices.Sort(problems)
	return problems
}

func TestDaemonSetLeastPrivilege(t *testing.T) {
	ds := only[*appsv1.DaemonSet](t, loadObjects(t))
	if problems := checkDaemonSet(ds); len(problems) > 0 {
		t.Errorf("DaemonSet %s:\n%s", ds.Name, strings.Join(problems, "\n"))
	}
}

// checkDaemonSet lists every way ds departs from the least-privilege shape
// of docs/security.md.
func checkDaemonSet(ds *appsv1.DaemonSet) []string {
	var p []string
	add := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }
	spec := ds.Spec.Template.Spec
	if !spec.HostPID {
		add("hostPID must be true (containers' /proc/<pid>/root)")
	}
	if spec.HostIPC {
		add("hostIPC must be false")
	}
	if spec.HostNetwork && spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		add("hostNetwork needs dnsPolicy ClusterFirstWithHostNet, got %q", spec.DNSPolicy)
	}
	if spec.PriorityClassName != "" && spec.PriorityClassName != "system-node-critical" {
		add("priorityClassName %q, want system-node-critical or none", spec.PriorityClassName)
	}
	if sc := spec.SecurityContext; sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		add("pod seccompProfile must be RuntimeDefault")
	}
	if !slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool {
		return t.Key == "" && t.Operator == corev1.TolerationOpExists && t.Effect == ""
	}) {
		add("needs a toleration {operator: Exists} to run on every node")
	}
	if len(spec.InitContainers) != 0 || len(spec.Containers) != 1 {
		add("want exactly one container and no init containers")
		return p
	}
	c := spec.Containers[0]
	p = append(p, checkSecurityContext(c.SecurityContext)...)
	p = append(p, checkMounts(spec.Volumes, c.VolumeMounts)...)
	if !slices.Contains(c.Args, "serve") || !slices.Contains(c.Args, "--host-root=/host") {
		add("args %v must contain serve and --host-root=/host", c.Args)
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	}) {
		add("NODE_NAME must come from the downward API (spec.nodeName)")
	}
	if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == "metrics" && cp.ContainerPort == 9850 }) {
		add("container port metrics/9850 missing")
	}
	for probe, path := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.String() != "metrics" {
			add("probe for %s on port metrics missing", path)
		}
	}
	wantRes := map[string]resource.Quantity{
		"requests.cpu": resource.MustParse("20m"), "requests.memory": resource.MustParse("48Mi"), "limits.memory": resource.MustParse("128Mi")}
	gotRes := map[string]resource.Quantity{
		"requests.cpu": c.Resources.Requests[corev1.ResourceCPU], "requests.memory": c.Resources.Requests[corev1.ResourceMemory],
		"limits.memory": c.Resources.Limits[corev1.ResourceMemory]}
	for k, w := range wantRes {
		if g := gotRes[k]; g.Cmp(w) != 0 {
			add("resources %s = %s, want %s (docs/performance.md)", k, g.String(), w.String())
		}
	}
	ann := ds.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != "9850" {
		add("pod template needs prometheus.io/scrape=true and prometheus.io/port=9850 annotations")
	}
	slices.Sort(p)
	return p
}

func checkSecurityContext(sc *corev1.SecurityContext) []string {
	if sc == nil {
		return []string{"container securityContext missing"}
	}
	var p []string
	isTrue := func(b *bool) bool { return b != nil && *b }
	if sc.Privileged != nil && *sc.Privileged {
		p = append(p, "privileged must be false")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		p = append(p, "allowPrivilegeEscalation must be false")
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		p = append(p, "readOnlyRootFilesystem must be true")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		p = append(p, "runAsUser must be 0 (owner of the files read; docs/security.md)")
	}
	if sc.ProcMount != nil && *sc.ProcMount != corev1.DefaultProcMount {
		p = append(p, "procMount must be Default")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		p = append(p, "capabilities must drop exactly [ALL]")
	}
	var added []corev1.Capability
	if sc.Capabilities != nil {
		added = slices.Clone(sc.Capabilities.Add)
	}
	slices.Sort(added)
	if !slices.Equal(added, wantCaps) {
		p = append(p, fmt.Sprintf("capabilities add %v, want exactly %v", added, wantCaps))
	}
	return p
}

func checkMounts(vols []corev1.Volume, mounts []corev1.VolumeMount) []string {
	var p []string
	byName := map[string]corev1.Volume{}
	for _, v := range vols {
		byName[v.Name] = v
		if v.HostPath == nil {
			p = append(p, fmt.Sprintf("volume %s is not a hostPath; no other volumes expected", v.Name))
		} else if _, ok := wantHostPaths[v.HostPath.Path]; !ok {
			p = append(p, fmt.Sprintf("hostPath %s not expected", v.HostPath.Path))
		}
	}
	seen := map[string]bool{}
	for _, m := range mounts {
		v, ok := byName[m.Name]
		if !ok || v.HostPath == nil {
			continue
		}
		host := v.HostPath.Path
		seen[host] = true
		if !m.ReadOnly {
			p = append(p, fmt.Sprintf("mount of %s must be readOnly", host))
		}
		if want := wantHostPaths[host]; m.MountPath != want {
			p = append(p, fmt.Sprintf("%s mounted at %s, want %s", host, m.MountPath, want))
		}
		prop := corev1.MountPropagationNone
		if m.MountPropagation != nil {
			prop = *m.MountPropagation
		}
		// The agent reads only files and statfs's through /proc/<pid>/root,
		// so no mount needs propagation from the host.
		wantProp := corev1.MountPropagationNone
		if prop != wantProp {
			p = append(p, fmt.Sprintf("mount of %s propagation %s, want %s", host, prop, wantProp))
		}
	}
	for host := range wantHostPaths {
		if !seen[host] {
			p = append(p, fmt.Sprintf("hostPath %s not mounted", host))
		}
	}
	return p
}

// TestCheckerCatchesPrivilege proves the DaemonSet and RBAC checks can fail:
// each mutation of the shipped objects must be reported.
func TestCheckerCatchesPrivilege(t *testing.T) {
	objs := loadObjects(t)
	shipped := only[*appsv1.DaemonSet](t, objs)
	yes := true
	mutations := map[string]func(*appsv1.DaemonSet){
		"privileged": func(d *appsv1.DaemonSet) { d.Spec.Template.Spec.Containers[0].SecurityContext.Privileged = &yes },
		"extra cap": func(d *appsv1.DaemonSet) {
			sc := d.Spec.Template.Spec.Containers[0].SecurityContext
			sc.Capabilities.Add = append(sc.Capabilities.Add, "SYS_ADMIN")
		},
		"no SYS_PTRACE": func(d *appsv1.DaemonSet) {
			d.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Add = nil
		},
		"no drop":        func(d *appsv1.DaemonSet) { d.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Drop = nil },
		"writable mount": func(d *appsv1.DaemonSet) { d.Spec.Template.Spec.Containers[0].VolumeMounts[0].ReadOnly = false },
		"bidirectional": func(d *appsv1.DaemonSet) {
			b := corev1.MountPropagationBidirectional
			d.Spec.Template.Spec.Containers[0].VolumeMounts[2].MountPropagation = &b
		},
		"extra hostPath": func(d *appsv1.DaemonSet) {
			d.Spec.Template.Spec.Volumes = append(d.Spec.Template.Spec.Volumes, corev1.Volume{Name: "root",
				VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}})
		},
		"no hostPID":   func(d *appsv1.DaemonSet) { d.Spec.Template.Spec.HostPID = false },
		"hostIPC":      func(d *appsv1.DaemonSet) { d.Spec.Template.Spec.HostIPC = true },
		"no NODE_NAME": func(d *appsv1.DaemonSet) { d.Spec.Template.Spec.Containers[0].Env = nil },
		"rw rootfs": func(d *appsv1.DaemonSet) {
			d.Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = nil
		},
	}
	for name, mutate := range mutations {
		d := shipped.DeepCopy()
		mutate(d)
		if len(checkDaemonSet(d)) == 0 {
			t.Errorf("mutation %q not caught", name)
		}
	}
	rules := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}},
	}
	if len(checkRules(rules)) == 0 {
		t.Error("a secrets rule was not caught")
	}
	rules[1].Verbs = []string{"get", "list"}
	if len(checkRules(rules[:2])) == 0 {
		t.Error("nodes list was not caught")
	}
}

func TestServiceIsHeadlessOnMetricsPort(t *testing.T) {
	objs := loadObjects(t)
	svc := only[*corev1.Service](t, objs)
	ds := only[*appsv1.DaemonSet](t, objs)
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("service clusterIP = %q, want None", svc.Spec.ClusterIP)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" || svc.Spec.Ports[0].Port != 9850 {
		t.Errorf("service ports = %+v, want one port metrics/9850", svc.Spec.Ports)
	}
	for k, v := range svc.Spec.Selector {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("service selector %s=%s does not match the DaemonSet's pods", k, v)
		}
	}
}

// TestServiceMonitor checks the component's ServiceMonitor (or the one in the
// rendering) selects the Service, scrapes port metrics and honors the
// agent's namespace/pod labels.
func TestServiceMonitor(t *testing.T) {
	objs := loadObjects(t)
	mons := objs.custom
	if os.Getenv(renderedEnv) == "" {
		data, err := os.ReadFile(filepath.Join(baseDir, "servicemonitor", "servicemonitor.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		mons = append(mons, decodeAll(t, "servicemonitor.yaml", data).custom...)
	}
	if len(mons) == 0 {
		t.Skip("no ServiceMonitor in this rendering")
	}
	svc := only[*corev1.Service](t, objs)
	for _, m := range mons {
		var sm struct {
			Kind string
			Spec struct {
				Selector  struct{ MatchLabels map[string]string }
				Endpoints []struct {
					Port        string
					HonorLabels bool `json:"honorLabels"`
				}
			}
		}
		b, _ := yaml.Marshal(m)
		if err := yaml.Unmarshal(b, &sm); err != nil {
			t.Fatal(err)
		}
		if sm.Kind != "ServiceMonitor" {
			t.Errorf("unexpected kind %s", sm.Kind)
			continue
		}
		for k, v := range sm.Spec.Selector.MatchLabels {
			if svc.Labels[k] != v {
				t.Errorf("ServiceMonitor selector %s=%s does not match the Service labels %v", k, v, svc.Labels)
			}
		}
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || !sm.Spec.Endpoints[0].HonorLabels {
			t.Errorf("ServiceMonitor endpoints = %+v, want port metrics with honorLabels: true", sm.Spec.Endpoints)
		}
	}
}

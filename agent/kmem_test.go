package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The layer that switched kmem accounting on, from each cgroup's Kmem, as
// seed 004 tells it on 3.10: the kubelet (pod cgroup) or the runtime
// (container cgroups only).
func TestKmemLayerFinding(t *testing.T) {
	yes, no := true, false
	active := &Kmem{Slabinfo: "readable", AccountingActive: &yes}
	eio := &Kmem{Slabinfo: "eio", AccountingActive: &no}
	limited := &Kmem{Slabinfo: "readable", LimitBytes: u64p(1 << 30)}
	headroom := int64(4000)
	node := func(kernel string) NodeReport {
		return NodeReport{Kernel: kernel, CgroupMode: "v1", Memcg: Memcgs{IDHeadroom: &headroom}}
	}
	pod := func(podK *Kmem, ctrK ...*Kmem) Pod {
		p := Pod{Kmem: podK}
		for _, k := range ctrK {
			p.Containers = append(p.Containers, Container{Kmem: k})
		}
		return p
	}
	for _, tc := range []struct {
		name     string
		snap     Snapshot
		severity Severity
		want     []string
	}{
		{"3.10: pod cgroup slabinfo readable: the kubelet, 3 per deletion", Snapshot{Node: node("3.10.0-1160.el7.x86_64"),
			Pods: []Pod{pod(active, active, active)}}, SeverityCritical,
			[]string{"the kubelet (pod cgroup) in 1 pods", "3 memcgs per pod deletion", "4000 memcg ids left"}},
		{"3.10: pod EIO, containers readable: the runtime, 2 per deletion", Snapshot{Node: node("3.10.0"),
			Pods: []Pod{pod(eio, active, active)}}, SeverityCritical,
			[]string{"the runtime (container cgroups only) in 1 pods: 2 per pod deletion"}},
		{"3.10: everything EIO: nothing turned it on", Snapshot{Node: node("3.10.0"),
			Pods: []Pod{pod(eio, eio)}}, SeverityOK, nil},
		{"5.10: a readable slabinfo says nothing, a kmem limit does", Snapshot{Node: node("5.10.0-32-cloud-amd64"),
			Pods: []Pod{pod(&Kmem{Slabinfo: "readable"}, limited), pod(&Kmem{Slabinfo: "readable"}, &Kmem{Slabinfo: "readable"})}}, SeverityWarning,
			[]string{"the runtime (container cgroups only) in 1 pods"}},
	} {
		f := kmemLayerFinding(&tc.snap)
		if tc.want == nil {
			if f.Check != "" {
				t.Errorf("%s: %+v, want no finding", tc.name, f)
			}
			continue
		}
		if f.Check != "kmem-layer" || f.Severity != tc.severity {
			t.Errorf("%s: %+v, want kmem-layer %s", tc.name, f, tc.severity)
		}
		for _, w := range tc.want {
			if !strings.Contains(f.Message, w) {
				t.Errorf("%s: message %q lacks %q", tc.name, f.Message, w)
			}
		}
	}
	v2 := Snapshot{Node: NodeReport{CgroupMode: "v2"}, Pods: []Pod{pod(limited)}}
	if f := kmemLayerFinding(&v2); f.Check != "" {
		t.Errorf("v2: %+v", f)
	}
}

// TestSlabinfoReadOnlyBefore59: a collection reads each cgroup's
// memory.kmem.slabinfo on a kernel before 5.9 and not from 5.9, where the
// kernel keeps it empty. The same captured files; only the release the
// node reports differs.
func TestSlabinfoReadOnlyBefore59(t *testing.T) {
	for _, tc := range []struct {
		release string
		read    bool
	}{{"6.18.44-fc-v1300", false}, {"5.4.0-216-generic", true}} {
		ft := buildV1Fixture(t)
		osrelease := filepath.Join(ft.ProcRoot, "sys", "kernel", "osrelease")
		if err := os.WriteFile(osrelease, []byte(tc.release+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		snap, err := fixtureCollector(ft, fixtureMeta()).Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range snap.Pods {
			for _, k := range []*Kmem{p.Kmem, p.Containers[0].Kmem} {
				if k == nil {
					t.Fatalf("%s: pod %s: no kmem state", tc.release, p.Name)
				}
				if read := k.Slabinfo != ""; read != tc.read {
					t.Errorf("%s: pod %s: slabinfo %q, want read %v", tc.release, p.Name, k.Slabinfo, tc.read)
				}
				if active := k.AccountingActive != nil && *k.AccountingActive; active != tc.read {
					t.Errorf("%s: pod %s: accounting_active %v, want %v (a readable slabinfo before 5.9)", tc.release, p.Name, k.AccountingActive, tc.read)
				}
			}
		}
	}
}

// A kmem limit is read only where the kernel can hold one: the limit file
// captured on 5.10 (a written 1Gi kept) is read with that release and not
// with 6.18's, where every cgroup reads unlimited.
func TestKmemLimitReadOnlyBefore516(t *testing.T) {
	const limit = 1 << 30 // what the capture wrote
	release, err := os.ReadFile(filepath.Join(captures, "vm510-v1", "osrelease"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		release string
		read    bool
	}{{strings.TrimSpace(string(release)), true}, {"6.18.44-fc-v1300", false}} {
		ft := buildV1Fixture(t)
		osrelease := filepath.Join(ft.ProcRoot, "sys", "kernel", "osrelease")
		if err := os.WriteFile(osrelease, []byte(tc.release+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cgroups := 0
		for _, pod := range []string{"kubepods/burstable/pod" + burstUID, "kubepods/pod" + guarUID} {
			podDir := filepath.Join(ft.Hierarchy.MemoryRoot, pod)
			ctrs, _ := filepath.Glob(filepath.Join(podDir, "*", "memory.stat"))
			for _, dir := range append([]string{podDir}, dirsOf(ctrs)...) {
				copyCaptures(t, "vm510-v1", "cg.", dir, "memory.kmem.limit_in_bytes")
				cgroups++
			}
		}
		snap, err := fixtureCollector(ft, fixtureMeta()).Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if tc.read {
			want = cgroups
		}
		if got := snap.Node.KmemLimitedCgroups; got != want || cgroups != 4 {
			t.Errorf("%s: %d kmem-limited cgroups of %d with a limit written, want %d", tc.release, got, cgroups, want)
		}
		for _, p := range snap.Pods {
			for _, k := range []*Kmem{p.Kmem, p.Containers[0].Kmem} {
				if read := k != nil && k.LimitBytes != nil && *k.LimitBytes == limit; read != tc.read {
					t.Errorf("%s: pod %s: kmem %+v, want the 1Gi limit read %v", tc.release, p.Name, k, tc.read)
				}
			}
		}
		if f := kmemLimitFinding(snap); tc.read == strings.Contains(f.Message, "keeps no kmem limit") {
			t.Errorf("%s: audit says %q", tc.release, f.Message)
		}
	}
}

func dirsOf(files []string) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = filepath.Dir(f)
	}
	return out
}

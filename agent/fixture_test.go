package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shmwatch/shmwatch/agent/podmeta"
	"github.com/shmwatch/shmwatch/cgroupfs"
)

// captures is where cgroupfs keeps the kernel files captured on this host
// and in the VM rig; the fixture trees are built from copies of them.
const captures = "../cgroupfs/testdata"

// Fixed identities of the fixture pods. They are inputs (what a kubelet and
// a runtime would name), not kernel numbers.
const (
	burstUID = "0a8f6c2e-1b3d-4e5f-8a9b-0c1d2e3f4a5b"
	burstCtr = "3f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0"
	guarUID  = "7c6b5a49-3827-4160-9f8e-7d6c5b4a3928"
	guarCtr  = "9a8b7c6d5e4f30211203f4e5d6c7b8a99887766554433221100ffeeddccbbaa9"
)

// fixtureTree is a copy of captured kernel files laid out as a node's
// memory hierarchy and /proc.
type fixtureTree struct {
	Hierarchy cgroupfs.Hierarchy
	ProcRoot  string
}

// copyCaptures copies <captures>/<capture>/<prefix><name> to dir/<name> for
// every name.
func copyCaptures(t *testing.T, capture, prefix, dir string, names ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(captures, capture, prefix+n))
		if err != nil {
			t.Fatalf("fixture: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var v1CgroupFiles = []string{
	"memory.stat", "memory.limit_in_bytes", "memory.usage_in_bytes", "memory.max_usage_in_bytes",
	"memory.failcnt", "memory.oom_control", "memory.kmem.usage_in_bytes", "memory.kmem.limit_in_bytes",
}

var v1RootFiles = []string{"memory.stat", "memory.limit_in_bytes", "memory.usage_in_bytes", "memory.oom_control"}

// buildV1Fixture lays out a hybrid (v1 memory) node from the host-v1
// capture (this 6.18 machine) and the vm-v1 capture (6.1): a Burstable pod
// whose pod and container cgroups hold the host capture's files, and a
// Guaranteed pod holding the VM's.
func buildV1Fixture(t *testing.T) fixtureTree {
	t.Helper()
	root := t.TempDir()
	mem := filepath.Join(root, "sys", "fs", "cgroup", "memory")
	copyCaptures(t, "host-v1", "root.", mem, v1RootFiles...)
	for _, d := range []string{"kubepods/besteffort"} {
		if err := os.MkdirAll(filepath.Join(mem, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	burst := filepath.Join(mem, "kubepods", "burstable", "pod"+burstUID)
	copyCaptures(t, "host-v1", "cg.", burst, v1CgroupFiles...)
	copyCaptures(t, "host-v1", "cg.", filepath.Join(burst, burstCtr), v1CgroupFiles...)
	copyCaptures(t, "host-v1", "cg.", burst, "memory.kmem.slabinfo") // empty from 5.9
	copyCaptures(t, "host-v1", "cg.", filepath.Join(burst, burstCtr), "memory.kmem.slabinfo")
	guar := filepath.Join(mem, "kubepods", "pod"+guarUID)
	copyCaptures(t, "vm-v1", "cg.", guar, v1CgroupFiles...)
	copyCaptures(t, "vm-v1", "cg.", filepath.Join(guar, guarCtr), v1CgroupFiles...)
	copyCaptures(t, "vm-v1", "cg.", guar, "memory.kmem.slabinfo")
	copyCaptures(t, "vm-v1", "cg.", filepath.Join(guar, guarCtr), "memory.kmem.slabinfo")

	proc := filepath.Join(root, "proc")
	copyCaptures(t, "host-v1", "proc.", proc, "cgroups", "cmdline", "meminfo", "slabinfo")
	copyCaptures(t, "host-v1", "proc.pressure.", filepath.Join(proc, "pressure"), "memory")
	copyCaptures(t, "host-v1", "", filepath.Join(proc, "sys", "kernel"), "osrelease")
	return fixtureTree{Hierarchy: cgroupfs.Hierarchy{Mode: cgroupfs.ModeHybrid, MemoryRoot: mem}, ProcRoot: proc}
}

var v2CgroupFiles = []string{
	"memory.stat", "memory.max", "memory.current", "memory.peak", "memory.events", "memory.pressure", "cgroup.stat",
}

// buildV2Fixture lays out a pure cgroup2 node from the vm-v2 capture (6.1):
// the same two pods, every cgroup holding the captured test cgroup's files.
func buildV2Fixture(t *testing.T) fixtureTree {
	t.Helper()
	root := t.TempDir()
	mem := filepath.Join(root, "sys", "fs", "cgroup")
	copyCaptures(t, "vm-v2", "root.", mem, "cgroup.stat", "memory.stat", "memory.pressure", "cgroup.controllers", "cgroup.subtree_control")
	for _, d := range []string{"kubepods/besteffort"} {
		if err := os.MkdirAll(filepath.Join(mem, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{
		filepath.Join(mem, "kubepods", "burstable", "pod"+burstUID),
		filepath.Join(mem, "kubepods", "burstable", "pod"+burstUID, burstCtr),
		filepath.Join(mem, "kubepods", "pod"+guarUID),
		filepath.Join(mem, "kubepods", "pod"+guarUID, guarCtr),
	} {
		copyCaptures(t, "vm-v2", "cg.", dir, v2CgroupFiles...)
	}
	proc := filepath.Join(root, "proc")
	copyCaptures(t, "vm-v2", "proc.", proc, "cgroups", "cmdline", "meminfo")
	copyCaptures(t, "vm-v2", "proc.pressure.", filepath.Join(proc, "pressure"), "memory")
	copyCaptures(t, "vm-v2", "", filepath.Join(proc, "sys", "kernel"), "osrelease")
	return fixtureTree{Hierarchy: cgroupfs.Hierarchy{Mode: cgroupfs.ModeV2, MemoryRoot: mem}, ProcRoot: proc}
}

// staticMeta is pod metadata as the API would give it: the input a
// Collector joins with the kernel's files, not a stand-in for the kernel.
type staticMeta struct {
	pods map[string]podmeta.Pod
	node podmeta.Node
}

func (m *staticMeta) Pod(uid string) (podmeta.Pod, bool) { p, ok := m.pods[uid]; return p, ok }
func (m *staticMeta) Pods() []podmeta.Pod {
	out := make([]podmeta.Pod, 0, len(m.pods))
	for _, p := range m.pods {
		out = append(out, p)
	}
	return out
}
func (m *staticMeta) Node() podmeta.Node     { return m.node }
func (m *staticMeta) Source() podmeta.Source { return podmeta.SourceAPI }
func (m *staticMeta) Known() bool            { return false }
func (m *staticMeta) Stop()                  {}

func fixtureMeta() *staticMeta {
	alloc := uint64(7 << 30)
	return &staticMeta{
		pods: map[string]podmeta.Pod{
			burstUID: {UID: burstUID, Namespace: "shop", Name: "cart-7d9f8", QOS: "burstable",
				Containers: map[string]string{burstCtr: "cart"}, Phase: "Running"},
			guarUID: {UID: guarUID, Namespace: "ml", Name: "trainer-0", QOS: "guaranteed",
				Containers: map[string]string{guarCtr: "trainer"}, Phase: "Running",
				// The container before this one was OOM-killed (its cgroup is gone).
				OOMKilled: []podmeta.OOMKilled{{Container: "trainer", ContainerID: strings.Repeat("9", 64),
					FinishedAt: time.Date(2026, 11, 22, 6, 29, 0, 0, time.UTC), RestartCount: 1}}},
		},
		node: podmeta.Node{AllocatableMemory: &alloc, ServerVersion: "v1.33.13"},
	}
}

// fixtureCollector is a Collector over a fixture tree with no shm scanner.
func fixtureCollector(ft fixtureTree, meta podmeta.Provider) *Collector {
	return NewCollector(Config{NodeName: "fixture-node", CgroupRoot: "/"},
		cgroupfs.NewFSAt(ft.Hierarchy, ft.ProcRoot), nil, meta, nil)
}

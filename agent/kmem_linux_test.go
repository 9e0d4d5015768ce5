package agent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmwatch/shmwatch/cgroupfs"
	"github.com/shmwatch/shmwatch/internal/realkernel"
)

// TestRealKernelKmemLayer builds two kubelet-like pods in this machine's v1
// memory hierarchy and writes a kmem limit where each layer would: on the
// pod cgroup (the kubelet) and on the container cgroups only (the runtime),
// then runs the audit over a real collection. Kernels that still take the
// limit (5.10) must get a kmem-layer finding naming both layers; kernels
// that ignore the write (6.x) must keep the limit absent and give none.
// What the kernel showed is logged for the record.
func TestRealKernelKmemLayer(t *testing.T) {
	fs := realAgentFS(t)
	if fs.Hierarchy.Mode == cgroupfs.ModeV2 {
		t.Skip("v1 only: cgroup v2 has no kmem limit nor memory.kmem.slabinfo")
	}
	root := "/shmwatch-kmem-" + strconv.Itoa(os.Getpid()) + "-" + randomHex(4)
	kubeletPod, kubeletCtr := root+"/kubepods/burstable/pod"+testUID(1), "/"+strings.Repeat("a", 64)
	runtimePod, runtimeCtr := root+"/kubepods/burstable/pod"+testUID(2), "/"+strings.Repeat("b", 64)
	mkCgroups(t, fs, kubeletPod+kubeletCtr, runtimePod+runtimeCtr)
	const limit = "1073741824"
	took := writeKmemLimit(t, fs, kubeletPod, limit)
	writeKmemLimit(t, fs, kubeletPod+kubeletCtr, limit)
	writeKmemLimit(t, fs, runtimePod+runtimeCtr, limit)

	col := NewCollector(Config{NodeName: "real", CgroupRoot: root}, fs, nil, nil, nil)
	snap := collectPods(t, col, 2)
	for _, p := range snap.Pods {
		if p.Kmem == nil || len(p.Containers) != 1 || p.Containers[0].Kmem == nil {
			t.Fatalf("pod %s: no kmem state: %+v", p.UID, p)
		}
		t.Logf("kernel %s pod %s: pod kmem %s, container kmem %s", snap.Node.Kernel, p.UID[:8], kmemText(p.Kmem), kmemText(p.Containers[0].Kmem))
		for _, k := range []*Kmem{p.Kmem, p.Containers[0].Kmem} {
			checkKmemRead(t, snap.Node.Kernel, k)
		}
	}
	if took && snap.Node.KmemLimitedCgroups != 3 {
		t.Errorf("%d kmem-limited cgroups %v, want the 3 written", snap.Node.KmemLimitedCgroups, snap.Node.KmemLimitedPaths)
	}
	a := NewAudit(snap, snap)
	var layer *Finding
	for i, f := range a.Findings {
		t.Logf("audit: %-8s %-20s %s", f.Severity, f.Check, f.Message)
		if f.Check == "kmem-layer" {
			layer = &a.Findings[i]
		}
	}
	t.Logf("audit exit code %d", a.ExitCode())
	if !took {
		if layer != nil {
			t.Errorf("kernel %s ignores kmem limits, yet: %s", snap.Node.Kernel, layer.Message)
		}
		return
	}
	if layer == nil || !strings.Contains(layer.Message, "the kubelet (pod cgroup) in 1 pods") ||
		!strings.Contains(layer.Message, "the runtime (container cgroups only) in 1 pods") {
		t.Fatalf("kmem-layer finding %+v, want both layers named", layer)
	}
	if want := 1; oldKernel(snap.Node.Kernel, 4, 6) {
		want = 2
		if a.ExitCode() != want {
			t.Errorf("audit exit %d, want %d", a.ExitCode(), want)
		}
	} else if a.ExitCode() < want {
		t.Errorf("audit exit %d, want at least %d", a.ExitCode(), want)
	}
}

func realAgentFS(t *testing.T) *cgroupfs.FS {
	t.Helper()
	if os.Geteuid() != 0 {
		realkernel.Skip(t, "needs root")
	}
	fs, err := cgroupfs.NewFS("/proc")
	if err != nil {
		realkernel.Skip(t, "no memory cgroup hierarchy: %v", err)
	}
	return fs
}

// mkCgroups makes each path and its parents, removed deepest first at cleanup.
func mkCgroups(t *testing.T, fs *cgroupfs.FS, paths ...string) {
	t.Helper()
	var made []string
	t.Cleanup(func() {
		for i := len(made) - 1; i >= 0; i-- {
			if err := syscall.Rmdir(made[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
				time.Sleep(100 * time.Millisecond)
				_ = syscall.Rmdir(made[i])
			}
		}
	})
	for _, p := range paths {
		dir := fs.Hierarchy.MemoryRoot
		for _, part := range strings.Split(strings.Trim(p, "/"), "/") {
			dir += "/" + part
			if err := os.Mkdir(dir, 0o755); err == nil {
				made = append(made, dir)
			} else if !errors.Is(err, os.ErrExist) {
				t.Fatal(err)
			}
		}
	}
}

// writeKmemLimit writes memory.kmem.limit_in_bytes and says whether the
// kernel kept it (6.x accepts or refuses the write and stays unlimited).
func writeKmemLimit(t *testing.T, fs *cgroupfs.FS, cg, v string) bool {
	t.Helper()
	file := fs.Hierarchy.MemoryRoot + cg + "/memory.kmem.limit_in_bytes"
	werr := os.WriteFile(file, []byte(v), 0)
	got, err := os.ReadFile(file)
	if err != nil {
		t.Logf("%s: not readable: %v (write: %v)", file, err, werr)
		return false
	}
	kept := strings.TrimSpace(string(got)) == v
	if !kept {
		t.Logf("kmem limit write %s: %v; reads back %s", cg, werr, strings.TrimSpace(string(got)))
	}
	return kept
}

// checkKmemRead: memory.kmem.slabinfo is read before 5.9 and not from
// 5.9, where the kernel keeps it empty in every memcg.
func checkKmemRead(t *testing.T, release string, k *Kmem) {
	t.Helper()
	switch {
	case newKernel(release, 5, 9) && (k.Slabinfo != "" || k.AccountingActive != nil || k.TopSlabCaches != nil):
		t.Errorf("kernel %s: slabinfo read (%s), want it skipped from 5.9", release, kmemText(k))
	case oldKernel(release, 5, 9) && k.Slabinfo == "":
		t.Errorf("kernel %s: slabinfo not read, want its state before 5.9", release)
	}
}

func kmemText(k *Kmem) string {
	return fmt.Sprintf("slabinfo %s, accounting_active %s, limit %s, %d slab caches", k.Slabinfo,
		fmtBoolPtr(k.AccountingActive), bytesOrDash(k.LimitBytes), len(k.TopSlabCaches))
}

func fmtBoolPtr(b *bool) string {
	if b == nil {
		return "null"
	}
	return strconv.FormatBool(*b)
}

func testUID(n int) string { return fmt.Sprintf("0000000%d-1111-2222-3333-%012d", n, os.Getpid()) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

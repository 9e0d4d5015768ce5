package cgroupfs

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestRealKernelMemoryPressure squeezes a pod-like cgroup under its
// memory.high with a tmpfs writer (shmem cannot be reclaimed without swap,
// so the kernel throttles the writer and counts the time as a memory
// stall) and checks that the pod's memory.pressure rose and that cgroupfs
// reads the kernel's own totals. On v1 and on a kernel without PSI (boot
// with psi=0) the pressure must be absent, not 0 and not an error.
func TestRealKernelMemoryPressure(t *testing.T) {
	fs := realFS(t)
	tr := newTestTree(t, fs)
	pod, park := tr.root+"/pod", tr.root+"/park"
	ctr := pod + "/ctr"
	tr.mkdir(ctr)
	tr.mkdir(park)

	node, nodeErr := fs.NodePressure()
	if nodeErr != nil {
		t.Fatalf("NodePressure: %v", nodeErr)
	}
	_, statErr := os.Stat("/proc/pressure/memory")
	if hasPSI := statErr == nil; hasPSI != (node != nil) {
		t.Fatalf("/proc/pressure/memory present: %v, NodePressure: %+v", hasPSI, node)
	}
	if fs.v1() || node == nil {
		m := fs.MemoryFields(pod, FieldPressure)
		if m.PSI != nil || len(m.Errors) > 0 {
			t.Fatalf("mode %s, node PSI %v: pod pressure = %+v, errors %v; want absent", fs.Hierarchy.Mode, node != nil, m.PSI, m.Errors)
		}
		t.Logf("mode %s, node PSI %+v: pod pressure absent as it must be", fs.Hierarchy.Mode, node)
		return
	}

	before := podPressure(t, fs, pod)
	tr.write(pod+"/memory.max", "64M")
	tr.write(pod+"/memory.high", "31M")
	startHelper(t, fs, ctr, park, 32) // returns once written and parked: the pod has no task left
	after := podPressure(t, fs, pod)
	if after.Some.TotalMicroseconds <= before.Some.TotalMicroseconds {
		t.Errorf("some total %d -> %d: did not rise while the writer was throttled", before.Some.TotalMicroseconds, after.Some.TotalMicroseconds)
	}
	file, _ := kernelFile(t, fs, pod, "memory.pressure")
	if some, full := kernelPSITotal(t, file, "some"), kernelPSITotal(t, file, "full"); some != after.Some.TotalMicroseconds || full != after.Full.TotalMicroseconds {
		t.Errorf("cgroupfs some=%d full=%d, kernel file:\n%s", after.Some.TotalMicroseconds, after.Full.TotalMicroseconds, file)
	}
	t.Logf("pod memory.pressure after 32 MiB over a 31M memory.high:\n%s", file)
}

func podPressure(t *testing.T, fs *FS, pod string) PSI {
	t.Helper()
	m := fs.MemoryFields(pod, FieldPressure)
	if m.PSI == nil || m.PSI.Full == nil || len(m.Errors) > 0 {
		t.Fatalf("pod pressure = %+v, errors %v; want both lines", m.PSI, m.Errors)
	}
	return *m.PSI
}

// kernelPSITotal takes total= of one line of a pressure file, without ParsePSI.
func kernelPSITotal(t *testing.T, file, line string) uint64 {
	t.Helper()
	for _, l := range strings.Split(file, "\n") {
		if !strings.HasPrefix(l, line+" ") {
			continue
		}
		_, v, ok := strings.Cut(l, "total=")
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if !ok || err != nil {
			t.Fatalf("no total in %q", l)
		}
		return n
	}
	t.Fatalf("no %s line in %q", line, file)
	return 0
}

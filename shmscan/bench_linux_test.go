package shmscan

import (
	"path/filepath"
	"testing"
)

// BenchmarkContainerShm is the per-container hot path once the mount
// namespace is cached: stat ns/mnt, then a timed open+statx+fstatfs.
func BenchmarkContainerShm(b *testing.B) {
	requireRoot(b)
	host := filepath.Join(b.TempDir(), "io.containerd.grpc.v1.cri", "sandboxes", randomHex(32), "shm")
	mountTmpfs(b, host, 0, "size=64m")
	c := startContainer(b, host, "", "true")
	s := selfScanner()
	if err := s.Refresh(); err != nil {
		b.Fatal(err)
	}
	if _, _, ok, err := s.ContainerShm([]int{c.pid}); err != nil || !ok {
		b.Fatal(ok, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, _, _, err := s.ContainerShm([]int{c.pid}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRefreshUnchanged is Refresh when the host table did not change:
// one poll(2).
func BenchmarkRefreshUnchanged(b *testing.B) {
	s := selfScanner()
	if err := s.Refresh(); err != nil {
		b.Skip(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Refresh(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseHostTable is what a changed host table costs to parse and
// index (the captured fixture, 23 lines).
func BenchmarkParseHostTable(b *testing.B) {
	data := fixture(b, "host-with-pods-mountinfo.txt")
	b.ReportAllocs()
	for b.Loop() {
		es, err := parseMountinfo(data, nil)
		if err != nil {
			b.Fatal(err)
		}
		buildHostTable(es)
	}
}

// BenchmarkReadParseContainerTable is a cache miss: a new mount namespace's
// mountinfo parsed for its /dev/shm (the captured fixture, 24 lines).
func BenchmarkReadParseContainerTable(b *testing.B) {
	data := fixture(b, "container-runtime-shm-mountinfo.txt")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := devShmEntry(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStatHosts is the steady-state statfs of a known host mount,
// 100 times in one StatHosts, per mount, through the timeout hand-off;
// BenchmarkMeasureAtDirect is the same work in the caller's goroutine: the
// difference is the hand-off's cost.
func BenchmarkStatHosts(b *testing.B) {
	requireRoot(b)
	s, m := benchHostMount(b)
	ms := make([]Mount, 100)
	for i := range ms {
		ms[i] = m
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range s.StatHosts(ms) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ms)), "ns/mount")
}

func BenchmarkMeasureAtDirect(b *testing.B) {
	requireRoot(b)
	s, m := benchHostMount(b)
	root, rel := s.procPath(s.cfg.HostPID, "root"), m.HostPath[1:]
	b.ReportAllocs()
	for b.Loop() {
		if r := measureAt(root, rel); r.err != nil {
			b.Fatal(r.err)
		}
	}
}

func benchHostMount(b *testing.B) (*Scanner, Mount) {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "kubelet", "pods", randomHex(16), "volumes", "kubernetes.io~empty-dir", "dshm")
	mountTmpfs(b, dir, 0, "size=64m")
	s := selfScanner()
	r := measureAt(s.procPath(s.cfg.HostPID, "root"), dir[1:])
	if r.err != nil {
		b.Fatal(r.err)
	}
	return s, Mount{HostPath: dir, Device: r.device}
}

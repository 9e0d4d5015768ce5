package cgroupfs

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// benchTree is a real 1000 pods x 3 containers tree in this machine's memory
// hierarchy, built once for all benchmarks and removed by TestMain.
var benchTree struct {
	once  sync.Once
	fs    *FS
	root  string
	dirs  []string // creation order
	paths []string // every pod and container cgroup
	skip  string
}

const benchPods, benchContainers = 1000, 3

func setupBenchTree(b *testing.B) (*FS, []string) {
	benchTree.once.Do(buildBenchTree)
	if benchTree.skip != "" {
		b.Skip(benchTree.skip)
	}
	return benchTree.fs, benchTree.paths
}

func buildBenchTree() {
	if os.Geteuid() != 0 {
		benchTree.skip = "needs root to build a real cgroup tree"
		return
	}
	fs, err := NewFS("/proc")
	if err != nil {
		benchTree.skip = "no memory hierarchy: " + err.Error()
		return
	}
	benchTree.fs = fs
	benchTree.root = fmt.Sprintf("/shmwatch-bench-%d", os.Getpid())
	mk := func(p string, parent bool) error {
		if err := os.Mkdir(fs.abs(p), 0o755); err != nil {
			return err
		}
		benchTree.dirs = append(benchTree.dirs, p)
		if parent && fs.Hierarchy.Mode == ModeV2 {
			return os.WriteFile(fs.abs(p)+"/cgroup.subtree_control", []byte("+memory"), 0)
		}
		return nil
	}
	qos := benchTree.root + "/kubepods/burstable"
	for _, p := range []string{benchTree.root, benchTree.root + "/kubepods", qos} {
		if err := mk(p, true); err != nil {
			benchTree.skip = "cannot build bench tree: " + err.Error()
			return
		}
	}
	for i := range benchPods {
		pod := fmt.Sprintf("%s/pod%08x-0000-4000-8000-%012x", qos, i, i)
		if err := mk(pod, true); err != nil {
			benchTree.skip = "cannot build bench tree: " + err.Error()
			return
		}
		benchTree.paths = append(benchTree.paths, pod)
		for c := range benchContainers {
			ctr := fmt.Sprintf("%s/%s%056x", pod, strings.Repeat("c", 8), i*benchContainers+c)
			if err := mk(ctr, false); err != nil {
				benchTree.skip = "cannot build bench tree: " + err.Error()
				return
			}
			benchTree.paths = append(benchTree.paths, ctr)
		}
	}
}

// removeBenchTree runs from TestMain after all tests and benchmarks.
func removeBenchTree() {
	for i := len(benchTree.dirs) - 1; i >= 0; i-- {
		_ = syscall.Rmdir(benchTree.fs.abs(benchTree.dirs[i]))
	}
}

// BenchmarkMemory reads Memory for every pod and container cgroup of the
// tree (one op = one scrape of 4000 cgroups).
func BenchmarkMemory(b *testing.B) {
	fs, paths := setupBenchTree(b)
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range paths {
			if m := fs.MemoryFields(p, FieldsAll); len(m.Errors) > 0 {
				b.Fatal(m.Errors)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(paths)), "ns/cgroup")
}

// ScrapePodFields and ScrapeContainerFields are what the agent's metrics need
// (see agent.Config.ScrapeOnly): no peak, and events only for containers.
const (
	benchPodFields       = FieldStat | FieldLimit | FieldUsage | FieldKernel | FieldKmemLimit | FieldDying
	benchContainerFields = benchPodFields | FieldEvents
)

// BenchmarkMemoryScrape reads what a scrape needs of every pod and
// container cgroup of the tree (one op = one scrape of 4000 cgroups).
func BenchmarkMemoryScrape(b *testing.B) {
	fs, paths := setupBenchTree(b)
	b.ReportAllocs()
	for b.Loop() {
		for i, p := range paths {
			want := benchContainerFields
			if i%(benchContainers+1) == 0 {
				want = benchPodFields
			}
			if m := fs.MemoryFields(p, want); len(m.Errors) > 0 {
				b.Fatal(m.Errors)
			}
		}
		fs.Prune()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(paths)), "ns/cgroup")
}

// BenchmarkMemoryFloor is the floor BenchmarkMemory is held to: read only
// memory.stat, the limit and the usage of each cgroup, parse nothing.
func BenchmarkMemoryFloor(b *testing.B) {
	fs, paths := setupBenchTree(b)
	files := []string{"memory.stat", "memory.limit_in_bytes", "memory.usage_in_bytes"}
	if fs.Hierarchy.Mode == ModeV2 {
		files = []string{"memory.stat", "memory.max", "memory.current"}
	}
	buf := make([]byte, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range paths {
			for _, f := range files {
				fd, err := syscall.Open(fs.abs(p)+"/"+f, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = syscall.Read(fd, buf)
				syscall.Close(fd)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(paths)), "ns/cgroup")
}

func BenchmarkPods(b *testing.B) {
	fs, _ := setupBenchTree(b)
	b.ReportAllocs()
	for b.Loop() {
		pods, err := fs.Pods(benchTree.root)
		if err != nil || len(pods) != benchPods {
			b.Fatalf("%d pods, %v", len(pods), err)
		}
	}
}

// BenchmarkNode measures the v1 live-directory walk over the whole hierarchy
// (the tree plus whatever the host has).
func BenchmarkNode(b *testing.B) {
	fs, _ := setupBenchTree(b)
	b.ReportAllocs()
	for b.Loop() {
		if n := fs.Node(); n.LiveMemcgs == nil {
			b.Fatal(n.Errors)
		}
	}
}

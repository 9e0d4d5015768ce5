package cgroupfs

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestHierarchyFromCapturedMountinfo(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("mountinfo parsing is Linux only")
	}
	memCtrl := func(string) ([]byte, error) { return []byte("cpuset cpu io memory pids\n"), nil }
	noMem := func(string) ([]byte, error) { return []byte("cpu io pids\n"), nil }
	tests := []struct {
		file string
		ctrl func(string) ([]byte, error)
		want Hierarchy
		err  error
	}{
		{"host-v1/self.mountinfo", memCtrl, Hierarchy{Mode: ModeHybrid, MemoryRoot: "/sys/fs/cgroup/memory", UnifiedRoot: "/sys/fs/cgroup/unified"}, nil},
		{"vm-v1/self.mountinfo", memCtrl, Hierarchy{Mode: ModeV1, MemoryRoot: "/sys/fs/cgroup/memory"}, nil},
		{"vm-v2/self.mountinfo", memCtrl, Hierarchy{Mode: ModeV2, MemoryRoot: "/sys/fs/cgroup"}, nil},
		{"vm-v2/self.mountinfo", noMem, Hierarchy{}, ErrNoMemory},
		// In a cgroup namespace: the hierarchies' roots show as "/.." and
		// "/../..", the namespace's own cgroup2 mount at /tmp/cgns-own as "/".
		// A pod on a v2 node: its own cgroup namespace's /sys/fs/cgroup ("/")
		// comes first, the host's tree at /host/sys/fs/cgroup is "/../../../..".
		{"v2node-pod/self.mountinfo", memCtrl, Hierarchy{Mode: ModeV2, MemoryRoot: "/host/sys/fs/cgroup"}, nil},
		{"host-cgroupns/self.mountinfo", memCtrl, Hierarchy{Mode: ModeHybrid, MemoryRoot: "/sys/fs/cgroup/memory", UnifiedRoot: "/sys/fs/cgroup/unified"}, nil},
	}
	for _, tt := range tests {
		mounts, err := parseMountinfo(fixture(t, tt.file))
		if err != nil {
			t.Fatal(err)
		}
		got, err := hierarchyFromMounts(mounts, tt.ctrl)
		if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
			t.Errorf("%s: err = %v, want %v", tt.file, err, tt.err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got)\n%s", tt.file, diff)
		}
	}
}

// TestDetectHierarchyProcRoot points DetectHierarchy at a fake proc root.
func TestDetectHierarchyProcRoot(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("mountinfo parsing is Linux only")
	}
	proc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proc, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proc, "self", "mountinfo"), fixture(t, "vm-v1/self.mountinfo"), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := DetectHierarchy(proc)
	if err != nil || h.Mode != ModeV1 {
		t.Errorf("DetectHierarchy = %+v, %v", h, err)
	}
	if _, err := DetectHierarchy(filepath.Join(proc, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing proc: err = %v", err)
	}
}

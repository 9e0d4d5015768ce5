package cgroupfs

import (
	"os"
	"path/filepath"
	"testing"
)

// A cgroup asked for nothing is not opened: a container that is gone
// gives no error with want 0, and its "cgroup" error with any field.
func TestNoFieldsOpensNothing(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "pod1"), 0o755); err != nil {
		t.Fatal(err)
	}
	fs := NewFSAt(Hierarchy{Mode: ModeV1, MemoryRoot: root}, "/proc")
	pod := Pod{Path: "/pod1", Containers: []Container{{ID: "gone", Path: "/pod1/gone"}}}
	for _, tc := range []struct {
		want   Fields
		errors int
	}{{0, 0}, {FieldStat, 1}} {
		if m := fs.MemoryFields("/pod1/gone", tc.want); len(m.Errors) != tc.errors {
			t.Errorf("MemoryFields(want %d): errors %v, want %d", tc.want, m.Errors, tc.errors)
		}
		_, ctrs := fs.PodMemory(pod, 0, func(Container) Fields { return tc.want })
		if len(ctrs[0].Errors) != tc.errors {
			t.Errorf("PodMemory(container want %d): errors %v, want %d", tc.want, ctrs[0].Errors, tc.errors)
		}
	}
}

package cgroupfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestParseSlabinfo(t *testing.T) {
	// Captured: /proc/slabinfo of this 6.18 host.
	caches, err := ParseSlabinfo(fixture(t, "host-v1/proc.slabinfo"))
	if err != nil {
		t.Fatal(err)
	}
	if len(caches) != 232 {
		t.Errorf("%d caches, want the capture's 232 rows", len(caches))
	}
	first := SlabCache{Name: "btrfs_delayed_node", ObjSize: 312, ObjPerSlab: 13, PagesPerSlab: 1}
	if caches[0] != first {
		t.Errorf("first row %+v, want %+v", caches[0], first)
	}
	// Captured in the VM rig under v1: /proc/slabinfo of 6.1 and 5.10.
	for file, rows := range map[string]int{"vm-v1/proc.slabinfo": 153, "vm510-v1/proc.slabinfo": 126} {
		if c, err := ParseSlabinfo(fixture(t, file)); err != nil || len(c) != rows {
			t.Errorf("%s: %d caches, %v; want %d", file, len(c), err, rows)
		}
	}
	// Captured: memory.kmem.slabinfo of a v1 cgroup on 6.18, 6.1 and 5.10 (empty since 5.9).
	for _, file := range []string{"host-v1/cg.memory.kmem.slabinfo", "vm-v1/cg.memory.kmem.slabinfo", "vm510-v1/cg.memory.kmem.slabinfo"} {
		if c, err := ParseSlabinfo(fixture(t, file)); c != nil || err != nil {
			t.Errorf("empty cgroup slabinfo %s: %v, %v; want no caches, no error", file, c, err)
		}
	}
	for _, bad := range []string{
		"slabinfo - version: 1.1\n",
		"slabinfo - version: 2.1\nkmalloc-64 1 2 64 64 1 : tunables 0 0 0 : slabdata 1 1\n",
		"slabinfo - version: 2.1\nkmalloc-64 1 2 64 64 1 : tunables 0 0 0 : slabdata x 1 0\n",
		"kmalloc-64 1 2 64 64 1 : tunables 0 0 0 : slabdata 1 1 0\n",
	} {
		if _, err := ParseSlabinfo([]byte(bad)); !errors.Is(err, ErrFileParse) {
			t.Errorf("ParseSlabinfo(%q) err = %v, want ErrFileParse", bad, err)
		}
	}
	c := SlabCache{NumSlabs: 3, PagesPerSlab: 2}
	if c.Bytes() != 6*uint64(os.Getpagesize()) {
		t.Errorf("Bytes = %d", c.Bytes())
	}
}

func TestNodeSlabinfo(t *testing.T) {
	proc := t.TempDir()
	if err := os.WriteFile(filepath.Join(proc, "slabinfo"), fixture(t, "host-v1/proc.slabinfo"), 0o400); err != nil {
		t.Fatal(err)
	}
	caches, err := (&FS{ProcRoot: proc}).NodeSlabinfo()
	if err != nil || len(caches) != 232 {
		t.Fatalf("NodeSlabinfo: %d caches, %v", len(caches), err)
	}
	if _, err := (&FS{ProcRoot: t.TempDir()}).NodeSlabinfo(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing /proc/slabinfo: err = %v, want ErrNotExist", err)
	}
}

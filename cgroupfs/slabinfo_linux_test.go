package cgroupfs

import (
	"os"
	"testing"

	"github.com/shmwatch/shmwatch/internal/podtree"
	"github.com/shmwatch/shmwatch/internal/realkernel"
)

// TestCgroupSlabinfoEIO: 3.10's memory.kmem.slabinfo of a memcg without
// kmem accounting fails its read with EIO (seed 004). No kernel here has
// that behaviour, so the file is served through FUSE, built from the
// kernel source (3.10 mm/memcontrol.c mem_cgroup_slabinfo_read: -EIO when
// !memcg_can_account_kmem), not captured.
func TestCgroupSlabinfoEIO(t *testing.T) {
	if os.Geteuid() != 0 {
		realkernel.Skip(t, "needs root to mount FUSE")
	}
	dir := podtree.MountEIOFile(t, "memory.kmem.slabinfo")
	fs := NewFSAt(Hierarchy{Mode: ModeV1, MemoryRoot: dir}, "/proc")
	state, caches, err := fs.CgroupSlabinfo("/")
	if state != SlabinfoEIO || caches != nil || err != nil {
		t.Fatalf("CgroupSlabinfo = %q, %v, %v; want eio, no caches, no error", state, caches, err)
	}
	dir2 := t.TempDir()
	if state, _, err := NewFSAt(Hierarchy{Mode: ModeV1, MemoryRoot: dir2}, "/proc").CgroupSlabinfo("/"); state != SlabinfoAbsent || err != nil {
		t.Errorf("no file: %q, %v; want absent", state, err)
	}
}

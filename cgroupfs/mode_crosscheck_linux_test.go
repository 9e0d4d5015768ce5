package cgroupfs

import (
	"testing"

	"github.com/containerd/cgroups/v3"

	"github.com/shmwatch/shmwatch/internal/realkernel"
)

// TestDetectHierarchyAgreesWithContainerd cross-checks our mount-table
// based detection with containerd/cgroups' statfs-based one on the real host
// (and, through test/vm.sh, on the VM rig's pure v2 and v1 kernels). We do
// not use cgroups.Mode() in production: it looks only at /sys/fs/cgroup and
// caches its answer process-wide, while shmwatch must honour --host-root.
func TestDetectHierarchyAgreesWithContainerd(t *testing.T) {
	theirs := cgroups.Mode()
	if theirs == cgroups.Unavailable {
		realkernel.Skip(t, "containerd/cgroups finds no cgroup filesystem at /sys/fs/cgroup")
	}
	h, err := DetectHierarchy("/proc")
	if err != nil {
		t.Fatalf("DetectHierarchy: %v (containerd/cgroups says mode %d)", err, theirs)
	}
	want := map[cgroups.CGMode]Mode{cgroups.Legacy: ModeV1, cgroups.Hybrid: ModeHybrid, cgroups.Unified: ModeV2}[theirs]
	if h.Mode != want {
		t.Fatalf("DetectHierarchy says %s, containerd/cgroups says %s", h.Mode, want)
	}
	t.Logf("both say %s; memory root %s", h.Mode, h.MemoryRoot)
}

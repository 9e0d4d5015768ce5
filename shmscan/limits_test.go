package shmscan

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	mi = uint64(1) << 20
	gi = uint64(1) << 30
)

func bp(b bool) *bool { return &b }

// The seeds' cases (see docs/shm-limits.md): what the kubelet sizes a memory
// emptyDir to.
func TestExpectedEmptyDirSize(t *testing.T) {
	const nodeRAM = 29 * gi // seed 000's node: df shows ~14.7G for an unsized emptyDir
	halfRAM := nodeRAM / 2
	alloc := 28 * gi
	tests := []struct {
		name                        string
		version                     string
		gate                        *bool
		sizeLimit, podLimit, nodeAl *uint64
		want                        uint64
		wantSized                   bool
	}{
		{"1.19 sizeLimit 256Mi: half of RAM, sizeLimit only by eviction", "v1.19.2", nil, u64p(256 * mi), nil, &alloc, halfRAM, false},
		{"1.19 gate forced on: the gate does not exist yet", "v1.19.2", bp(true), u64p(256 * mi), nil, &alloc, halfRAM, false},
		{"1.20 gate default off", "v1.20.4", nil, u64p(256 * mi), nil, &alloc, halfRAM, false},
		{"1.21 gate off explicitly", "v1.21.0", bp(false), u64p(256 * mi), u64p(128 * mi), &alloc, halfRAM, false},
		{"1.20 gate on: sizeLimit", "v1.20.4", bp(true), u64p(256 * mi), nil, &alloc, 256 * mi, true},
		{"1.22 default on: sizeLimit 256Mi", "v1.22.2", nil, u64p(256 * mi), nil, &alloc, 256 * mi, true},
		{"1.22 sizeLimit 256Mi capped by pod limit 128Mi", "v1.22.2", nil, u64p(256 * mi), u64p(128 * mi), &alloc, 128 * mi, true},
		{"1.22 no sizeLimit, pod limit 128Mi", "v1.22.2", nil, nil, u64p(128 * mi), &alloc, 128 * mi, true},
		{"1.22 no limits: node allocatable", "v1.22.2", nil, nil, nil, &alloc, alloc, true},
		{"1.22 gate off explicitly", "1.22.0", bp(false), nil, u64p(128 * mi), &alloc, halfRAM, false},
		{"1.22 nothing known: no size=", "v1.22.2", nil, nil, nil, nil, halfRAM, false},
		{"1.22 sizeLimit above allocatable", "v1.22.2", nil, u64p(64 * gi), nil, &alloc, alloc, true},
		{"1.22 zero sizeLimit ignored", "v1.22.2", nil, u64p(0), u64p(128 * mi), &alloc, 128 * mi, true},
		{"1.22 odd size rounds up to a page", "v1.22.2", nil, u64p(1000), nil, &alloc, 4096, true},
		{"1.32 GA: gate=false is ignored", "v1.32.1", bp(false), u64p(256 * mi), nil, &alloc, 256 * mi, true},
		{"vendor suffix", "v1.28.3-eks-4f4795d", nil, nil, u64p(128 * mi), &alloc, 128 * mi, true},
		{"unparseable version, gate given", "garbage", bp(true), u64p(256 * mi), nil, &alloc, 256 * mi, true},
		{"unparseable version, no gate: unknown", "garbage", nil, u64p(256 * mi), nil, &alloc, 0, false},
	}
	for _, tt := range tests {
		size, sized := ExpectedEmptyDirSize(tt.version, tt.gate, tt.sizeLimit, tt.podLimit, tt.nodeAl, nodeRAM)
		if size != tt.want || sized != tt.wantSized {
			t.Errorf("%s: got (%d, %v), want (%d, %v)", tt.name, size, sized, tt.want, tt.wantSized)
		}
	}
}

// The seeds' observations as Bind inputs: which limit a writer hits first.
func TestBind(t *testing.T) {
	tests := []struct {
		name string
		in   Inputs
		want Verdict
	}{
		{"64 MiB runtime shm filled by dd: ENOSPC",
			Inputs{Used: 64 * mi, TmpfsAvailable: 0},
			Verdict{Headroom: map[Limit]int64{LimitTmpfs: 0}, Binding: LimitTmpfs}},
		{"1.19 half-RAM tmpfs, sizeLimit 256Mi, empty: eviction binds",
			Inputs{Used: 0, TmpfsAvailable: 14 * gi, SizeLimit: u64p(256 * mi)},
			Verdict{Headroom: map[Limit]int64{LimitTmpfs: int64(14 * gi), LimitEviction: int64(256 * mi)}, Binding: LimitEviction}},
		{"1.19 after writing past sizeLimit: evicting (exit 137)",
			Inputs{Used: 300 * mi, TmpfsAvailable: 14*gi - 300*mi, SizeLimit: u64p(256 * mi)},
			Verdict{Headroom: map[Limit]int64{LimitTmpfs: int64(14*gi - 300*mi), LimitEviction: -int64(44 * mi)}, Binding: LimitEviction}},
		{"1.22 tmpfs sized to sizeLimit 256Mi and full: tie, ENOSPC comes first",
			Inputs{Used: 256 * mi, TmpfsAvailable: 0, SizeLimit: u64p(256 * mi)},
			Verdict{Headroom: map[Limit]int64{LimitTmpfs: 0, LimitEviction: 0}, Binding: LimitTmpfs}},
		{"1.22 no sizeLimit, 128Mi limit, tmpfs 128Mi, 120Mi written: the memcg fills first (a 160 MiB write is OOM-killed)",
			Inputs{Used: 120 * mi, TmpfsAvailable: 8 * mi, PodMemoryLimit: u64p(128 * mi), PodWorkingSet: u64p(126 * mi)},
			Verdict{Headroom: map[Limit]int64{LimitTmpfs: int64(8 * mi), LimitMemcg: int64(2 * mi)}, Binding: LimitMemcg}},
		{"1.22 sizeLimit 256Mi capped at 128Mi by the pod limit",
			Inputs{Used: 0, TmpfsAvailable: 128 * mi, PodMemoryLimit: u64p(128 * mi), PodWorkingSet: u64p(5 * mi), SizeLimit: u64p(256 * mi)},
			Verdict{Headroom: map[Limit]int64{LimitTmpfs: int64(128 * mi), LimitMemcg: int64(123 * mi), LimitEviction: int64(256 * mi)}, Binding: LimitMemcg}},
		{"limit known, working set unknown: memcg does not apply",
			Inputs{Used: 1, TmpfsAvailable: 10, PodMemoryLimit: u64p(5)},
			Verdict{Headroom: map[Limit]int64{LimitTmpfs: 10}, Binding: LimitTmpfs}},
		{"huge numbers saturate instead of wrapping",
			Inputs{Used: math.MaxUint64, TmpfsAvailable: math.MaxUint64, PodMemoryLimit: u64p(0), PodWorkingSet: u64p(math.MaxUint64), SizeLimit: u64p(0)},
			Verdict{Headroom: map[Limit]int64{LimitTmpfs: math.MaxInt64, LimitMemcg: math.MinInt64, LimitEviction: math.MinInt64}, Binding: LimitMemcg}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, Bind(tt.in)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
}

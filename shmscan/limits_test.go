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

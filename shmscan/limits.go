package shmscan

import "math"

// Inputs are what is known about one pod shm when judging which limit a
// writer hits first. A nil pointer means "not known" (or "no limit" for
// PodMemoryLimit and SizeLimit); it never stands for 0.
type Inputs struct {
	Used           uint64  // statfs used
	TmpfsAvailable uint64  // statfs available
	PodMemoryLimit *uint64 // nil = no limit
	PodWorkingSet  *uint64 // nil = unknown
	SizeLimit      *uint64 // emptyDir sizeLimit from pod metadata; nil unknown/none
}

// Verdict is the headroom left before each limit that applies, and which one
// a writer of the shm runs into first.
type Verdict struct {
	Headroom map[Limit]int64 // only for limits that apply; may be negative (evicting/over)
	Binding  Limit           // smallest headroom; "" when none applies
}

// bindOrder breaks ties. On the same page the tmpfs block accounting fails
// (ENOSPC) before the page is charged to the memcg (OOM), and eviction is
// last because the kubelet only checks usage periodically.
var bindOrder = []Limit{LimitTmpfs, LimitMemcg, LimitEviction}

// Bind computes the headroom before each limit a shm writer can hit:
//   - tmpfs: statfs available; the write fails with ENOSPC at 0;
//   - memcg: pod memory limit minus pod working set, when both are known:
//     tmpfs pages are charged to the writer's memcg and cannot be reclaimed
//     without swap, so every byte written moves the pod toward the OOM kill;
//   - eviction: emptyDir sizeLimit minus used, when sizeLimit is known: the
//     kubelet evicts the pod once usage exceeds it.
//
// The binding limit is the one with the smallest headroom.
func Bind(in Inputs) Verdict {
	v := Verdict{Headroom: map[Limit]int64{LimitTmpfs: clampInt64(in.TmpfsAvailable)}}
	if in.PodMemoryLimit != nil && in.PodWorkingSet != nil {
		v.Headroom[LimitMemcg] = diff(*in.PodMemoryLimit, *in.PodWorkingSet)
	}
	if in.SizeLimit != nil {
		v.Headroom[LimitEviction] = diff(*in.SizeLimit, in.Used)
	}
	for _, l := range bindOrder {
		h, ok := v.Headroom[l]
		if !ok {
			continue
		}
		if v.Binding == "" || h < v.Headroom[v.Binding] {
			v.Binding = l
		}
	}
	return v
}

func clampInt64(u uint64) int64 {
	if u > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(u)
}

// diff is a - b without wrapping: saturated at the int64 range.
func diff(a, b uint64) int64 {
	if a >= b {
		return clampInt64(a - b)
	}
	if b-a > math.MaxInt64 {
		return math.MinInt64
	}
	return -int64(b - a)
}

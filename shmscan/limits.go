package shmscan

import (
	"math"
	"strconv"
	"strings"
)

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

// GateEnabled says whether the kubelet's SizeMemoryBackedVolumes feature is on
// for a cluster of serverVersion ("v1.22.2", "1.30.1-eks-…"), given the
// feature gate as configured (nil = not set, use the default):
//
//	< 1.20        the gate does not exist: off
//	1.20 – 1.21   alpha, default off
//	1.22 – 1.31   beta, default on
//	>= 1.32       GA, locked on (the setting is ignored)
//
// known is false when the version does not parse and no gate is given.
func GateEnabled(serverVersion string, gate *bool) (enabled, known bool) {
	major, minor, ok := parseKubeVersion(serverVersion)
	if !ok {
		if gate != nil {
			return *gate, true
		}
		return false, false
	}
	switch {
	case major < 1 || (major == 1 && minor < 20):
		return false, true
	case major == 1 && minor >= 32 || major > 1:
		return true, true
	case gate != nil:
		return *gate, true
	default:
		return minor >= 22, true
	}
}

// parseKubeVersion reads major and minor from "v1.22.2", "1.19", "v1.22+".
func parseKubeVersion(v string) (major, minor int, ok bool) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	majS, rest, found := strings.Cut(v, ".")
	if !found {
		return 0, 0, false
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	maj, err1 := strconv.Atoi(majS)
	min, err2 := strconv.Atoi(rest[:end])
	if err1 != nil || err2 != nil || maj < 0 || min < 0 {
		return 0, 0, false
	}
	return maj, min, true
}

// tmpfsPage is the page size tmpfs rounds sizes to on the platforms
// Kubernetes nodes run (amd64, arm64 with 4 KiB pages).
const tmpfsPage = 4096

// ExpectedEmptyDirSize is the size of the tmpfs the kubelet mounts for a
// memory emptyDir, and whether the kubelet passes size= at all (sized).
//
// With the gate off (see GateEnabled) the kubelet mounts tmpfs without size=,
// so the kernel's default applies: half of the node's RAM (nodeRAM is
// MemTotal in bytes); sizeLimit is then enforced only by eviction.
// With the gate on it follows the kubelet's calculateEmptyDirMemorySize: start
// from node allocatable, take the pod memory limit if it is positive and not
// larger, then the sizeLimit if it is positive and not larger. If no value is
// known at all the kubelet passes no size=.
//
// size is 0 and sized false when the version does not parse and no gate is
// given: the answer is unknown, not "unsized".
func ExpectedEmptyDirSize(serverVersion string, gate *bool, sizeLimit, podLimit, nodeAllocatable *uint64, nodeRAM uint64) (size uint64, sized bool) {
	on, known := GateEnabled(serverVersion, gate)
	if !known {
		return 0, false
	}
	if !on {
		return nodeRAM / 2 / tmpfsPage * tmpfsPage, false
	}
	var limit *uint64
	for _, c := range []*uint64{nodeAllocatable, podLimit, sizeLimit} {
		if c != nil && *c > 0 && (limit == nil || *c <= *limit) {
			limit = c
		}
	}
	if limit == nil {
		return nodeRAM / 2 / tmpfsPage * tmpfsPage, false
	}
	return roundUpPage(*limit), true
}

// roundUpPage mirrors tmpfs turning size= into whole pages.
func roundUpPage(n uint64) uint64 {
	if n > math.MaxUint64-(tmpfsPage-1) {
		return n / tmpfsPage * tmpfsPage
	}
	return (n + tmpfsPage - 1) / tmpfsPage * tmpfsPage
}

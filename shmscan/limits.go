package shmscan

import (
	"math"
	"strconv"
	"strings"
)

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

package agent

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/shmwatch/shmwatch/agent/podmeta"
	"github.com/shmwatch/shmwatch/shmscan"
)

// TmpfsSize says which size the kubelet gives a memory emptyDir and which
// input decided it, so that a size nobody asked for ("I set sizeLimit
// 256Mi, why is it 128M?", "why does df say 14.7G?") explains itself.
type TmpfsSize struct {
	// ExpectedBytes is the size the kubelet would give the tmpfs; nil
	// when it cannot be known (Unknown says why).
	ExpectedBytes *uint64 `json:"expected_bytes"`
	// DecidedBy is the input that set it: "sizeLimit", "limits.memory",
	// "allocatable" (the node's allocatable memory), or "half of RAM"
	// (the kubelet passes no size=, the kernel's tmpfs default).
	DecidedBy string `json:"decided_by,omitempty"`
	// Sized is whether the kubelet passes size= at all
	// (SizeMemoryBackedVolumes on). Without it df shows half the node's
	// RAM and only eviction enforces sizeLimit.
	Sized   bool   `json:"sized"`
	Unknown string `json:"unknown,omitempty"`
}

// The inputs a memory emptyDir's size comes from, as DecidedBy names them.
const (
	bySizeLimit   = "sizeLimit"
	byMemoryLimit = "limits.memory"
	byAllocatable = "allocatable"
	byHalfRAM     = "half of RAM"
)

// sizeInputs is what the kubelet sizes a memory emptyDir from. A nil
// pointer is "not known" (or "no limit" for PodLimit and SizeLimit).
type sizeInputs struct {
	ServerVersion string
	Gate          *bool // the kubelet's SizeMemoryBackedVolumes setting; nil = its default
	SizeLimit     *uint64
	PodLimit      *uint64 // the pod cgroup's limit as the kubelet computes it
	Allocatable   *uint64
	MemTotal      *uint64 // /proc/meminfo MemTotal
}

// ExplainEmptyDirSize works out a memory emptyDir's size the way the
// kubelet does. With SizeMemoryBackedVolumes off (GateEnabled) it mounts
// tmpfs without size=, so the kernel's default applies: half of MemTotal,
// and sizeLimit is enforced only by eviction. With it on it follows the
// kubelet's calculateEmptyDirMemorySize: start from node allocatable, take
// the pod memory limit if it is positive and not larger, then the sizeLimit
// if it is positive and not larger (a tie goes to the later input). With no
// value known at all the kubelet passes no size=.
func ExplainEmptyDirSize(in sizeInputs) TmpfsSize {
	on, known := GateEnabled(in.ServerVersion, in.Gate)
	if !known {
		return TmpfsSize{Unknown: "no Kubernetes version (needs the API): whether the kubelet sizes memory emptyDirs (SizeMemoryBackedVolumes) is unknown"}
	}
	if !on {
		return halfOfRAM(in.MemTotal)
	}
	if in.Allocatable == nil {
		return TmpfsSize{Sized: true, Unknown: "node allocatable memory unknown (needs the API)"}
	}
	size, by := *in.Allocatable, byAllocatable
	for _, c := range []struct {
		v  *uint64
		by string
	}{{in.PodLimit, byMemoryLimit}, {in.SizeLimit, bySizeLimit}} {
		if c.v != nil && *c.v > 0 && *c.v <= size {
			size, by = *c.v, c.by
		}
	}
	if size == 0 { // allocatable 0 and nothing else: the kubelet passes no size=
		return halfOfRAM(in.MemTotal)
	}
	size = roundUpPage(size)
	return TmpfsSize{ExpectedBytes: &size, DecidedBy: by, Sized: true}
}

func halfOfRAM(memTotal *uint64) TmpfsSize {
	if memTotal == nil {
		return TmpfsSize{DecidedBy: byHalfRAM, Unknown: "node RAM unknown (/proc/meminfo unreadable)"}
	}
	half := *memTotal / 2 / tmpfsPage * tmpfsPage
	return TmpfsSize{ExpectedBytes: &half, DecidedBy: byHalfRAM}
}

// explainTmpfsSizes explains the size of every memory emptyDir, once the
// node's facts (version, allocatable, MemTotal) are in the snapshot.
func (c *Collector) explainTmpfsSizes(col *collection) {
	for i := range col.snap.Pods {
		p := &col.snap.Pods[i]
		meta, hasMeta := c.podMeta(p.UID)
		for j := range p.Shm {
			explainSize(&p.Shm[j], meta, hasMeta, &col.snap.Node)
		}
	}
}

// explainSize adds the size explanation to a memory emptyDir of a pod.
func explainSize(s *Shm, meta podmeta.Pod, hasMeta bool, n *NodeReport) {
	if s.Source != string(shmscan.SourceEmptyDir) {
		return
	}
	if !hasMeta || meta.Source != podmeta.SourceAPI {
		s.SizeExplained = &TmpfsSize{Unknown: "no pod spec from the API: sizeLimit and limits.memory unknown"}
		return
	}
	in := sizeInputs{ServerVersion: n.KubernetesVersion, PodLimit: meta.MemoryLimit,
		Allocatable: n.AllocatableMemory, MemTotal: n.MemTotal}
	for _, v := range meta.MemoryVolumes {
		if v.Name == s.Volume {
			in.SizeLimit = v.SizeLimit
		}
	}
	e := ExplainEmptyDirSize(in)
	s.SizeExplained = &e
}

// sizeNote is the table's explanation of a tmpfs size, e.g.
// "limits.memory; sizeLimit 256Mi" or "expected 256Mi by sizeLimit".
func sizeNote(s *Shm) string {
	e := s.SizeExplained
	switch {
	case e == nil:
		return ""
	case e.ExpectedBytes == nil:
		return "size reason unknown"
	case s.Size != nil && *s.Size != *e.ExpectedBytes:
		return "expected " + humanBytes(*e.ExpectedBytes) + " by " + e.DecidedBy
	}
	note := e.DecidedBy
	if s.SizeLimit != nil && e.DecidedBy != bySizeLimit {
		note += "; sizeLimit " + humanBytes(*s.SizeLimit)
	}
	return note
}

// tmpfsSizeFindings finds memory emptyDirs whose size is not what the pod
// spec seems to say: a sizeLimit silently cut by the memory limit, and a
// tmpfs of half the node's RAM (df lies; only eviction enforces sizeLimit).
func tmpfsSizeFindings(s *Snapshot) []Finding {
	var out []Finding
	for i := range s.Pods {
		p := &s.Pods[i]
		for j := range p.Shm {
			sh := &p.Shm[j]
			if f := tmpfsSizeFinding(p, sh); f.Check != "" {
				out = append(out, f)
			}
		}
	}
	return out
}

func tmpfsSizeFinding(p *Pod, sh *Shm) Finding {
	e := sh.SizeExplained
	if e == nil || e.ExpectedBytes == nil {
		return Finding{}
	}
	vol := podName(p) + " emptyDir " + sh.Volume
	switch {
	case e.DecidedBy == byMemoryLimit && sh.SizeLimit != nil:
		return Finding{Check: "tmpfs-size", Severity: SeverityWarning,
			Message: fmt.Sprintf("%s: sizeLimit %s is cut to %s by limits.memory: the tmpfs is %s, and filling it OOM-kills the writer",
				vol, humanBytes(*sh.SizeLimit), humanBytes(*e.ExpectedBytes), humanBytes(*e.ExpectedBytes)),
			Action: "set sizeLimit below limits.memory minus the pod's other memory, or raise limits.memory"}
	case e.DecidedBy == byHalfRAM && sh.SizeLimit != nil:
		return Finding{Check: "tmpfs-size", Severity: SeverityWarning,
			Message: fmt.Sprintf("%s: tmpfs is half the node's RAM (%s, no size=: SizeMemoryBackedVolumes off); df lies, sizeLimit %s is enforced only by eviction",
				vol, humanBytes(*e.ExpectedBytes), humanBytes(*sh.SizeLimit)),
			Action: "enable SizeMemoryBackedVolumes (Kubernetes >= 1.22, GA in 1.32), or keep writers well below sizeLimit"}
	case e.DecidedBy == byHalfRAM:
		return Finding{Check: "tmpfs-size", Severity: SeverityInfo,
			Message: fmt.Sprintf("%s: tmpfs is half the node's RAM (%s, no size=); only the pod's memory limit stops a writer", vol, humanBytes(*e.ExpectedBytes))}
	}
	return Finding{}
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

// roundUpPage mirrors tmpfs turning size= into whole pages.
func roundUpPage(n uint64) uint64 {
	if n > math.MaxUint64-(tmpfsPage-1) {
		return n / tmpfsPage * tmpfsPage
	}
	return (n + tmpfsPage - 1) / tmpfsPage * tmpfsPage
}

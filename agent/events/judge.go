package events

import (
	"fmt"
	"strings"
	"time"
)

// Reason is the reason of an event, what `kubectl get events` shows.
type Reason string

// The reasons shmwatch reports, all of type Warning.
const (
	ShmNearlyFull        Reason = "ShmNearlyFull"
	ShmFull              Reason = "ShmFull"
	ShmWillOOMBeforeFull Reason = "ShmWillOOMBeforeFull"
	OOMKilledWithShm     Reason = "OOMKilledWithShm"
)

// Reasons lists every Reason, in the order metrics show them.
var Reasons = []Reason{ShmNearlyFull, ShmFull, ShmWillOOMBeforeFull, OOMKilledWithShm}

// PodRef names the pod an event is about.
type PodRef struct {
	UID, Namespace, Name string
}

// Notice is one event to post on a pod.
type Notice struct {
	Pod    PodRef
	Reason Reason
	Note   string
}

// Thresholds are when a shm or a kill is worth telling.
type Thresholds struct {
	// NearlyFull is the used fraction of a tmpfs (and of the memcg limit for
	// ShmWillOOMBeforeFull) from which it is nearly full.
	NearlyFull float64
	// OOMShmShare is the share of the memcg that shm must have held at an
	// OOM kill for the kill to be blamed on it.
	OOMShmShare float64
}

// DefaultThresholds are the flags' defaults.
var DefaultThresholds = Thresholds{NearlyFull: 0.9, OOMShmShare: 0.25}

// ShmState is one tmpfs of a pod as last measured, with the pod's memcg.
type ShmState struct {
	Pod        PodRef
	Volume     string // emptyDir volume name; "" for the runtime's /dev/shm
	MountPoint string // "/dev/shm" or the emptyDir's path
	Size, Used uint64 // statfs, bytes
	Available  uint64 // statfs available, bytes
	// MemcgLimit and MemcgWorkingSet are the pod cgroup's; nil when
	// unlimited or unknown.
	MemcgLimit, MemcgWorkingSet *uint64
	// ShmFullIn and MemcgFullIn are the time until the tmpfs and the memcg
	// limit are reached at the recent growth rate; nil when not growing or
	// unknown.
	ShmFullIn, MemcgFullIn *time.Duration
}

// Judge says which events one tmpfs deserves now: ShmFull when nothing is
// left, else ShmNearlyFull from the threshold; ShmWillOOMBeforeFull when
// the pod's memcg is nearly full and has less room than the tmpfs, so the
// next shm writes end in an OOM kill rather than ENOSPC.
func Judge(s ShmState, th Thresholds) []Notice {
	var out []Notice
	what := s.what()
	switch {
	case s.Size > 0 && s.Available == 0:
		out = append(out, Notice{s.Pod, ShmFull, fmt.Sprintf(
			"%s is full (%s used of %s): writers get ENOSPC (\"bus error\" in PyTorch DataLoader workers). %s",
			what, bytes(s.Used), bytes(s.Size), s.advice())})
	case s.Size > 0 && float64(s.Used) >= th.NearlyFull*float64(s.Size):
		out = append(out, Notice{s.Pod, ShmNearlyFull, fmt.Sprintf(
			"%s is %s full (%s used of %s, %s free)%s. %s",
			what, percent(s.Used, s.Size), bytes(s.Used), bytes(s.Size), bytes(s.Available), s.shmRate(), s.advice())})
	}
	if room, ok := s.memcgRoom(th); ok {
		out = append(out, Notice{s.Pod, ShmWillOOMBeforeFull, fmt.Sprintf(
			"the pod's memory limit binds before %s fills: %s of the %s limit is in use, so about %s more written to %s OOM-kills the pod while the tmpfs still has %s free%s. Raise limits.memory above the shm you need, or set the emptyDir's sizeLimit below it.",
			what, bytes(*s.MemcgWorkingSet), bytes(*s.MemcgLimit), bytes(room), s.mountName(), bytes(s.Available), memRate(s.MemcgFullIn))})
	}
	return out
}

// memcgRoom is the bytes left before the OOM kill when the memcg binds
// before the tmpfs and is nearly full; shm holding nothing says no.
func (s ShmState) memcgRoom(th Thresholds) (uint64, bool) {
	if s.MemcgLimit == nil || s.MemcgWorkingSet == nil || s.Used == 0 || *s.MemcgLimit == 0 {
		return 0, false
	}
	limit, ws := *s.MemcgLimit, *s.MemcgWorkingSet
	if float64(ws) < th.NearlyFull*float64(limit) {
		return 0, false
	}
	var room uint64
	if ws < limit {
		room = limit - ws
	}
	return room, room < s.Available
}

func (s ShmState) mountName() string {
	if s.MountPoint != "" {
		return s.MountPoint
	}
	return "/dev/shm"
}

// what names the tmpfs the way its owner wrote it.
func (s ShmState) what() string {
	if s.Volume != "" {
		return fmt.Sprintf("%s (emptyDir %s)", s.mountName(), s.Volume)
	}
	return s.mountName()
}

func (s ShmState) advice() string {
	if s.Volume != "" {
		return fmt.Sprintf("Raise the emptyDir %s's sizeLimit (and limits.memory with it) or write less to it.", s.Volume)
	}
	return "The runtime's /dev/shm is 64Mi: mount an emptyDir{medium: Memory} with a sizeLimit at /dev/shm (and raise limits.memory with it)."
}

func (s ShmState) shmRate() string {
	if s.ShmFullIn == nil {
		return ""
	}
	return fmt.Sprintf("; at the current rate %s is full in ~%s", s.mountName(), approx(*s.ShmFullIn))
}

func memRate(d *time.Duration) string {
	if d == nil {
		return ""
	}
	return fmt.Sprintf("; at the current rate the limit is reached in ~%s", approx(*d))
}

// ShmMount is one tmpfs of a pod at an OOM kill.
type ShmMount struct {
	Volume     string // emptyDir volume name; "" for the runtime's /dev/shm
	MountPoint string
	Used       uint64 // statfs used, bytes
}

// OOMKill is one OOM kill in a pod's memory cgroup, with what the memcg and
// its tmpfs held at the kill.
type OOMKill struct {
	Pod       PodRef
	Container string
	Time      time.Time
	// Limit, Usage and Shmem are the memcg's at the kill; Shmem nil when the
	// kernel does not say.
	Limit, Usage, Shmem *uint64
	Shm                 []ShmMount
}

// JudgeOOMKill says whether shm is to blame for a kill: it held at least
// th.OOMShmShare of the memcg's usage (or of its limit when the usage is
// unknown). The shm held is the memcg's shmem, else the sum of the pod's
// tmpfs mounts.
func JudgeOOMKill(k OOMKill, th Thresholds) (Notice, bool) {
	base := k.Usage
	if base == nil {
		base = k.Limit
	}
	shm, ok := k.shmBytes()
	if base == nil || *base == 0 || !ok || float64(shm) < th.OOMShmShare*float64(*base) {
		return Notice{}, false
	}
	who := "a container"
	if k.Container != "" {
		who = "container " + k.Container
	}
	at := bytes(*base)
	if k.Limit != nil {
		at = bytes(*k.Limit)
	}
	return Notice{k.Pod, OOMKilledWithShm, fmt.Sprintf(
		"%s OOM-killed at %s: %s of it was shared memory (%s), which survives container restarts and is charged to the pod until deleted. Raise limits.memory by the shm you need, or cap the tmpfs with an emptyDir sizeLimit below the limit.",
		who, at, bytes(shm), k.mounts())}, true
}

func (k OOMKill) shmBytes() (uint64, bool) {
	if k.Shmem != nil {
		return *k.Shmem, true
	}
	if len(k.Shm) == 0 {
		return 0, false
	}
	var sum uint64
	for _, m := range k.Shm {
		sum += m.Used
	}
	return sum, true
}

func (k OOMKill) mounts() string {
	if len(k.Shm) == 0 {
		return "memory.stat shmem"
	}
	parts := make([]string, 0, len(k.Shm))
	for _, m := range k.Shm {
		s := ShmState{Volume: m.Volume, MountPoint: m.MountPoint}
		parts = append(parts, fmt.Sprintf("%s %s", s.what(), bytes(m.Used)))
	}
	return strings.Join(parts, ", ")
}

// bytes prints n the way limits are written: 96Mi, 1.5Gi, 512Ki, 100B.
func bytes(n uint64) string {
	units := []string{"Ki", "Mi", "Gi", "Ti"}
	if n < 1024 {
		return fmt.Sprintf("%dB", n)
	}
	v, unit := float64(n), ""
	for _, u := range units {
		if v < 1024 {
			break
		}
		v, unit = v/1024, u
	}
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d%s", int64(v), unit)
	}
	return fmt.Sprintf("%.1f%s", v, unit)
}

func percent(a, b uint64) string {
	return fmt.Sprintf("%.0f%%", 100*float64(a)/float64(b))
}

// approx rounds a duration to what a person plans with: seconds below a
// minute, minutes below an hour, else hours.
func approx(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Round(time.Second)/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Round(time.Minute)/time.Minute))
	default:
		return fmt.Sprintf("%dh", int(d.Round(time.Hour)/time.Hour))
	}
}

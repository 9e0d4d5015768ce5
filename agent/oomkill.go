package agent

import (
	"fmt"
	"time"
)

// OOMKill is one OOM kill in a pod as the agent recorded it, with what the
// pod's memory cgroup and shm mounts held when the agent saw the kill.
type OOMKill struct {
	Time time.Time `json:"time"`
	// Source is "kernel" (the OOM watch saw the counter rise; Time is when)
	// or "kubelet" (a container status says OOMKilled; Time is its
	// finishedAt, the attribution was read at the next collection).
	Source string `json:"source"`
	// Container is the killed container's name (or short id without pod
	// metadata); "" when only the pod's counters changed.
	Container   string `json:"container"`
	ContainerID string `json:"container_id,omitempty"`
	// Processes is the rise of the kernel's oom_kill counter (processes
	// killed) this record stands for.
	Processes uint64 `json:"processes_killed"`
	// GroupKills is the rise of v2 oom_group_kill (whole cgroups killed,
	// memory.oom.group); nil on v1 and kernels before 5.17.
	GroupKills *uint64   `json:"group_kills,omitempty"`
	Memory     OOMMemory `json:"memory"`
	Shm        []OOMShm  `json:"shm"`
	Errors     []string  `json:"errors,omitempty"`

	// The pod, for receivers of Collector's OnOOMKill hook.
	PodUID    string `json:"-"`
	Namespace string `json:"-"`
	Pod       string `json:"-"`
}

// OOMMemory is the pod memory cgroup right after a kill, in bytes; nil =
// the kernel does not say (or the read failed, see OOMKill.Errors).
type OOMMemory struct {
	Limit  *uint64 `json:"limit_bytes"`
	Usage  *uint64 `json:"usage_bytes"`
	Shmem  *uint64 `json:"shmem_bytes"`
	Anon   *uint64 `json:"anon_bytes"`
	File   *uint64 `json:"file_bytes"`
	Kernel *uint64 `json:"kernel_bytes"`
}

// OOMShm is one of the pod's shm mounts right after a kill. tmpfs pages
// survive the kill: what is used here stays charged to the pod.
type OOMShm struct {
	Source   string  `json:"source"`
	Volume   string  `json:"volume"`
	HostPath string  `json:"host_path"`
	Size     *uint64 `json:"size_bytes"`
	Used     *uint64 `json:"used_bytes"`
	Error    string  `json:"error,omitempty"`
}

// PodOOM is a pod's OOM kills since the agent first saw the pod.
type PodOOM struct {
	// Kills counts kills: containers killed where the kernel says so
	// (v2 oom_group_kill), else processes killed (oom_kill); see
	// docs/oom.md.
	Kills uint64 `json:"kills"`
	// Last holds the latest kills, oldest first, at most OOMConfig.Keep.
	Last []OOMKill `json:"last"`
}

// oomMarker is the scan table's OOM column with a watch: the count and how
// much of the pod's limit was shmem at the last kill ("2x, last:
// 96Mi/128Mi shm").
func oomMarker(o *PodOOM) string {
	if o.Kills == 0 || len(o.Last) == 0 {
		return fmt.Sprint(o.Kills)
	}
	m := o.Last[len(o.Last)-1].Memory
	return fmt.Sprintf("%dx, last: %s/%s shm", o.Kills, bytesOrDash(m.Shmem), limitOrNone(m.Limit))
}

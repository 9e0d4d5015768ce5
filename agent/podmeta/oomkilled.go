package podmeta

import (
	"slices"
	"time"

	v1 "k8s.io/api/core/v1"
)

// OOMKilled is a container whose last termination the kubelet reports as
// OOMKilled (lastState.terminated, or state.terminated of a container that
// is not restarted).
type OOMKilled struct {
	Container string
	// ContainerID is the killed container's id (runtime prefix stripped):
	// each kill has its own, so it tells a new kill from one seen before.
	ContainerID  string
	FinishedAt   time.Time
	RestartCount int32
}

// oomKilled lists the pod's containers whose current or last termination
// was an OOM kill.
func oomKilled(p *v1.Pod) []OOMKilled {
	var out []OOMKilled
	for _, statuses := range [][]v1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, s := range statuses {
			for _, t := range []*v1.ContainerStateTerminated{s.LastTerminationState.Terminated, s.State.Terminated} {
				if t != nil && t.Reason == "OOMKilled" {
					out = append(out, OOMKilled{Container: s.Name, ContainerID: stripRuntime(t.ContainerID),
						FinishedAt: t.FinishedAt.Time, RestartCount: s.RestartCount})
				}
			}
		}
	}
	return out
}

// newKill says whether cur has a killed container that old does not.
func newKill(old, cur []OOMKilled) bool {
	for _, k := range cur {
		if !slices.ContainsFunc(old, func(o OOMKilled) bool { return o.ContainerID == k.ContainerID }) {
			return true
		}
	}
	return false
}

// maxOOMKilled bounds the kills a pod record keeps between two reads of it.
const maxOOMKilled = 16

// mergeOOMKilled adds the kills of a pod's new status to those its earlier
// statuses reported. A status shows only each container's last termination,
// so a container killed twice between two collections would otherwise count
// once; the informer sees every status update. The newest maxOOMKilled stay.
func mergeOOMKilled(old, cur []OOMKilled) []OOMKilled {
	out := append([]OOMKilled(nil), old...)
	for _, k := range cur {
		if newKill(out, []OOMKilled{k}) {
			out = append(out, k)
		}
	}
	if len(out) > maxOOMKilled {
		out = out[len(out)-maxOOMKilled:]
	}
	return out
}

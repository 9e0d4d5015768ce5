package podmeta

import (
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

// oomKilled lists the pod's containers whose last termination was an OOM kill.
func oomKilled(p *v1.Pod) []OOMKilled {
	var out []OOMKilled
	for _, statuses := range [][]v1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, s := range statuses {
			t := s.LastTerminationState.Terminated
			if s.State.Terminated != nil {
				t = s.State.Terminated
			}
			if t != nil && t.Reason == "OOMKilled" {
				out = append(out, OOMKilled{Container: s.Name, ContainerID: stripRuntime(t.ContainerID),
					FinishedAt: t.FinishedAt.Time, RestartCount: s.RestartCount})
			}
		}
	}
	return out
}

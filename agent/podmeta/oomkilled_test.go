package podmeta

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestOOMKilledFromStatuses(t *testing.T) {
	at := metav1.NewTime(time.Date(2026, 12, 4, 15, 0, 0, 0, time.UTC))
	p := &v1.Pod{Status: v1.PodStatus{ContainerStatuses: []v1.ContainerStatus{
		{Name: "app", RestartCount: 3, ContainerID: "containerd://new",
			LastTerminationState: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{Reason: "OOMKilled", ContainerID: "containerd://old", FinishedAt: at}}},
		{Name: "side", RestartCount: 1,
			LastTerminationState: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{Reason: "Error", ContainerID: "containerd://x"}}},
		{Name: "job", State: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{Reason: "OOMKilled", ContainerID: "cri-o://done", FinishedAt: at}}},
	}}}
	want := []OOMKilled{
		{Container: "app", ContainerID: "old", FinishedAt: at.Time, RestartCount: 3},
		{Container: "job", ContainerID: "done", FinishedAt: at.Time},
	}
	if diff := cmp.Diff(want, oomKilled(p)); diff != "" {
		t.Errorf("oomKilled (-want +got):\n%s", diff)
	}
}

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

// A container killed, restarted and killed again: the statuses the informer
// sees one after the other each show one kill; the pod record keeps both,
// and the apiSource merges them as the updates arrive.
func TestOOMKilledMergedAcrossStatusUpdates(t *testing.T) {
	term := func(id string) *v1.ContainerStateTerminated {
		return &v1.ContainerStateTerminated{Reason: "OOMKilled", ContainerID: "containerd://" + id}
	}
	status := func(state, last *v1.ContainerStateTerminated, restarts int32) *v1.Pod {
		s := v1.ContainerStatus{Name: "hog", RestartCount: restarts, LastTerminationState: v1.ContainerState{Terminated: last}}
		if state != nil {
			s.State = v1.ContainerState{Terminated: state}
		} else {
			s.State = v1.ContainerState{Running: &v1.ContainerStateRunning{}}
		}
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "u1", Name: "p", Namespace: "ns"},
			Status: v1.PodStatus{ContainerStatuses: []v1.ContainerStatus{s}}}
	}
	a := &apiSource{byUID: map[string]Pod{}}
	for _, p := range []*v1.Pod{
		status(term("c1"), nil, 0), // first instance killed
		status(nil, term("c1"), 1), // restarted
		status(term("c2"), term("c1"), 1),
		status(nil, term("c2"), 2), // c1 no longer in the status
		status(term("c3"), term("c2"), 2),
	} {
		a.upsert(a.gen, p)
	}
	var ids []string
	for _, k := range a.byUID["u1"].OOMKilled {
		ids = append(ids, k.ContainerID)
	}
	if diff := cmp.Diff([]string{"c1", "c2", "c3"}, ids); diff != "" {
		t.Errorf("kills kept (-want +got):\n%s", diff)
	}
	many := make([]OOMKilled, 0, maxOOMKilled+4)
	for i := range maxOOMKilled + 4 {
		many = append(many, OOMKilled{ContainerID: string(rune('a' + i))})
	}
	if got := mergeOOMKilled(nil, many); len(got) != maxOOMKilled || got[0].ContainerID != "e" {
		t.Errorf("merge of %d kills kept %d starting at %q, want the newest %d", len(many), len(got), got[0].ContainerID, maxOOMKilled)
	}
}

// The informer's upsert calls OnOOMKilled once per status that brings a
// killed container the record did not have: not for a resync of the same
// status, not for other changes.
func TestUpsertCallsOnOOMKilledForNewKills(t *testing.T) {
	var calls []string
	a := &apiSource{cfg: Config{OnOOMKilled: func(uid string) { calls = append(calls, uid) }}, byUID: map[string]Pod{}, gen: 1}
	pod := func(killedID string) *v1.Pod {
		p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "u1", Name: "p", Namespace: "ns"}}
		st := v1.ContainerStatus{Name: "app", ContainerID: "containerd://running"}
		if killedID != "" {
			st.LastTerminationState.Terminated = &v1.ContainerStateTerminated{Reason: "OOMKilled", ContainerID: "containerd://" + killedID}
		}
		p.Status.ContainerStatuses = []v1.ContainerStatus{st}
		return p
	}
	for i, step := range []struct {
		killed string
		calls  int
	}{{"", 0}, {"a", 1}, {"a", 1}, {"b", 2}, {"b", 2}} {
		a.upsert(1, pod(step.killed))
		if len(calls) != step.calls {
			t.Fatalf("step %d (killed %q): %d calls, want %d", i, step.killed, len(calls), step.calls)
		}
	}
	if calls[0] != "u1" {
		t.Errorf("called with %q, want the pod's uid", calls[0])
	}
}

package events

import (
	"strings"
	"testing"
	"time"

	"github.com/shmwatch/shmwatch/agent"
	"github.com/shmwatch/shmwatch/shmscan"
)

// A kill recorded by the OOM watch, with 96Mi of a 128Mi memcg in an
// emptyDir at /dev/shm, becomes an OOMKilledWithShm notice that names the
// volume and the numbers; a mount whose statfs failed adds nothing.
func TestKillOfBecomesOOMKilledWithShm(t *testing.T) {
	var limit, usage, shmem, used uint64 = 128 * mi, 127 * mi, 96 * mi, 96 * mi
	k := agent.OOMKill{
		Time: time.Unix(1700000000, 0), Source: "kernel", Container: "trainer",
		Memory: agent.OOMMemory{Limit: &limit, Usage: &usage, Shmem: &shmem},
		Shm:    []agent.OOMShm{{Source: string(shmscan.SourceEmptyDir), Volume: "dshm", Used: &used}, {Source: string(shmscan.SourceRuntime), Error: "statfs: stuck"}},
		PodUID: "u1", Namespace: "ml", Pod: "trainer-0",
	}
	ev := KillOf(k)
	if len(ev.Shm) != 1 || ev.Shm[0].Volume != "dshm" || ev.Shm[0].Used != used {
		t.Fatalf("Shm = %+v, want the emptyDir only", ev.Shm)
	}
	n, ok := JudgeOOMKill(ev, Thresholds{NearlyFull: 0.9, OOMShmShare: 0.25})
	if !ok {
		t.Fatal("96Mi of 127Mi in shm: no OOMKilledWithShm")
	}
	if n.Pod != (PodRef{UID: "u1", Namespace: "ml", Name: "trainer-0"}) || n.Reason != OOMKilledWithShm {
		t.Errorf("notice = %+v", n)
	}
	for _, want := range []string{"container trainer", "128Mi", "96Mi", "emptyDir dshm"} {
		if !strings.Contains(n.Note, want) {
			t.Errorf("note %q lacks %q", n.Note, want)
		}
	}
	small := uint64(8 * mi)
	k.Memory.Shmem, k.Shm = &small, nil
	if _, ok := JudgeOOMKill(KillOf(k), Thresholds{NearlyFull: 0.9, OOMShmShare: 0.25}); ok {
		t.Error("8Mi of 127Mi in shm named as the cause")
	}
}

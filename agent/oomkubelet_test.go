package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shmwatch/shmwatch/agent/podmeta"
)

// TestKubeletOOMCountsEachKilledContainerOnce: without a kernel watch a
// pod's kills are the containers the kubelet reports OOMKilled, each
// counted once however many collections see its status.
func TestKubeletOOMCountsEachKilledContainerOnce(t *testing.T) {
	ft := buildV1Fixture(t)
	meta := fixtureMeta()
	col := fixtureCollector(ft, meta)
	kills := func() (uint64, *OOMKill) {
		t.Helper()
		snap, err := col.Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range snap.Pods {
			if p.UID == guarUID {
				if p.OOM == nil {
					t.Fatal("no OOM record with API metadata")
				}
				return p.OOM.Kills, lastOOM(&p)
			}
		}
		t.Fatal("pod missing")
		return 0, nil
	}
	for range 3 {
		if n, last := kills(); n != 1 || last.Source != "kubelet" || last.Container != "trainer" || last.Memory.Shmem == nil {
			t.Fatalf("one OOMKilled status: kills %d, last %+v", n, last)
		}
	}
	p := meta.pods[guarUID]
	p.OOMKilled = []podmeta.OOMKilled{{Container: "trainer", ContainerID: strings.Repeat("8", 64), FinishedAt: time.Now(), RestartCount: 2}}
	meta.pods[guarUID] = p
	if n, last := kills(); n != 2 || last.ContainerID != strings.Repeat("8", 64) {
		t.Fatalf("a second killed container: kills %d, last %+v", n, last)
	}
}

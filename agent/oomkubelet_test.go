package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shmwatch/shmwatch/agent/podmeta"
	"github.com/shmwatch/shmwatch/cgroupfs"
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

// TestKubeletOOMKilledRecordsAtOnce: the informer's hook records a new
// kill before any collection (the OOM kill hook fires with its
// attribution), and the next collection counts it once.
func TestKubeletOOMKilledRecordsAtOnce(t *testing.T) {
	meta := fixtureMeta()
	col, hooked := hookedCollector(t, meta)
	col.KubeletOOMKilled(guarUID) // before any collection: nothing known, nothing recorded
	if _, err := col.Collect(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-hooked // the kill the first collection found
	p := meta.pods[guarUID]
	newID := strings.Repeat("8", 64)
	p.OOMKilled = append(p.OOMKilled, podmeta.OOMKilled{Container: "trainer", ContainerID: newID, FinishedAt: time.Now(), RestartCount: 2})
	meta.pods[guarUID] = p
	col.KubeletOOMKilled(guarUID)
	select {
	case k := <-hooked:
		if k.ContainerID != newID || k.Source != "kubelet" || k.Memory.Shmem == nil {
			t.Fatalf("hooked kill %+v: want the new container's, with the memcg read", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("KubeletOOMKilled did not hand the new kill to the hook")
	}
	snap, err := col.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, sp := range snap.Pods {
		if sp.UID == guarUID && (sp.OOM == nil || sp.OOM.Kills != 2) {
			t.Fatalf("after the hook and a collection: oom %+v, want 2 kills", sp.OOM)
		}
	}
	select {
	case k := <-hooked:
		t.Fatalf("the collection handed a kill to the hook again: %+v", k)
	case <-time.After(100 * time.Millisecond):
	}
}

// A kill of a pod the last collection did not know runs a collection,
// which records it.
func TestKubeletOOMKilledUnknownPodCollects(t *testing.T) {
	meta := fixtureMeta()
	col, hooked := hookedCollector(t, meta)
	col.last.Store(&Snapshot{Time: time.Now()}) // a collection that knew no pods
	col.KubeletOOMKilled(guarUID)
	select {
	case k := <-hooked:
		if k.PodUID != guarUID {
			t.Fatalf("hooked kill of pod %q, want %q", k.PodUID, guarUID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a kill of a pod unknown to the last collection was not recorded")
	}
	if snap := col.Last(); len(snap.Pods) == 0 {
		t.Error("no collection ran")
	}
}

// hookedCollector is a collector over the v1 fixture tree whose OOM kill
// hook sends each kill to the channel it returns.
func hookedCollector(t *testing.T, meta *staticMeta) (*Collector, chan OOMKill) {
	ft := buildV1Fixture(t)
	hooked := make(chan OOMKill, 4)
	col := NewCollector(Config{NodeName: "fixture-node", CgroupRoot: "/", OnOOMKill: func(k OOMKill) { hooked <- k }},
		cgroupfs.NewFSAt(ft.Hierarchy, ft.ProcRoot), nil, meta, nil)
	return col, hooked
}

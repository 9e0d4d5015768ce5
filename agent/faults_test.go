package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ctrDir is the fixture's Burstable container cgroup directory.
func ctrDir(ft fixtureTree) string {
	return filepath.Join(ft.Hierarchy.MemoryRoot, "kubepods", "burstable", "pod"+burstUID, burstCtr)
}

func findContainer(t *testing.T, s *Snapshot, uid, id string) *Container {
	t.Helper()
	for i := range s.Pods {
		if s.Pods[i].UID != uid {
			continue
		}
		for j := range s.Pods[i].Containers {
			if s.Pods[i].Containers[j].ID == id {
				return &s.Pods[i].Containers[j]
			}
		}
	}
	t.Fatalf("container %s of pod %s not in the snapshot", id, uid)
	return nil
}

// A memory.stat larger than the 1 MiB read cap (2 MiB of repeated captured
// lines) is a read error on that field, not a huge read or a parse of a
// truncated file: the container's memory.stat fields are absent, the others
// are still read, and the pod is reported.
func TestReadCapBigFile(t *testing.T) {
	ft := buildV1Fixture(t)
	stat := filepath.Join(ctrDir(ft), "memory.stat")
	one, err := os.ReadFile(stat)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat(one, (2<<20)/len(one)+1)
	if err := os.WriteFile(stat, big, 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := fixtureCollector(ft, fixtureMeta()).Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := findContainer(t, snap, burstUID, burstCtr)
	t.Logf("%d-byte memory.stat: container errors %q, read_errors %v", len(big), c.Errors, snap.ReadErrors)
	if c.Memory.Shmem != nil || c.Memory.WorkingSet != nil {
		t.Errorf("fields from an over-cap memory.stat: shmem %v working set %v, want nil", c.Memory.Shmem, c.Memory.WorkingSet)
	}
	if c.Memory.Usage == nil || c.Memory.Limit == nil {
		t.Errorf("usage/limit of the same container must still be read")
	}
	if snap.ReadErrors["memory.stat"] != 1 || len(c.Errors) != 1 || !strings.Contains(c.Errors[0], "larger than 1048576") {
		t.Errorf("want one memory.stat read error naming the 1 MiB cap, got %q (%v)", c.Errors, snap.ReadErrors)
	}
}

// A memory.stat that never ends (a FIFO fed without end) is read only up to
// the cap: the collection returns, the writer can push little more than
// 1 MiB before the reader gives up and closes it, and the field is an error.
func TestReadCapEndlessFile(t *testing.T) {
	ft := buildV1Fixture(t)
	stat := filepath.Join(ctrDir(ft), "memory.stat")
	if err := os.Remove(stat); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(stat, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	var written atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		f, err := os.OpenFile(stat, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer f.Close()
		line := []byte("total_shmem 8388608\n")
		for {
			n, err := f.Write(line)
			written.Add(int64(n))
			if err != nil {
				return // EPIPE: the reader closed
			}
		}
	}()
	col := fixtureCollector(ft, fixtureMeta())
	type result struct {
		s   *Snapshot
		err error
	}
	res := make(chan result, 1)
	go func() { s, err := col.Collect(context.Background()); res <- result{s, err} }()
	var r result
	select {
	case r = <-res:
	case <-time.After(30 * time.Second):
		t.Fatal("collection did not return while reading an endless memory.stat")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	<-done
	c := findContainer(t, r.s, burstUID, burstCtr)
	t.Logf("endless memory.stat: writer pushed %d bytes before the reader closed; errors %q", written.Load(), c.Errors)
	if w := written.Load(); w > (1<<20)+(1<<20)/4 {
		t.Errorf("writer pushed %d bytes: the read is not capped at 1 MiB (+ pipe buffer)", w)
	}
	// However the reader stops (the cap, or a short read of the pipe
	// that then parses as garbage), it must say memory.stat failed.
	if len(c.Errors) == 0 || !strings.Contains(c.Errors[0], "memory.stat") {
		t.Errorf("an endless memory.stat gave no memory.stat error: %q", c.Errors)
	}
}

// A 3.10-era container (memory.stat without shmem, no kmem files, from the
// kernel docs' field list) is still reported: shmem and kernel are absent,
// not 0, and there is no error for a field that kernel simply does not have.
func TestMissingFieldsPodStillReported(t *testing.T) {
	ft := buildV1Fixture(t)
	dir := ctrDir(ft)
	copyCaptures(t, "docs-3.10", "", dir, "memory.stat")
	for _, f := range []string{"memory.kmem.usage_in_bytes", "memory.kmem.limit_in_bytes"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	// Only this container lacks them; the Collector reads the pod first
	// and learns the files exist on this "kernel".
	snap, err := fixtureCollector(ft, fixtureMeta()).Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := findContainer(t, snap, burstUID, burstCtr)
	if c.Memory.Shmem != nil {
		t.Errorf("shmem = %d from a memory.stat without it, want nil", *c.Memory.Shmem)
	}
	if c.Memory.Usage == nil || c.Memory.WorkingSet == nil {
		t.Errorf("usage %v working set %v: the fields the 3.10 file has must be read", c.Memory.Usage, c.Memory.WorkingSet)
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, snap); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"shmem_bytes": null`) {
		t.Errorf("scan JSON does not show the missing shmem as null")
	}
	t.Logf("3.10 container: shmem=nil usage=%d errors=%q", *c.Memory.Usage, c.Errors)
}

// slowStat turns a fixture file into a FIFO served every 200 ms with its
// captured content, so each collection takes at least that long: long
// enough that callers started together surely overlap it.
func slowStat(t *testing.T, path string) {
	t.Helper()
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			// Non-blocking: ENXIO while no collection has it open.
			f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
			if err != nil {
				continue
			}
			_, _ = f.Write(content)
			f.Close()
		}
	}()
}

// 20 concurrent Collect calls share collections (singleflight): callers
// that share one get the same *Snapshot, so distinct pointers count the
// collections that read the kernel files. One memory.stat is a slow FIFO so
// a collection lasts 200 ms and the 20 callers surely overlap it.
func TestCollectSharedByConcurrentCallers(t *testing.T) {
	ft := buildV1Fixture(t)
	slowStat(t, filepath.Join(ctrDir(ft), "memory.stat"))
	col := fixtureCollector(ft, fixtureMeta())
	const callers, rounds = 20, 3
	worst := 0
	for r := 0; r < rounds; r++ {
		snaps := make([]*Snapshot, callers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < callers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				s, err := col.Collect(context.Background())
				if err != nil {
					t.Error(err)
				}
				snaps[i] = s
			}()
		}
		began := time.Now()
		close(start)
		wg.Wait()
		distinct := map[*Snapshot]bool{}
		for _, s := range snaps {
			if podCount(s) != 2 {
				t.Fatalf("a caller got a snapshot with %d pods, want 2", podCount(s))
			}
			distinct[s] = true
		}
		worst = max(worst, len(distinct))
		t.Logf("round %d: %d concurrent Collect calls, %d collection(s), %v", r, callers, len(distinct), time.Since(began).Round(time.Millisecond))
	}
	if worst > 2 {
		t.Errorf("%d concurrent callers caused up to %d collections: kernel reads are not shared", callers, worst)
	}
}

// The scan JSON contract lists arrays: a pod without shm has "shm": [] and
// a node without orphans "orphans": [], never null (jq '.pods[].shm[]' fails
// on null).
func TestScanJSONArraysNotNull(t *testing.T) {
	ft := buildV1Fixture(t)
	snap, err := fixtureCollector(ft, fixtureMeta()).Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, snap); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Pods []struct {
			Shm        json.RawMessage `json:"shm"`
			Containers json.RawMessage `json:"containers"`
		} `json:"pods"`
		Orphans json.RawMessage `json:"orphans"`
	}
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	isNull := func(m json.RawMessage) bool { return m == nil || string(m) == "null" }
	if isNull(doc.Orphans) {
		t.Errorf(`"orphans" is null, want []`)
	}
	for i, p := range doc.Pods {
		if isNull(p.Shm) || isNull(p.Containers) {
			t.Errorf(`pod %d: "shm" %s "containers" %.20s, want arrays`, i, p.Shm, p.Containers)
		}
	}
}

func podCount(s *Snapshot) int {
	if s == nil {
		return -1
	}
	return len(s.Pods)
}

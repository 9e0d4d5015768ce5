package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmwatch/shmwatch/internal/podtree"
)

// churnCycles is how many pod create/delete cycles TestChurn runs:
// SHMWATCH_SOAK_CYCLES (make soak) or 1000 (about 10 s here).
func churnCycles(t *testing.T) int {
	if s := os.Getenv("SHMWATCH_SOAK_CYCLES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("SHMWATCH_SOAK_CYCLES=%q: want a positive number", s)
		}
		return n
	}
	return 1000
}

// churnLog records when each pod's cgroup was gone for good.
type churnLog struct {
	mu      sync.Mutex
	removed map[string]time.Time // uid -> rmdir of the pod cgroup returned
}

func (l *churnLog) gone(uid string, at time.Time) {
	l.mu.Lock()
	l.removed[uid] = at
	l.mu.Unlock()
}

// staleUIDs lists uids present in a scrape that started after their cgroup was removed.
func (l *churnLog) staleUIDs(sc *scrape) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for uid := range sc.uids() {
		if at, ok := l.removed[uid]; ok && sc.Start.After(at) {
			out = append(out, uid)
		}
	}
	return out
}

// Churn (issue 8 item 2): pods with a process and a runtime tmpfs are created
// and deleted continuously under a running shmwatch serve, while /metrics is
// scraped in a loop. Every scrape must parse, no scrape started after a pod's
// rmdir may show that pod, no pod is reported half (info without memory),
// the process must not panic, log a line per scrape, or grow fds or goroutines.
func TestChurn(t *testing.T) {
	requireBinary(t)
	tree := podtree.New(t)
	srv := startServe(t, serveOpts{args: []string{"--cgroup-root=" + tree.CgroupRoot}})
	ctx := context.Background()

	settle := func() *scrape {
		var sc *scrape
		for i := 0; i < 3; i++ { // a few collections so caches of gone pods are swept
			var err error
			if sc, err = srv.Scrape(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		return sc
	}
	before := settle()
	fdsBefore, err := fdCount(srv.Pid())
	if err != nil {
		t.Fatal(err)
	}
	goBefore, _ := before.value("go_goroutines", nil)
	logLinesBefore := strings.Count(srv.Stderr.String(), "\n")

	cycles := churnCycles(t)
	const workers = 4
	log := &churnLog{removed: map[string]time.Time{}}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(cycles) {
				if err := churnOnce(tree, log); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	churnDone := make(chan struct{})
	go func() { wg.Wait(); close(churnDone) }()

	var scrapes, stale, partial int
	var partialExamples []string
	var worst time.Duration
	var scrapeErr error
loop:
	for {
		select {
		case <-churnDone:
			break loop
		default:
		}
		sc, err := srv.Scrape(ctx)
		if err != nil {
			scrapeErr = err
			break
		}
		scrapes++
		worst = max(worst, sc.Took)
		if s := log.staleUIDs(sc); len(s) > 0 {
			stale++
			t.Errorf("scrape %d (started %s) shows pods whose cgroup was already removed: %v", scrapes, sc.Start.Format(time.StampMicro), s)
		}
		if p := partialPods(sc); len(p) > 0 {
			partial += len(p)
			if len(partialExamples) < 3 {
				partialExamples = append(partialExamples, p...)
			}
		}
		if !srv.Alive() {
			break
		}
	}
	<-churnDone
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Errorf("churn worker: %v", err)
	}
	if scrapeErr != nil {
		t.Fatalf("scrape during churn: %v", scrapeErr)
	}

	settle()
	time.Sleep(500 * time.Millisecond)
	after := settle()
	fdsAfter, err := fdCount(srv.Pid())
	if err != nil {
		t.Fatalf("shmwatch gone after churn: %v; stderr %s", err, tail(srv.Stderr.String(), 2000))
	}
	goAfter, _ := after.value("go_goroutines", nil)
	logLines := strings.Count(srv.Stderr.String(), "\n") - logLinesBefore
	t.Logf("CHURN: cycles=%d workers=%d elapsed=%s scrapes=%d stale_scrapes=%d partial_pods=%d fds_before=%d fds_after=%d goroutines_before=%.0f goroutines_after=%.0f worst_scrape=%s log_lines=%d alive=%v",
		cycles, workers, elapsed.Round(time.Millisecond), scrapes, stale, partial, fdsBefore, fdsAfter, goBefore, goAfter, worst.Round(time.Microsecond), logLines, srv.Alive())

	if !srv.Alive() || containsPanic(srv.Stderr.String()) {
		t.Fatalf("shmwatch died or panicked:\n%s", tail(srv.Stderr.String(), 4000))
	}
	if partial > 0 {
		t.Errorf("%d pods exported half (pod_info without memory usage/shmem series) while they vanished, e.g. %v", partial, partialExamples)
	}
	if scrapes < 10 {
		t.Errorf("only %d scrapes during churn: the test did not overlap churn and scraping", scrapes)
	}
	if n := len(after.uids()); n != 0 {
		t.Errorf("after churn with every pod removed, %d pod uids still exported", n)
	}
	if fdsAfter > fdsBefore+4 {
		t.Errorf("open fds grew from %d to %d over %d cycles", fdsBefore, fdsAfter, cycles)
	}
	if goAfter > goBefore+4 {
		t.Errorf("goroutines grew from %.0f to %.0f over %d cycles", goBefore, goAfter, cycles)
	}
	// Read errors of vanishing pods are logged once per field and kind, not per scrape.
	if logLines > 20 {
		t.Errorf("%d log lines during %d scrapes: error spam per scrape?\n%s", logLines, scrapes, tail(srv.Stderr.String(), 3000))
	}
}

// churnOnce creates a pod with a 4 MiB runtime shm and one container writing
// 64 KiB into it, then deletes it and records when its cgroup was gone.
func churnOnce(tree *podtree.Tree, log *churnLog) error {
	p, err := tree.AddPod(podtree.Burstable)
	if err != nil {
		return err
	}
	shm, err := p.RuntimeShm(podtree.RandomHex(32), 4*mib)
	if err != nil {
		return err
	}
	if _, err := p.Start(shm, 64<<10); err != nil {
		return err
	}
	if err := p.Remove(); err != nil {
		return fmt.Errorf("remove pod %s: %w", p.UID, err)
	}
	log.gone(p.UID, time.Now())
	return nil
}

// partialPods lists the pods of a scrape that have shmwatch_pod_info but
// not their memory series: a pod half read while it vanished.
func partialPods(sc *scrape) []string {
	var out []string
	for _, m := range sc.series("shmwatch_pod_info", nil) {
		uid := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == "uid" {
				uid = l.GetValue()
			}
		}
		sel := map[string]string{"uid": uid}
		_, usage := sc.value("shmwatch_pod_memory_usage_bytes", sel)
		_, shmem := sc.value("shmwatch_pod_memory_shmem_bytes", sel)
		if !usage || !shmem {
			out = append(out, fmt.Sprintf("%s(usage=%v,shmem=%v)", uid, usage, shmem))
		}
	}
	return out
}

package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/shmwatch/shmwatch/internal/podtree"
)

// collectionKey identifies the collection a scrape was answered from: the
// phase durations of one collection, to the nanosecond, are shared by every
// scrape it answered and are never equal between two collections.
func collectionKey(sc *scrape) string {
	var parts []string
	for _, m := range sc.series("shmwatch_scrape_collector_duration_seconds", nil) {
		parts = append(parts, fmt.Sprintf("%s=%v", m.GetLabel()[0].GetValue(), metricValue(m)))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// 20 scrapers at once against one shmwatch serve over a small real tree:
// every one gets a 200 with valid metrics, and they share collections (the
// kernel is read fewer than 20 times).
func TestLoadConcurrentScrapers(t *testing.T) {
	requireBinary(t)
	tree := podtree.New(t)
	for i := 0; i < 5; i++ {
		p := tree.MustAddPod(podtree.Burstable)
		shm, err := p.RuntimeShm(podtree.RandomHex(32), 8*mib)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Start(shm, mib); err != nil {
			t.Fatal(err)
		}
	}
	srv := startServe(t, serveOpts{args: []string{"--cgroup-root=" + tree.CgroupRoot}})

	const scrapers, rounds = 20, 3
	bestCollections := scrapers
	for r := 0; r < rounds; r++ {
		keys := make([]string, scrapers)
		errs := make([]error, scrapers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < scrapers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				sc, err := srv.Scrape(context.Background())
				if err != nil {
					errs[i] = err
					return
				}
				if n := len(sc.series("shmwatch_pod_info", nil)); n != 5 {
					errs[i] = fmt.Errorf("scrape shows %d pods, want 5", n)
				}
				keys[i] = collectionKey(sc)
			}()
		}
		close(start)
		wg.Wait()
		distinct := map[string]bool{}
		for i := range keys {
			if errs[i] != nil {
				t.Errorf("round %d scraper %d: %v", r, i, errs[i])
				continue
			}
			distinct[keys[i]] = true
		}
		t.Logf("round %d: %d concurrent scrapes answered by %d collections", r, scrapers, len(distinct))
		bestCollections = min(bestCollections, len(distinct))
	}
	// A collection of this small tree takes a few ms, about as long as the
	// 20 requests take to arrive, so how many share one depends on the
	// scheduler; but a round where none shared would mean no sharing at all.
	// The deterministic proofs are TestCollectSharedByConcurrentCallers (in
	// process, slow collections) and make load (1000 pods: 1 collection for
	// 20 scrapers in every round).
	if bestCollections >= scrapers {
		t.Errorf("in every round %d concurrent scrapes needed %d collections: reads are not shared", scrapers, bestCollections)
	}
}

package main

import (
	"net/http"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// gcTuner sets the agent's GOGC from its live heap after each scrape. The
// heap is one scrape's garbage over a small live set, and the goal is
// live x (1 + GOGC/100) but at least 4 MiB x GOGC/100:
//   - small heaps (a node's usual ~100 pods, live ~2 MiB) sit at that
//     minimum; GOGC 50 halves it and doubles the GC cycles: +7 % CPU per
//     scrape at 100 pods, for nothing, so they keep 100;
//   - large heaps (1000 pods, live 5-6 MiB at mark) get 50: RSS 31.2 ->
//     29.3 MiB (median of 20 scrapes a second apart) for ~2 % more CPU.
//
// docs/performance.md has the measurements. GOGC in the environment turns
// the tuner off.
type gcTuner struct {
	mu      sync.Mutex
	sample  []metrics.Sample
	percent int
	set     func(int) int
}

const (
	gcPercentSmall = 100
	gcPercentLarge = 50
	// largeHeap is the live heap from which the large setting pays; with
	// hysteresis so a heap near the line does not flip the setting on
	// every scrape.
	largeHeapOn  = 4 << 20
	largeHeapOff = 3 << 20
)

func newGCTuner() *gcTuner {
	return &gcTuner{
		sample:  []metrics.Sample{{Name: "/gc/heap/live:bytes"}},
		percent: gcPercentSmall,
		set:     debug.SetGCPercent,
	}
}

// adjust reads the live heap marked by the last GC and sets GOGC when the
// heap crossed a threshold. A nil tuner does nothing.
func (t *gcTuner) adjust() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	metrics.Read(t.sample)
	if t.sample[0].Value.Kind() != metrics.KindUint64 {
		return // unknown to this runtime: leave GOGC alone
	}
	t.apply(t.sample[0].Value.Uint64())
}

func (t *gcTuner) apply(live uint64) {
	want := t.percent
	switch {
	case live >= largeHeapOn:
		want = gcPercentLarge
	case live < largeHeapOff:
		want = gcPercentSmall
	}
	if want != t.percent {
		t.set(want)
		t.percent = want
	}
}

// tuneGCAfter runs the tuner after every request h serves; with no tuner
// it returns h.
func tuneGCAfter(h http.Handler, t *gcTuner) http.Handler {
	if t == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		t.adjust()
	})
}

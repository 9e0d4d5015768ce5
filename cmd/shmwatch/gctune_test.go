package main

import (
	"fmt"
	"net/http"
	"runtime"
	"runtime/metrics"
	"testing"
)

// The tuner moves GOGC only across its thresholds, with hysteresis, and
// calls the runtime only when the setting changes.
func TestGCTunerThresholds(t *testing.T) {
	var calls []int
	tu := newGCTuner()
	tu.set = func(p int) int { calls = append(calls, p); return 0 }
	for _, step := range []struct {
		live uint64
		want int
	}{
		{2 << 20, gcPercentSmall},
		{largeHeapOn - 1, gcPercentSmall},
		{largeHeapOn, gcPercentLarge},
		{largeHeapOff + 1, gcPercentLarge}, // between the lines: kept
		{largeHeapOff - 1, gcPercentSmall},
		{8 << 20, gcPercentLarge},
	} {
		tu.apply(step.live)
		if tu.percent != step.want {
			t.Errorf("live %d: GOGC %d, want %d", step.live, tu.percent, step.want)
		}
	}
	if want := []int{gcPercentLarge, gcPercentSmall, gcPercentLarge}; len(calls) != len(want) || calls[0] != want[0] || calls[1] != want[1] || calls[2] != want[2] {
		t.Errorf("runtime set to %v, want %v", calls, want)
	}
}

// adjust reads the runtime's live heap metric (it exists in this Go).
func TestGCTunerReadsLiveHeap(t *testing.T) {
	tu := newGCTuner()
	tu.set = func(int) int { return 0 } // leave this test binary's GOGC alone
	runtime.GC()                        // the metric is the heap marked live by the last GC
	tu.adjust()
	if k := tu.sample[0].Value.Kind(); k != metrics.KindUint64 {
		t.Fatalf("/gc/heap/live:bytes has kind %v, want KindUint64: the tuner would never act", k)
	}
	if live := tu.sample[0].Value.Uint64(); live == 0 {
		t.Fatal("/gc/heap/live:bytes reads 0")
	}
}

// With GOGC in the environment there is no tuner: nothing runs after a
// scrape and adjusting is a no-op.
func TestGCTunerOff(t *testing.T) {
	var off *gcTuner
	off.adjust() // must not panic
	h := http.NotFoundHandler()
	if got := tuneGCAfter(h, off); fmt.Sprintf("%p", got) != fmt.Sprintf("%p", h) {
		t.Error("tuneGCAfter wrapped the handler without a tuner")
	}
}

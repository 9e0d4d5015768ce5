package agent

import (
	"testing"
	"time"
)

func TestTrend(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	ramp := NewTrend(5 * time.Minute)
	for i := range 10 {
		ramp.Add(t0.Add(time.Duration(i)*10*time.Second), uint64(i)*mi) // 1 MiB per 10 s
	}
	d := ramp.Until(9*mi, 64*mi)
	if d == nil || *d < 545*time.Second || *d > 555*time.Second {
		t.Errorf("ramp: full in %v, want ~550s", d)
	}

	flat := NewTrend(5 * time.Minute)
	for i := range 10 {
		flat.Add(t0.Add(time.Duration(i)*10*time.Second), 30*mi)
	}
	if d := flat.Until(30*mi, 64*mi); d != nil {
		t.Errorf("flat: full in %v, want never", *d)
	}

	// A page of drift a day against 4 EiB of room is far past what a
	// Duration holds: no time at all, not a negative one.
	drift := NewTrend(48 * time.Hour)
	for i := range 3 {
		drift.Add(t0.Add(time.Duration(i)*12*time.Hour), 64*mi+uint64(i)*2048)
	}
	if d := drift.Until(64*mi+4096, 1<<62); d != nil {
		t.Errorf("drift: full in %v, want never (past a Duration)", *d)
	}

	// Flat at times a clock gives (not whole seconds): no rate, where the
	// one-pass sums made 2e-8 B/s of rounding and a time past a Duration.
	still := NewTrend(5 * time.Minute)
	for i := range 4 {
		still.Add(t0.Add(time.Duration(i)*1004727887*time.Nanosecond), 136450048)
	}
	if r, ok := still.Slope(); !ok || r != 0 {
		t.Errorf("still: slope %v %v, want exactly 0", r, ok)
	}

	short := NewTrend(5 * time.Minute)
	short.Add(t0, 0)
	short.Add(t0.Add(time.Second), mi)
	if d := short.Until(mi, 64*mi); d != nil {
		t.Errorf("two samples gave a rate: %v", *d)
	}
}

func TestTrendForgetsOldSamples(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	tr := NewTrend(time.Minute)
	for i := range 10 { // grew long ago
		tr.Add(t0.Add(time.Duration(i)*10*time.Second), uint64(i)*mi)
	}
	for i := range 7 { // flat for the last minute
		tr.Add(t0.Add(100*time.Second+time.Duration(i)*10*time.Second), 20*mi)
	}
	if d := tr.Until(20*mi, 64*mi); d != nil {
		t.Errorf("an old ramp still counts: full in %v", *d)
	}
	if n := len(tr.samples); n > 7 {
		t.Errorf("%d samples kept, want at most the last minute's 7", n)
	}
}

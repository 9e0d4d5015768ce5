package agent

import (
	"math"
	"time"
)

// Trend estimates how fast a quantity grows: the least-squares slope over
// the samples of the last span. A sawtooth or a flat series has no slope
// worth a warning; only growth counts.
type Trend struct {
	span    time.Duration
	samples []sample
}

type sample struct {
	t time.Time
	v float64
}

// minSamples is the fewest samples a slope is fitted to: two points are a
// difference, not a trend.
const minSamples = 3

// NewTrend keeps the samples of the last span.
func NewTrend(span time.Duration) *Trend { return &Trend{span: span} }

// Add records v at t, forgetting samples older than the span; a t before
// the last sample starts over (a clock step).
func (tr *Trend) Add(t time.Time, v uint64) {
	if n := len(tr.samples); n > 0 && t.Before(tr.samples[n-1].t) {
		tr.samples = tr.samples[:0]
	}
	tr.samples = append(tr.samples, sample{t, float64(v)})
	cut := 0
	for cut < len(tr.samples) && t.Sub(tr.samples[cut].t) > tr.span {
		cut++
	}
	tr.samples = append(tr.samples[:0], tr.samples[cut:]...)
}

// Slope is the growth in units per second, and false with too few samples.
// It is fitted about the means, so a flat series is exactly 0: the one-pass
// sums leave rounding residue that reads as a tiny rate.
func (tr *Trend) Slope() (float64, bool) {
	n := len(tr.samples)
	if n < minSamples {
		return 0, false
	}
	t0 := tr.samples[0].t
	var mx, my float64
	for _, s := range tr.samples {
		mx, my = mx+s.t.Sub(t0).Seconds(), my+s.v
	}
	mx, my = mx/float64(n), my/float64(n)
	var sxx, sxy float64
	for _, s := range tr.samples {
		dx := s.t.Sub(t0).Seconds() - mx
		sxx, sxy = sxx+dx*dx, sxy+dx*(s.v-my)
	}
	if sxx == 0 {
		return 0, false
	}
	return sxy / sxx, true
}

// Until is the time until the quantity, now at cur, reaches limit at the
// fitted rate; nil when it does not grow, the rate is unknown, the limit
// is already reached or the time is past what a Duration holds (292 years:
// an idle cgroup's few pages of drift), which would not convert.
func (tr *Trend) Until(cur, limit uint64) *time.Duration {
	slope, ok := tr.Slope()
	if !ok || slope <= 0 || cur >= limit {
		return nil
	}
	ns := float64(limit-cur) / slope * float64(time.Second)
	if ns >= math.MaxInt64 {
		return nil
	}
	d := time.Duration(ns)
	return &d
}

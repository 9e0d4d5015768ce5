package podmeta

import (
	"fmt"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// testLogger is zaptest's logger for a provider whose goroutines outlive
// the test: they stop when its context is cancelled, asynchronously, and
// a line logged to a finished test panics (seen in CI: the rig's watch
// closing after TestRigForbiddenThenGranted). Lines after the test's
// cleanup are dropped.
func testLogger(t *testing.T) *zap.Logger {
	u := &untilDone{t: t}
	t.Cleanup(u.stop)
	return zaptest.NewLogger(u)
}

// untilDone forwards to t until stop; the mutex makes stop wait for a line
// being written, so none reaches t after it.
type untilDone struct {
	t    zaptest.TestingT
	mu   sync.Mutex
	done bool
}

func (u *untilDone) stop() {
	u.mu.Lock()
	u.done = true
	u.mu.Unlock()
}

// forward runs f on t unless stopped.
func (u *untilDone) forward(f func(t zaptest.TestingT)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.done {
		f(u.t)
	}
}

func (u *untilDone) Logf(format string, args ...any) {
	u.forward(func(t zaptest.TestingT) { t.Logf(format, args...) })
}

func (u *untilDone) Errorf(format string, args ...any) {
	u.forward(func(t zaptest.TestingT) { t.Errorf(format, args...) })
}

func (u *untilDone) Fail()        { u.forward(func(t zaptest.TestingT) { t.Fail() }) }
func (u *untilDone) FailNow()     { u.t.FailNow() }
func (u *untilDone) Failed() bool { return u.t.Failed() }
func (u *untilDone) Name() string { return u.t.Name() }

// Lines before stop reach the test, lines after it do not.
func TestUntilDoneDropsAfterStop(t *testing.T) {
	rec := &recordingT{}
	u := &untilDone{t: rec}
	log := zaptest.NewLogger(u)
	log.Info("during")
	u.stop()
	log.Info("after")
	log.Error("after, as an error")
	if len(rec.lines) != 1 || rec.failed {
		t.Errorf("test saw %q (failed %v), want only the line before stop", rec.lines, rec.failed)
	}
}

// recordingT is a zaptest.TestingT that keeps what it is told.
type recordingT struct {
	lines  []string
	failed bool
}

func (r *recordingT) Logf(format string, args ...any) {
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

func (r *recordingT) Errorf(format string, args ...any) {
	r.Logf(format, args...)
	r.failed = true
}

func (r *recordingT) Fail()        { r.failed = true }
func (r *recordingT) FailNow()     { r.failed = true }
func (r *recordingT) Failed() bool { return r.failed }
func (r *recordingT) Name() string { return "recording" }

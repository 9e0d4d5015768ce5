package events

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/client-go/rest"
)

// apiServer is an httptest API server taking events.k8s.io/v1 Events, or
// refusing them with status when status is not 0.
type apiServer struct {
	mu     sync.Mutex
	events []eventsv1.Event
	paths  []string
	status int
	got    chan struct{}
}

func newAPIServer(t *testing.T) (*apiServer, Poster) {
	a := &apiServer{got: make(chan struct{}, 100)}
	srv := httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(srv.Close)
	p, err := NewPoster(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return a, p
}

func (a *apiServer) serve(w http.ResponseWriter, r *http.Request) {
	defer func() { a.got <- struct{}{} }()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.paths = append(a.paths, r.Method+" "+r.URL.Path)
	if a.status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"events.events.k8s.io is forbidden: User \"system:serviceaccount:shmwatch:shmwatch\" cannot create resource \"events\"","reason":"Forbidden","code":403}`)
		return
	}
	var ev eventsv1.Event
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.events = append(a.events, ev)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(ev)
}

func (a *apiServer) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-a.got:
		case <-time.After(10 * time.Second):
			t.Fatalf("the API server got fewer than %d requests", n)
		}
	}
}

func TestSenderPostsAnEventOnThePod(t *testing.T) {
	api, post := newAPIServer(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	s := NewSender(Config{Node: "node-1", Window: time.Minute, NodeCap: 10, Thresholds: DefaultThresholds}, post, m, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)

	s.Notify(Notice{Pod: pod, Reason: ShmFull, Note: "full"})
	api.wait(t, 1)
	api.mu.Lock()
	defer api.mu.Unlock()
	if want := "POST /apis/events.k8s.io/v1/namespaces/ml/events"; api.paths[0] != want {
		t.Errorf("request %q, want %q", api.paths[0], want)
	}
	ev := api.events[0]
	if ev.Reason != "ShmFull" || ev.Type != "Warning" || ev.Note != "full" || ev.ReportingController != "shmwatch" ||
		ev.ReportingInstance != "shmwatch-node-1" || ev.Action == "" || ev.EventTime.IsZero() ||
		ev.Regarding.Kind != "Pod" || ev.Regarding.Name != "trainer-0" || ev.Regarding.Namespace != "ml" || ev.Regarding.UID != "u1" ||
		!strings.HasPrefix(ev.Name, "trainer-0.") {
		t.Errorf("event %+v", ev)
	}
	waitFor(t, func() bool { return testutil.ToFloat64(m.sentVec.WithLabelValues("ShmFull")) == 1 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// clock is a settable now, read by the sender's goroutine.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func TestSenderWindowPerPodAndReason(t *testing.T) {
	api, post := newAPIServer(t)
	m := NewMetrics(prometheus.NewRegistry())
	s := NewSender(Config{Node: "n", Window: 10 * time.Minute, NodeCap: 100}, post, m, nil)
	clk := &clock{t: time.Unix(1e9, 0)}
	s.now = clk.now
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)

	other := PodRef{UID: "u2", Namespace: "ml", Name: "trainer-1"}
	// 3 windows of checks every 10 s: one event per window and pod, and
	// another reason on the same pod is not held back.
	for i := range 3 * 60 {
		clk.set(time.Unix(1e9, 0).Add(time.Duration(i) * 10 * time.Second))
		s.Notify(Notice{Pod: pod, Reason: ShmFull})
		s.Notify(Notice{Pod: other, Reason: ShmFull})
		if i == 0 {
			s.Notify(Notice{Pod: pod, Reason: ShmWillOOMBeforeFull})
		}
	}
	api.wait(t, 7)
	waitFor(t, func() bool { // 3 windows x 2 pods
		return testutil.ToFloat64(m.sentVec.WithLabelValues("ShmFull")) == 6 &&
			testutil.ToFloat64(m.sentVec.WithLabelValues("ShmWillOOMBeforeFull")) == 1
	})
	if d := testutil.ToFloat64(m.droppedVec.WithLabelValues("ShmFull", causeWindow)); d != 2*180-6 {
		t.Errorf("ShmFull dropped in the window %v, want %d", d, 2*180-6)
	}
}

func TestSenderNodeCap(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	rec := &recorder{}
	s := NewSender(Config{Node: "n", Window: 10 * time.Minute, NodeCap: 20, Queue: 1000}, rec, m, nil)
	clk := &clock{t: time.Unix(1e9, 0)}
	s.now = clk.now
	for i := range 200 { // 200 pods full at once
		s.Notify(Notice{Pod: PodRef{UID: string(rune('a' + i)), Namespace: "ns", Name: "p"}, Reason: ShmFull})
	}
	if q := len(s.queue); q != 20 {
		t.Errorf("%d events queued, want the cap of 20", q)
	}
	if d := testutil.ToFloat64(m.droppedVec.WithLabelValues("ShmFull", causeNodeCap)); d != 180 {
		t.Errorf("dropped by the node cap %v, want 180", d)
	}
	// Half a minute on, the minute is still spent: the cap holds in any
	// minute, not only on average.
	clk.set(clk.now().Add(30 * time.Second))
	for i := range 200 {
		s.Notify(Notice{Pod: PodRef{UID: string(rune('a' + i)), Namespace: "ns", Name: "p"}, Reason: ShmFull})
	}
	if q := len(s.queue); q != 20 {
		t.Errorf("%d events queued within the first minute, want the cap of 20", q)
	}
	// A minute after the first, the cap is free again and the pods the
	// cap dropped get their turn: their window did not start.
	clk.set(clk.now().Add(30 * time.Second))
	for i := range 200 {
		s.Notify(Notice{Pod: PodRef{UID: string(rune('a' + i)), Namespace: "ns", Name: "p"}, Reason: ShmFull})
	}
	if q := len(s.queue); q != 40 {
		t.Errorf("%d events queued after a minute, want 40", q)
	}
	if d := testutil.ToFloat64(m.droppedVec.WithLabelValues("ShmFull", causeWindow)); d != 40 {
		t.Errorf("dropped by the window %v, want the 20 sent, at 30 s and at 60 s", d)
	}
}

// recorder is a Poster that keeps what it is given, or fails with err.
type recorder struct {
	mu     sync.Mutex
	events []*eventsv1.Event
	err    error
	block  chan struct{}
}

func (r *recorder) Post(ctx context.Context, ev *eventsv1.Event) error {
	if r.block != nil {
		<-r.block
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return r.err
}

func TestSenderNeverBlocks(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	rec := &recorder{block: make(chan struct{})} // an API server that never answers
	defer close(rec.block)
	s := NewSender(Config{Node: "n", Window: time.Minute, NodeCap: 1000, Queue: 4}, rec, m, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)

	start := time.Now()
	for i := range 100 {
		s.Notify(Notice{Pod: PodRef{UID: string(rune('a' + i)), Namespace: "ns", Name: "p"}, Reason: ShmNearlyFull})
	}
	if el := time.Since(start); el > 2*time.Second { // slack for a loaded machine; it takes microseconds
		t.Errorf("100 notices took %v with the API server hung", el)
	}
	// One is in flight, 4 wait, the rest are dropped.
	waitFor(t, func() bool {
		return testutil.ToFloat64(m.droppedVec.WithLabelValues("ShmNearlyFull", causeQueue)) >= 95
	})
}

func TestSenderAPIDownWarnsOnce(t *testing.T) {
	api, post := newAPIServer(t)
	api.status = http.StatusForbidden // no events RBAC
	core, logs := observer.New(zapcore.InfoLevel)
	m := NewMetrics(prometheus.NewRegistry())
	s := NewSender(Config{Node: "n", Window: time.Minute, NodeCap: 1000}, post, m, zap.New(core))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)

	for i := range 5 {
		s.Notify(Notice{Pod: PodRef{UID: string(rune('a' + i)), Namespace: "ns", Name: "p"}, Reason: ShmFull})
	}
	api.wait(t, 5)
	waitFor(t, func() bool { return testutil.ToFloat64(m.failedVec.WithLabelValues("ShmFull")) == 5 })
	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 1 {
		t.Errorf("%d warnings for 5 failed events, want 1", n)
	}
	if w := logs.FilterLevelExact(zapcore.WarnLevel).All(); len(w) == 1 && !strings.Contains(w[0].ContextMap()["error"].(string), "forbidden") {
		t.Errorf("the warning does not say forbidden: %v", w[0].ContextMap())
	}

	api.mu.Lock()
	api.status = 0
	api.mu.Unlock()
	s.Notify(Notice{Pod: PodRef{UID: "z", Namespace: "ns", Name: "p"}, Reason: ShmFull})
	api.wait(t, 1)
	waitFor(t, func() bool { return testutil.ToFloat64(m.sentVec.WithLabelValues("ShmFull")) == 1 })
	waitFor(t, func() bool { return logs.FilterMessage("posting events again").Len() == 1 })
}

func TestSenderWithoutAPI(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	s := NewSender(Config{Node: "n", Window: time.Minute, NodeCap: 10}, nil, m, nil)
	s.Notify(Notice{Pod: pod, Reason: ShmFull})
	if d := testutil.ToFloat64(m.droppedVec.WithLabelValues("ShmFull", causeDisabled)); d != 1 {
		t.Errorf("dropped for want of an API server %v, want 1", d)
	}
}

func TestOOMKilledNotifies(t *testing.T) {
	rec := &recorder{}
	s := NewSender(Config{Node: "n", Window: time.Minute, NodeCap: 10, Thresholds: DefaultThresholds}, rec, nil, nil)
	s.OOMKilled(OOMKill{Pod: pod, Container: "c", Limit: u64(128 * mi), Usage: u64(128 * mi), Shmem: u64(96 * mi)})
	s.OOMKilled(OOMKill{Pod: pod, Container: "c", Limit: u64(128 * mi), Usage: u64(128 * mi), Shmem: u64(1 * mi)})
	if q := len(s.queue); q != 1 {
		t.Fatalf("%d notices queued, want the one kill shm is to blame for", q)
	}
	if n := <-s.queue; n.Reason != OOMKilledWithShm {
		t.Errorf("queued %v", n.Reason)
	}
}

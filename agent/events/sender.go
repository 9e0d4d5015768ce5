package events

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Config is how a Sender behaves.
type Config struct {
	// Node is this node's name: the events' reporting instance.
	Node string
	// Window is the least time between two events of one reason on one pod.
	Window time.Duration
	// NodeCap is how many events the node sends a minute at most.
	NodeCap int
	// Queue is how many events may wait for the API server; more are
	// dropped. 0: NodeCap.
	Queue      int
	Thresholds Thresholds
}

// Sender posts notices as events on their pods, one at a time from its own
// goroutine (Run): Notify and OOMKilled never wait for the API server.
type Sender struct {
	cfg     Config
	post    Poster
	log     *zap.Logger
	metrics *Metrics
	now     func() time.Time

	queue chan Notice

	mu      sync.Mutex
	limit   *limiter
	failing bool // the last post failed; warned once until one succeeds
}

// NewSender returns a Sender posting through post; nil post drops every
// notice (counted) because there is no API server.
func NewSender(cfg Config, post Poster, m *Metrics, log *zap.Logger) *Sender {
	if cfg.Queue <= 0 {
		cfg.Queue = max(cfg.NodeCap, 1)
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Sender{
		cfg: cfg, post: post, log: log, metrics: m, now: time.Now,
		queue: make(chan Notice, cfg.Queue),
		limit: newLimiter(cfg.Window, cfg.NodeCap),
	}
}

// Notify queues n unless the pod had its reason within the window, the
// node cap is spent, or the queue is full; it never blocks.
func (s *Sender) Notify(n Notice) {
	s.mu.Lock()
	ok, cause := s.limit.allow(n, s.now())
	s.mu.Unlock()
	if !ok {
		s.metrics.dropped(n.Reason, cause)
		return
	}
	if s.post == nil {
		s.metrics.dropped(n.Reason, causeDisabled)
		return
	}
	select {
	case s.queue <- n:
	default:
		s.metrics.dropped(n.Reason, causeQueue)
	}
}

// OOMKilled tells the pod's owner about an OOM kill when shm held enough of
// the memcg (JudgeOOMKill); call it once for each kill recorded.
func (s *Sender) OOMKilled(k OOMKill) {
	if n, ok := JudgeOOMKill(k, s.cfg.Thresholds); ok {
		s.Notify(n)
	}
}

// Run posts queued notices until ctx ends.
func (s *Sender) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-s.queue:
			s.send(ctx, n)
		}
	}
}

// send posts one notice. A failure is counted, not retried: the API server
// being down must not pile events up, and the next interval notices again
// once the window allows. One warning per outage goes to the log.
func (s *Sender) send(ctx context.Context, n Notice) {
	err := s.post.Post(ctx, newEvent(n, s.cfg.Node, s.now()))
	s.mu.Lock()
	wasFailing := s.failing
	s.failing = err != nil
	s.mu.Unlock()
	if err != nil {
		s.metrics.failed(n.Reason)
		if !wasFailing {
			s.log.Warn("cannot post events; dropping them (counted in shmwatch_events_failed_total) until the API server takes one",
				zap.String("reason", string(n.Reason)), zap.Error(err))
		}
		return
	}
	s.metrics.sent(n.Reason)
	if wasFailing {
		s.log.Info("posting events again")
	}
}

package events

import "time"

// limiter decides which notices may become events: one per pod and reason
// per window, and at most nodeCap a minute on the node. Not safe for
// concurrent use; the Sender holds its lock around it.
type limiter struct {
	window time.Duration
	last   map[limitKey]time.Time
	node   minuteCap
	pruned time.Time
}

type limitKey struct {
	uid    string
	reason Reason
}

// Drop causes, the values of the cause label.
const (
	causeWindow   = "window"   // this pod had this reason within the window
	causeNodeCap  = "node_cap" // the node's events per minute are spent
	causeQueue    = "queue"    // the send queue is full (the API is slow)
	causeDisabled = "api"      // no API server to send to
)

func newLimiter(window time.Duration, perMinute int) *limiter {
	return &limiter{
		window: window,
		last:   map[limitKey]time.Time{},
		node:   minuteCap{sent: make([]time.Time, 0, max(perMinute, 1))},
	}
}

// allow says whether n may be sent at now, and why not. A notice the node
// cap drops does not start the pod's window: it gets the next chance.
func (l *limiter) allow(n Notice, now time.Time) (ok bool, cause string) {
	l.prune(now)
	k := limitKey{n.Pod.UID, n.Reason}
	if t, seen := l.last[k]; seen && now.Sub(t) < l.window {
		return false, causeWindow
	}
	if !l.node.allow(now) {
		return false, causeNodeCap
	}
	l.last[k] = now
	return true, ""
}

// prune forgets pods whose window ended, once a window, so deleted pods do
// not stay in the map.
func (l *limiter) prune(now time.Time) {
	if now.Sub(l.pruned) < l.window {
		return
	}
	l.pruned = now
	for k, t := range l.last {
		if now.Sub(t) >= l.window {
			delete(l.last, k)
		}
	}
}

// minuteCap allows at most cap(sent) events in any minute, a burst
// included: it remembers when the last cap(sent) were sent, and one more
// may go when the oldest of them is a minute old. (A token bucket of the
// same rate lets twice the cap through in the minute after a burst.)
type minuteCap struct {
	sent   []time.Time // ring of send times, oldest at sent[oldest] once full
	oldest int
}

func (c *minuteCap) allow(now time.Time) bool {
	if len(c.sent) < cap(c.sent) {
		c.sent = append(c.sent, now)
		return true
	}
	if now.Sub(c.sent[c.oldest]) < time.Minute {
		return false
	}
	c.sent[c.oldest] = now
	c.oldest = (c.oldest + 1) % len(c.sent)
	return true
}

package events

import (
	"context"
	"testing"
	"time"

	"github.com/shmwatch/shmwatch/agent"
	"github.com/shmwatch/shmwatch/cgroupfs"
	"github.com/shmwatch/shmwatch/shmscan"
)

// scriptedNode is a Node whose last snapshot has a given age and whose
// mount table changed or not; it counts collections.
type scriptedNode struct {
	last     *agent.Snapshot
	changed  bool
	collects int
}

func (n *scriptedNode) Last() *agent.Snapshot { return n.last }
func (n *scriptedNode) Collect(context.Context) (*agent.Snapshot, error) {
	n.collects++
	return &agent.Snapshot{Time: n.last.Time}, nil
}
func (n *scriptedNode) StatShm([]shmscan.Mount) []shmscan.HostStat { return nil }
func (n *scriptedNode) PodMemcg(string) cgroupfs.Memory            { return cgroupfs.Memory{} }
func (n *scriptedNode) MountsChanged() bool                        { return n.changed }

// A check collects only when the snapshot may miss pods (older than
// Rediscover and the mount table changed) or is stale (staleAfter x older).
func TestCheckerRediscoversOnlyOnChangeOrStaleness(t *testing.T) {
	const rediscover = time.Minute
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		age     time.Duration
		changed bool
		collect bool
	}{
		{age: 30 * time.Second, changed: true, collect: false},
		{age: 2 * time.Minute, changed: false, collect: false},
		{age: 2 * time.Minute, changed: true, collect: true},
		{age: staleAfter*rediscover - time.Second, changed: false, collect: false},
		{age: staleAfter * rediscover, changed: false, collect: true},
	} {
		node := &scriptedNode{last: &agent.Snapshot{Time: now.Add(-tc.age)}, changed: tc.changed}
		c := NewChecker(CheckerConfig{Interval: 10 * time.Second, Rediscover: rediscover, TrendSpan: time.Minute}, node, nil)
		c.now = func() time.Time { return now }
		c.Check(context.Background())
		if got := node.collects == 1; got != tc.collect {
			t.Errorf("snapshot %v old, mounts changed %v: collected %d times, want collect=%v", tc.age, tc.changed, node.collects, tc.collect)
		}
	}
}

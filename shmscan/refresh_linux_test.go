package shmscan

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A tmpfs mounted after the host table was read is in it after the next
// Refresh: the open mountinfo's change event reaches Refresh's poll (the
// runtime's network poller must not consume it), also when the runtime has
// run its poller in between.
func TestRefreshSeesNewMount(t *testing.T) {
	requireRoot(t)
	s := selfScanner()
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "shm")
	mountTmpfs(t, dir, 0, "size=1m")
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	time.Sleep(50 * time.Millisecond) // the netpoller's epoll_wait runs meanwhile
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	table, err := s.hostTable()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := table.byDevice[dev]; !ok {
		t.Errorf("host table after Refresh has no device %s mounted at %s", dev, dir)
	}
}

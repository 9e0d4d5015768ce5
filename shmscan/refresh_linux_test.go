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
	if !refreshedHas(t, s, dev) {
		t.Errorf("host table after Refresh has no device %s mounted at %s", dev, dir)
	}
}

// refreshedHas refreshes s and says whether its host table has device dev.
func refreshedHas(t *testing.T, s *Scanner, dev string) bool {
	t.Helper()
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	table, err := s.hostTable()
	if err != nil {
		t.Fatal(err)
	}
	_, ok := table.byDevice[dev]
	return ok
}

// MountsChanged sees a mount and an unmount, keeps saying so until a Refresh
// reads the table, and does not take the change away from that Refresh.
func TestMountsChangedUntilRefresh(t *testing.T) {
	requireRoot(t)
	s := selfScanner()
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	changed := func() bool {
		t.Helper()
		c, err := s.MountsChanged()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// Other tests or the host may mount meanwhile; settle first.
	for i := 0; changed(); i++ {
		if i == 50 {
			t.Fatal("the host mount table changes all the time")
		}
		if err := s.Refresh(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	dir := t.TempDir() // the test unmounts it itself
	if err := unix.Mount("shm", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	if !changed() {
		t.Fatal("MountsChanged after a mount: false")
	}
	if !changed() {
		t.Fatal("MountsChanged twice after a mount: false the second time (the change was consumed)")
	}
	if !refreshedHas(t, s, dev) {
		t.Fatalf("Refresh after MountsChanged did not read the new mount %s", dev)
	}
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}
	if !changed() {
		t.Fatal("MountsChanged after an unmount: false")
	}
}

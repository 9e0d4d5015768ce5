package shmscan

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/shmwatch/shmwatch/internal/realkernel"
)

// A container controls its own /dev/shm path: a symlink there, absolute or
// full of "..", must resolve inside the container's root, never on the
// host's. measureAt is what statfs's /proc/<pid>/root/dev/shm; here the
// "container root" is a plain directory whose dev/shm points at the host's
// /proc (which exists on the host and not inside the root).
func TestMeasureAtStaysInsideRoot(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	var rootStat syscall.Stat_t
	if err := syscall.Stat(root, &rootStat); err != nil {
		t.Fatal(err)
	}
	rootDev := strconv.FormatUint(uint64(rootStat.Dev>>8&0xfff), 10) + ":" + strconv.FormatUint(uint64(rootStat.Dev&0xff|rootStat.Dev>>12&0xfff00), 10)

	for _, tc := range []struct {
		target  string
		escapes bool // the target names something outside the root
	}{
		{"/proc", true},
		{"../../../../../../proc", true},
		{"/inside", false},
	} {
		link := filepath.Join(root, "dev", "shm")
		_ = os.Remove(link)
		if err := os.Symlink(tc.target, link); err != nil {
			t.Fatal(err)
		}
		r := measureAt(root, "dev/shm")
		switch {
		case tc.escapes && r.err == nil:
			t.Errorf("dev/shm -> %s: measured device %s (size %d): the symlink led out of the root", tc.target, r.device, r.usage.SizeBytes)
		case tc.escapes && !errors.Is(r.err, syscall.ENOENT):
			t.Errorf("dev/shm -> %s: error %v, want ENOENT (the target does not exist inside the root)", tc.target, r.err)
		case !tc.escapes && r.err != nil:
			t.Errorf("dev/shm -> %s: %v, want the root's own filesystem", tc.target, r.err)
		case !tc.escapes && r.device != rootDev:
			t.Errorf("dev/shm -> %s: device %s, want the root's %s", tc.target, r.device, rootDev)
		default:
			t.Logf("dev/shm -> %s: device %q err %v", tc.target, r.device, r.err)
		}
	}
}

// IsPause is true only for one process whose comm is "pause": a copy of
// sleep(1) named pause, not this test binary, not two processes.
func TestIsPause(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		realkernel.Skip(t, "needs sleep(1): %v", err)
	}
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	pause := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(pause, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(pause, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	s := NewScanner(Config{})
	deadline := time.Now().Add(5 * time.Second)
	for !s.IsPause([]int{cmd.Process.Pid}) { // comm is set at exec
		if time.Now().After(deadline) {
			t.Fatal("a process named pause is not a pause process")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s.IsPause([]int{os.Getpid()}) {
		t.Error("this test binary counts as a pause process")
	}
	if s.IsPause([]int{cmd.Process.Pid, cmd.Process.Pid}) {
		t.Error("two processes count as a pause process")
	}
}

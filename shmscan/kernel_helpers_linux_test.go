package shmscan

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmwatch/shmwatch/internal/realkernel"
)

const memcgV1 = "/sys/fs/cgroup/memory"

// requireRoot skips a real-kernel test unless it can mount and unshare.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		realkernel.Skip(t, "needs root (mount, unshare)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		realkernel.Skip(t, "needs unshare(1) from util-linux")
	}
}

// requireMemcgV1 skips unless a writable cgroup v1 memory hierarchy exists.
func requireMemcgV1(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(memcgV1 + "/memory.limit_in_bytes"); err != nil {
		t.Skipf("real-kernel test: no cgroup v1 memory hierarchy at %s: %v", memcgV1, err)
	}
	if unix.Access(memcgV1, unix.W_OK) != nil {
		realkernel.Skip(t, "%s not writable", memcgV1)
	}
}

// uniqueName names a test's kernel objects: test name, pid and randomness, so
// parallel runs and leftovers never collide.
func uniqueName(t testing.TB) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-")
	return fmt.Sprintf("shmscan-%s-%d-%s", strings.ToLower(name), os.Getpid(), hex.EncodeToString(b))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// mountTmpfs mounts a tmpfs at dir (created) and unmounts it at cleanup.
func mountTmpfs(t testing.TB, dir string, flags uintptr, data string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("shm", dir, "tmpfs", flags, data); err != nil {
		realkernel.Skip(t, "mount tmpfs at %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// memcg is a v1 memory cgroup this test created.
type memcg struct{ dir string }

// newMemcg creates a memory cgroup under a unique root and removes it at
// cleanup (after the processes in it were killed and the tmpfs unmounted,
// which the caller registers later so they run first).
func newMemcg(t testing.TB, limit uint64) memcg {
	t.Helper()
	dir := filepath.Join(memcgV1, uniqueName(t))
	if err := os.Mkdir(dir, 0o755); err != nil {
		realkernel.Skip(t, "mkdir %s: %v", dir, err)
	}
	t.Cleanup(func() {
		var err error
		for i := 0; i < 50; i++ { // the killed tasks leave the cgroup asynchronously
			if err = unix.Rmdir(dir); err == nil || errors.Is(err, unix.ENOENT) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("rmdir %s: %v", dir, err)
	})
	writeFile(t, filepath.Join(dir, "memory.limit_in_bytes"), strconv.FormatUint(limit, 10))
	return memcg{dir: dir}
}

func writeFile(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

func (c memcg) read(t testing.TB, file string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, file))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return n
}

// stat returns one key of memory.stat.
func (c memcg) stat(t testing.TB, key string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, "memory.stat"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatalf("memory.stat %s: %v", key, err)
			}
			return n
		}
	}
	t.Fatalf("memory.stat has no %s", key)
	return 0
}

// workingSet is the kubelet's working set of a v1 memcg: usage minus inactive file.
func (c memcg) workingSet(t testing.TB) uint64 {
	usage := c.read(t, "memory.usage_in_bytes")
	inactive := c.stat(t, "total_inactive_file")
	if inactive > usage {
		return 0
	}
	return usage - inactive
}

// container is a process in its own mount namespace with hostShm bound at
// its /dev/shm, standing in for a container.
type container struct {
	pid    int
	cmd    *exec.Cmd
	output string // what the script printed before READY
}

// startContainer starts `unshare -m --propagation private` with hostShm (if
// not "") bind-mounted over /dev/shm (only in the new namespace; the host's /dev/shm
// stays untouched), joining cgroup dir cg first when set, runs script inside,
// and waits until it is done. The process is killed (by its pid) at cleanup.
func startContainer(t testing.TB, hostShm, cg, script string) *container {
	t.Helper()
	join := ""
	if cg != "" {
		join = fmt.Sprintf("echo $$ > %s/cgroup.procs || exit 1; ", cg)
	}
	bind := ""
	if hostShm != "" {
		bind = fmt.Sprintf("mount --bind %s /dev/shm || exit 1; ", hostShm)
	}
	inner := fmt.Sprintf("%s%s; echo READY; exec sleep 600", bind, script)
	cmd := exec.Command("sh", "-c", join+`exec unshare -m --propagation private sh -c "$0"`, inner)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &container{pid: cmd.Process.Pid, cmd: cmd}
	t.Cleanup(c.kill)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("container exited before READY: %q, stderr %q", c.output, stderr.String())
			}
			if l == "READY" {
				return c
			}
			c.output += l + "\n"
		case <-timeout:
			t.Fatalf("container not READY after 30s: %q", c.output)
		}
	}
}

// kill kills the process this test started and reaps it, so that its /proc
// entry is gone when kill returns.
func (c *container) kill() {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// statfsHost is the kernel's own statfs of a host path.
func statfsHost(t testing.TB, path string) Usage {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	u, err := usageOf(&st)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// selfScanner reads this process's mount table as the host's: pid 1 may be
// out of reach (another sandbox's init), and the test's mounts are in our
// namespace.
func selfScanner() *Scanner {
	return NewScanner(Config{HostPID: os.Getpid(), StatfsTimeout: 5 * time.Second})
}

func nsInode(t testing.TB, pid int) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/mnt", pid), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func u64(n uint64) *uint64 { return &n }

package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmwatch/shmwatch/agent"
	"github.com/shmwatch/shmwatch/cgroupfs"
	"github.com/shmwatch/shmwatch/internal/realkernel"
	"github.com/shmwatch/shmwatch/shmscan"
)

// kernelNode is a Node over the real kernel: a real shmscan.Scanner and
// cgroupfs.FS, with the snapshot the test builds of its own tmpfs and memcg.
type kernelNode struct {
	snap               *agent.Snapshot
	shm                *shmscan.Scanner
	fs                 *cgroupfs.FS
	memReads, collects int
}

func (k *kernelNode) Last() *agent.Snapshot { return k.snap }
func (k *kernelNode) Collect(context.Context) (*agent.Snapshot, error) {
	k.collects++
	return nil, errors.New("no collections in this test")
}
func (k *kernelNode) MountsChanged() bool {
	changed, err := k.shm.MountsChanged()
	return changed || err != nil
}
func (k *kernelNode) StatShm(ms []shmscan.Mount) []shmscan.HostStat { return k.shm.StatHosts(ms) }
func (k *kernelNode) PodMemcg(path string) cgroupfs.Memory {
	k.memReads++
	return k.fs.MemoryFields(path, cgroupfs.FieldStat|cgroupfs.FieldLimit|cgroupfs.FieldUsage)
}

const memcgV1 = "/sys/fs/cgroup/memory"

func uniqueName(t *testing.T) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("shmwatch-events-%d-%s", os.Getpid(), hex.EncodeToString(b))
}

// realTmpfs mounts a tmpfs of size bytes and returns its dir and device.
func realTmpfs(t *testing.T, size uint64) (dir, device string) {
	t.Helper()
	if os.Geteuid() != 0 {
		realkernel.Skip(t, "needs root (mount)")
	}
	dir = filepath.Join(t.TempDir(), "shm")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("shm", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	return dir, fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
}

// fill writes n bytes to dir/name from a process in memcg dir cg ("" for
// this test's own cgroup), as a pod's writer would.
func fill(t *testing.T, cg, dir, name string, n uint64) {
	t.Helper()
	script := fmt.Sprintf("head -c %d /dev/zero > %s/%s", n, dir, name)
	if cg != "" {
		script = fmt.Sprintf("echo $$ > %s/cgroup.procs && %s", cg, script)
	}
	_ = exec.Command("sh", "-c", script).Run() // ENOSPC is what a full test wants
}

func newKernelNode(t *testing.T) *kernelNode {
	fs, err := cgroupfs.NewFS("/proc")
	if err != nil {
		t.Fatalf("memory cgroup hierarchy: %v", err)
	}
	return &kernelNode{fs: fs, shm: shmscan.NewScanner(shmscan.Config{ProcRoot: "/proc", HostPID: os.Getpid(), StatfsTimeout: 2 * time.Second})}
}

func podWithShm(dir, device string, used uint64, mem agent.Memory, cgroup string) agent.Pod {
	return agent.Pod{UID: "uid-" + filepath.Base(filepath.Dir(dir)), Namespace: "ml", Name: "trainer-0", Cgroup: cgroup, Memory: mem,
		Shm: []agent.Shm{{Source: string(shmscan.SourceRuntime), Device: device, HostPath: dir, Used: &used, Containers: []string{"trainer"}}}}
}

func collectNotices(c *Checker) *[]Notice {
	var got []Notice
	c.notify = func(n Notice) { got = append(got, n) }
	return &got
}

func TestCheckerSeesAFullTmpfsBetweenScrapes(t *testing.T) {
	dir, dev := realTmpfs(t, 4<<20)
	node := newKernelNode(t)
	node.snap = &agent.Snapshot{Time: time.Now(), Pods: []agent.Pod{podWithShm(dir, dev, 0, agent.Memory{}, "/none")}}
	c := NewChecker(CheckerConfig{Interval: time.Second, Rediscover: time.Hour, TrendSpan: time.Minute, Thresholds: DefaultThresholds}, node, nil)
	got := collectNotices(c)

	c.Check(context.Background())
	if len(*got) != 0 {
		t.Fatalf("an empty tmpfs gave %v", reasons(*got))
	}
	fill(t, "", dir, "a", 3900<<10) // 95 %
	c.Check(context.Background())
	if r := reasons(*got); len(r) != 1 || r[0] != ShmNearlyFull {
		t.Fatalf("at 95 %%: %v, want ShmNearlyFull", r)
	}
	fill(t, "", dir, "b", 1<<20) // to ENOSPC
	*got = nil
	c.Check(context.Background())
	if r := reasons(*got); len(r) != 1 || r[0] != ShmFull {
		t.Fatalf("at ENOSPC: %v, want ShmFull", r)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	size := st.Blocks * uint64(st.Frsize)
	if want := fmt.Sprintf("(%s used of %s)", bytes(size), bytes(size)); !strings.Contains((*got)[0].Note, want) {
		t.Errorf("note %q does not give the statfs numbers %s", (*got)[0].Note, want)
	}
	if node.memReads != 0 || node.collects != 0 {
		t.Errorf("a pod without a limit had its memcg read %d times, %d collections", node.memReads, node.collects)
	}
}

func TestCheckerMemcgBindsFirst(t *testing.T) {
	if _, err := os.Stat(memcgV1 + "/memory.limit_in_bytes"); err != nil {
		realkernel.Skip(t, "no cgroup v1 memory hierarchy: %v", err)
	}
	dir, dev := realTmpfs(t, 64<<20)
	cg := filepath.Join(memcgV1, uniqueName(t))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = unix.Unmount(dir, unix.MNT_DETACH) // uncharges the tmpfs pages first
		for range 50 {
			if err := unix.Rmdir(cg); err == nil || errors.Is(err, unix.ENOENT) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("rmdir %s", cg)
	})
	if err := os.WriteFile(cg+"/memory.limit_in_bytes", []byte(strconv.Itoa(16<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	node := newKernelNode(t)
	path := "/" + filepath.Base(cg)
	limit, ws := uint64(16<<20), uint64(0)
	node.snap = &agent.Snapshot{Time: time.Now(), Pods: []agent.Pod{podWithShm(dir, dev, 0, agent.Memory{Limit: &limit, WorkingSet: &ws}, path)}}
	c := NewChecker(CheckerConfig{Interval: time.Second, Rediscover: time.Hour, TrendSpan: time.Minute, Thresholds: DefaultThresholds}, node, nil)
	got := collectNotices(c)

	c.Check(context.Background())
	if len(*got) != 0 || node.memReads != 0 {
		t.Fatalf("an idle pod: %v, %d memcg reads", reasons(*got), node.memReads)
	}
	fill(t, cg, dir, "a", 15<<20) // 15 of the 16 MiB limit, 49 MiB left in the tmpfs
	c.Check(context.Background())
	if node.memReads != 1 {
		t.Errorf("the memcg of a pod near its limit was read %d times, want 1", node.memReads)
	}
	if r := reasons(*got); len(r) != 1 || r[0] != ShmWillOOMBeforeFull {
		t.Fatalf("15 MiB of shm under a 16 MiB limit: %v, want ShmWillOOMBeforeFull", r)
	}
	if !strings.Contains((*got)[0].Note, "of the 16Mi limit is in use") {
		t.Errorf("note %q", (*got)[0].Note)
	}
}

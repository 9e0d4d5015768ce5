// Package podtree builds real Kubernetes-shaped pod cgroup trees for tests:
// a unique root under the cgroup v1 memory hierarchy with kubepods QoS
// directories, pod and container cgroups, one process per container in its
// own mount namespace with a tmpfs bind-mounted at /dev/shm, and known bytes
// written there. Everything it creates is removed at t.Cleanup, and it never
// touches a cgroup, mount or process it did not create.
package podtree

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// V1Memory is where the cgroup v1 memory hierarchy is mounted on the test machines.
const V1Memory = "/sys/fs/cgroup/memory"

// QoS classes, named as the kubelet's cgroupfs driver names the directories.
const (
	Guaranteed = "guaranteed"
	Burstable  = "burstable"
	BestEffort = "besteffort"
)

// Require skips the test unless it runs as root on Linux with a writable
// cgroup v1 memory hierarchy and the util-linux tools the containers need.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("real-kernel test: needs root (cgroups, mount, unshare)")
	}
	if _, err := os.Stat(V1Memory + "/memory.limit_in_bytes"); err != nil {
		t.Skipf("real-kernel test: no cgroup v1 memory hierarchy at %s: %v", V1Memory, err)
	}
	if unix.Access(V1Memory, unix.W_OK) != nil {
		t.Skipf("real-kernel test: %s is not writable", V1Memory)
	}
	for _, tool := range []string{"unshare", "mount", "sh", "head", "sleep"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("real-kernel test: needs %s: %v", tool, err)
		}
	}
}

// Tree is one test's private cgroup root with a kubelet-like layout below it,
// and a host directory for the tmpfs mounts its pods use.
type Tree struct {
	t testing.TB
	// Name is the unique directory name of the root cgroup.
	Name string
	// CgroupRoot is the kubelet --cgroup-root to pass to shmwatch ("/<Name>").
	CgroupRoot string
	// Dir is the root cgroup's directory in the memory hierarchy.
	Dir string
	// KubeletRoot holds the emptyDir mounts (<KubeletRoot>/pods/<uid>/volumes/...).
	KubeletRoot string
	// StateDir holds the runtime shm mounts (<StateDir>/sandboxes/<id>/shm), shaped like containerd's.
	StateDir string

	mu   sync.Mutex
	pods []*Pod
}

// New creates a unique root cgroup with kubepods/{burstable,besteffort} below
// it and removes everything at cleanup.
func New(t testing.TB) *Tree {
	t.Helper()
	Require(t)
	host := t.TempDir() // registered first, so it is removed after the mounts below are gone
	name := UniqueName(t)
	tr := &Tree{
		t: t, Name: name, CgroupRoot: "/" + name, Dir: filepath.Join(V1Memory, name),
		KubeletRoot: filepath.Join(host, "kubelet"),
		StateDir:    filepath.Join(host, "containerd", "io.containerd.grpc.v1.cri"),
	}
	for _, d := range []string{tr.Dir, tr.kubepods(), filepath.Join(tr.kubepods(), Burstable), filepath.Join(tr.kubepods(), BestEffort)} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatalf("podtree: mkdir %s: %v", d, err)
		}
	}
	t.Cleanup(tr.cleanup)
	return tr
}

func (tr *Tree) kubepods() string { return filepath.Join(tr.Dir, "kubepods") }

// cleanup removes what pods left, then the QoS directories and the root,
// deepest first.
func (tr *Tree) cleanup() {
	tr.mu.Lock()
	pods := append([]*Pod(nil), tr.pods...)
	tr.mu.Unlock()
	for _, p := range pods {
		if err := p.Remove(); err != nil {
			tr.t.Errorf("podtree cleanup: %v", err)
		}
	}
	for _, d := range []string{filepath.Join(tr.kubepods(), Burstable), filepath.Join(tr.kubepods(), BestEffort), tr.kubepods(), tr.Dir} {
		if err := rmdirRetry(d); err != nil {
			tr.t.Errorf("podtree cleanup: %v", err)
		}
	}
}

// UniqueName names a test's kernel objects after the test, the pid and 4
// random bytes, so parallel runs and leftovers of a crashed run never collide.
func UniqueName(t testing.TB) string {
	name := regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-")
	if len(name) > 40 {
		name = name[:40]
	}
	return fmt.Sprintf("podtree-%s-%d-%s", strings.ToLower(name), os.Getpid(), RandomHex(4))
}

// RandomHex returns 2n random hex digits.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewUID returns a random pod uid in the API's 8-4-4-4-12 form.
func NewUID() string {
	h := RandomHex(16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// Pod is one pod cgroup of a Tree with its containers and tmpfs mounts.
type Pod struct {
	tree *Tree
	UID  string
	QOS  string
	// Dir is the pod cgroup's directory; Path the same relative to the
	// memory hierarchy root, as shmwatch reports it.
	Dir, Path string

	mu         sync.Mutex
	containers []*Container
	mounts     []string
	removed    bool
}

// AddPod creates a pod cgroup of the QoS class (cgroupfs driver layout:
// kubepods/pod<uid> for guaranteed, kubepods/<qos>/pod<uid> otherwise).
func (tr *Tree) AddPod(qos string) (*Pod, error) {
	uid := NewUID()
	parent := tr.kubepods()
	if qos != Guaranteed {
		parent = filepath.Join(parent, qos)
	}
	dir := filepath.Join(parent, "pod"+uid)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("podtree: mkdir pod cgroup: %w", err)
	}
	p := &Pod{tree: tr, UID: uid, QOS: qos, Dir: dir, Path: strings.TrimPrefix(dir, V1Memory)}
	tr.mu.Lock()
	tr.pods = append(tr.pods, p)
	tr.mu.Unlock()
	return p, nil
}

// MustAddPod is AddPod failing the test on error.
func (tr *Tree) MustAddPod(qos string) *Pod {
	tr.t.Helper()
	p, err := tr.AddPod(qos)
	if err != nil {
		tr.t.Fatal(err)
	}
	return p
}

// SetLimit writes the pod cgroup's memory.limit_in_bytes.
func (p *Pod) SetLimit(bytes uint64) error {
	f := filepath.Join(p.Dir, "memory.limit_in_bytes")
	if err := os.WriteFile(f, []byte(strconv.FormatUint(bytes, 10)), 0o644); err != nil {
		return fmt.Errorf("podtree: write %s: %w", f, err)
	}
	return nil
}

// RuntimeShm mounts a tmpfs of size bytes at a containerd-shaped sandbox shm
// path (<StateDir>/sandboxes/<sandboxID>/shm) and returns that path.
func (p *Pod) RuntimeShm(sandboxID string, size uint64) (string, error) {
	return p.tmpfs(filepath.Join(p.tree.StateDir, "sandboxes", sandboxID, "shm"), size)
}

// EmptyDir mounts a tmpfs of size bytes where the kubelet mounts a memory
// emptyDir named volume of this pod, and returns that path.
func (p *Pod) EmptyDir(volume string, size uint64) (string, error) {
	return p.tmpfs(filepath.Join(p.tree.KubeletRoot, "pods", p.UID, "volumes", "kubernetes.io~empty-dir", volume), size)
}

func (p *Pod) tmpfs(dir string, size uint64) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("podtree: %w", err)
	}
	opts := fmt.Sprintf("mode=1777,size=%d", size)
	if err := unix.Mount("shm", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return "", fmt.Errorf("podtree: mount tmpfs at %s: %w", dir, err)
	}
	p.mu.Lock()
	p.mounts = append(p.mounts, dir)
	p.mu.Unlock()
	return dir, nil
}

// Container is one container cgroup with one process in it.
type Container struct {
	ID        string // 64 hex digits, the cgroup's name (containerd, cgroupfs driver)
	Dir, Path string
	Pid       int
	Output    string // what the process printed before it was ready

	cmd   *exec.Cmd
	stdin io.Reader // the process's stdin; nil: none
}

// Start creates a container cgroup in the pod, starts a process in it in its
// own mount namespace with shmHost (if not "") bind-mounted at /dev/shm, has
// it write fill bytes to /dev/shm/fill, and returns once the bytes are written.
func (p *Pod) Start(shmHost string, fill uint64) (*Container, error) {
	c, err := p.newContainer()
	if err != nil {
		return nil, err
	}
	inner := "set -e; "
	if shmHost != "" {
		inner += fmt.Sprintf("mount --bind %s /dev/shm; ", shmHost)
		if fill > 0 {
			inner += fmt.Sprintf("head -c %d /dev/zero > /dev/shm/fill; ", fill)
		}
	}
	inner += "echo READY; exec sleep 100000"
	return c, c.run(c.Dir, inner)
}

// StartPause is a sandbox: a container whose one process is named pause,
// with shmHost bind-mounted at its /dev/shm as the runtime does for the
// pause container. The process is a shell script called pause that blocks
// opening a FIFO nobody writes: one process whatever sleep is (busybox
// dispatches on the name it is run as). It returns once the process's comm
// reads pause.
func (p *Pod) StartPause(shmHost string) (*Container, error) {
	dir := p.tree.t.TempDir()
	fifo, pause := filepath.Join(dir, "never"), filepath.Join(dir, "pause")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		return nil, fmt.Errorf("podtree: mkfifo: %w", err)
	}
	if err := os.WriteFile(pause, []byte("#!/bin/sh\nread x < "+fifo+"\n"), 0o755); err != nil {
		return nil, fmt.Errorf("podtree: %w", err)
	}
	c, err := p.newContainer()
	if err != nil {
		return nil, err
	}
	inner := fmt.Sprintf("set -e; mount --bind %s /dev/shm; echo READY; exec %s", shmHost, pause)
	if err := c.run(c.Dir, inner); err != nil {
		return nil, err
	}
	comm := fmt.Sprintf("/proc/%d/comm", c.Pid)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(comm); err == nil && strings.TrimSpace(string(b)) == "pause" {
			return c, nil
		}
	}
	return nil, fmt.Errorf("podtree: %s never read pause", comm)
}

// StartWriter is Start with a process that keeps writing: chunk bytes to a
// new file in /dev/shm (shmHost bind-mounted there) every period, until the
// tmpfs or the memcg stops it.
func (p *Pod) StartWriter(shmHost string, chunk uint64, period time.Duration) (*Container, error) {
	c, err := p.newContainer()
	if err != nil {
		return nil, err
	}
	inner := fmt.Sprintf("set -e; mount --bind %s /dev/shm; echo READY; i=0; "+
		"while head -c %d /dev/zero > /dev/shm/grow$i; do i=$((i+1)); sleep %g; done; exec sleep 100000",
		shmHost, chunk, period.Seconds())
	return c, c.run(c.Dir, inner)
}

// newContainer makes a container cgroup in the pod, to be removed with it.
func (p *Pod) newContainer() (*Container, error) {
	id := RandomHex(32)
	dir := filepath.Join(p.Dir, id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("podtree: mkdir container cgroup: %w", err)
	}
	c := &Container{ID: id, Dir: dir, Path: strings.TrimPrefix(dir, V1Memory)}
	p.mu.Lock()
	p.containers = append(p.containers, c)
	p.mu.Unlock()
	return c, nil
}

// StartPrivateShm is Start with a tmpfs of size bytes that the container
// mounts at /dev/shm inside its own mount namespace: no host mount table
// has it, as with a runtime that mounts shm in the container only.
func (p *Pod) StartPrivateShm(size, fill uint64) (*Container, error) {
	c, err := p.newContainer()
	if err != nil {
		return nil, err
	}
	inner := fmt.Sprintf("set -e; mount -t tmpfs -o size=%d shm /dev/shm; head -c %d /dev/zero > /dev/shm/fill; echo READY; exec sleep 100000", size, fill)
	return c, c.run(c.Dir, inner)
}

// StartFUSE is Start with a FUSE mount point instead of a tmpfs: the
// process is started without writing anything (the FUSE need not answer).
func (p *Pod) StartFUSE(mountPoint string) (*Container, error) { return p.Start(mountPoint, 0) }

func (c *Container) run(cgDir, inner string) error {
	outer := fmt.Sprintf(`echo $$ > %s/cgroup.procs || exit 1; exec unshare -m --propagation private sh -c "$0"`, cgDir)
	c.cmd = exec.Command("sh", "-c", outer, inner)
	c.cmd.Stdin = c.stdin
	var stderr bytes.Buffer
	c.cmd.Stderr = &stderr
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("podtree: %w", err)
	}
	if err := c.cmd.Start(); err != nil {
		return fmt.Errorf("podtree: start container: %w", err)
	}
	c.Pid = c.cmd.Process.Pid
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "READY" {
				ready <- nil
				_, _ = io.Copy(io.Discard, out) // keep the pipe drained
				return
			}
			c.Output += sc.Text() + "\n"
		}
		ready <- fmt.Errorf("podtree: container exited before READY: stdout %q stderr %q", c.Output, stderr.String())
	}()
	select {
	case err := <-ready:
		if err != nil {
			c.kill()
		}
		return err
	case <-time.After(30 * time.Second):
		c.kill()
		return errors.New("podtree: container not ready after 30s")
	}
}

// kill kills the container's process (by the pid this package started) and
// reaps it, so its /proc entry is gone when kill returns.
func (c *Container) kill() {
	if c.cmd == nil || c.cmd.Process == nil || c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// Remove kills the pod's processes, unmounts its tmpfs mounts and removes
// its container and pod cgroups. It is idempotent; when it returns nil the
// pod cgroup is gone from the hierarchy.
func (p *Pod) Remove() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.removed {
		return nil
	}
	var errs []error
	for _, c := range p.containers {
		c.kill()
	}
	for _, m := range p.mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	for _, c := range p.containers {
		if err := rmdirRetry(c.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := rmdirRetry(p.Dir); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		p.removed = true
	}
	return errors.Join(errs...)
}

// rmdirRetry removes a cgroup directory, waiting for killed tasks to leave
// it (they do so asynchronously).
func rmdirRetry(dir string) error {
	var err error
	for i := 0; i < 100; i++ {
		if err = unix.Rmdir(dir); err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("podtree: rmdir %s: %w", dir, err)
}

// ReadUint reads a one-number cgroup file of dir.
func ReadUint(dir, file string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// Stat returns one key of dir's memory.stat.
func Stat(dir, key string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			return strconv.ParseUint(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("%s/memory.stat has no %s", dir, key)
}

// Statfs is the kernel's statfs of a path in bytes: size, used, available.
func Statfs(path string) (size, used, avail uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	unit := uint64(st.Frsize)
	return st.Blocks * unit, (st.Blocks - st.Bfree) * unit, st.Bavail * unit, nil
}

package cgroupfs

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/shmwatch/shmwatch/internal/realkernel"
)

// helperEnv makes the test binary act as a container process (see runHelper).
const helperEnv = "SHMWATCH_CGROUPFS_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		if err := runHelper(); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	code := m.Run()
	removeBenchTree()
	os.Exit(code)
}

// runHelper runs in a private mount namespace (Unshareflags): it joins the
// container cgroup, mounts a tmpfs, writes MIB MiB into it (charged to the
// container cgroup), moves itself to the park cgroup so the container cgroup
// can be removed, says "ready", and deletes the file and exits on stdin EOF.
func runHelper() error {
	ctr, park, mnt := os.Getenv("HELPER_CGROUP"), os.Getenv("HELPER_PARK"), os.Getenv("HELPER_MNT")
	mib, err := strconv.Atoi(os.Getenv("HELPER_MIB"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(ctr, "cgroup.procs"), []byte("0"), 0); err != nil {
		return err
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=256m"); err != nil {
		return fmt.Errorf("mount tmpfs: %w", err)
	}
	file := filepath.Join(mnt, "blob")
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	for range mib {
		if _, err := f.Write(chunk); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(park, "cgroup.procs"), []byte("0"), 0); err != nil {
		return err
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return os.Remove(file)
}

// realFS returns an FS on this machine's memory hierarchy, or skips.
func realFS(t *testing.T) *FS {
	t.Helper()
	if os.Geteuid() != 0 {
		realkernel.Skip(t, "needs root")
	}
	fs, err := NewFS("/proc")
	if err != nil {
		realkernel.Skip(t, "no memory cgroup hierarchy: %v", err)
	}
	probe := filepath.Join(fs.Hierarchy.MemoryRoot, "shmwatch-probe-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(probe, 0o755); err != nil {
		realkernel.Skip(t, "memory hierarchy %s not writable: %v", fs.Hierarchy.MemoryRoot, err)
	}
	_ = os.Remove(probe)
	return fs
}

// testTree makes cgroup directories below a root unique to this test and
// removes them (deepest first) at cleanup. It never touches anything else.
type testTree struct {
	t    *testing.T
	fs   *FS
	root string // cgroup path, leading slash
	dirs []string
}

func newTestTree(t *testing.T, fs *FS) *testTree {
	var r [4]byte
	_, _ = rand.Read(r[:])
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	tr := &testTree{t: t, fs: fs, root: fmt.Sprintf("/shmwatch-%s-%d-%s", name, os.Getpid(), hex.EncodeToString(r[:]))}
	t.Cleanup(tr.cleanup)
	tr.mkdir(tr.root)
	return tr
}

// mkdir creates cgroup p (and parents); on v2 it enables memory for the
// children of every new directory's parent.
func (tr *testTree) mkdir(p string) {
	tr.t.Helper()
	if p != tr.root && !strings.HasPrefix(p, tr.root+"/") {
		tr.t.Fatalf("%s is outside the test root", p)
	}
	if parent := filepath.Dir(p); p != tr.root {
		if _, err := os.Stat(tr.fs.abs(parent)); err != nil {
			tr.mkdir(parent)
		}
		if tr.fs.Hierarchy.Mode == ModeV2 {
			tr.write(parent+"/cgroup.subtree_control", "+memory")
		}
	}
	if err := os.Mkdir(tr.fs.abs(p), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	tr.dirs = append(tr.dirs, p)
}

func (tr *testTree) write(file, v string) {
	tr.t.Helper()
	if err := os.WriteFile(tr.fs.abs(file), []byte(v), 0); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr *testTree) cleanup() {
	for i := len(tr.dirs) - 1; i >= 0; i-- {
		p := tr.fs.abs(tr.dirs[i])
		for try := 0; ; try++ {
			err := syscall.Rmdir(p)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			if try == 50 {
				tr.t.Errorf("cleanup: rmdir %s: %v", p, err)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// helperProc is a running runHelper.
type helperProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startHelper re-execs this test binary into cgroup ctr with its own mount
// namespace and waits until it wrote mib MiB into its tmpfs.
func startHelper(t *testing.T, fs *FS, ctr, park string, mib int) *helperProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Read the binary once so its page cache is charged to our cgroup, not
	// to the container's (cached pages would keep the removed memcg alive).
	if _, err := os.ReadFile(exe); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1",
		"HELPER_CGROUP="+fs.abs(ctr), "HELPER_PARK="+fs.abs(park),
		"HELPER_MNT="+t.TempDir(), "HELPER_MIB="+strconv.Itoa(mib))
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helperProc{cmd: cmd, stdin: stdin}
	t.Cleanup(func() { h.stop(t) })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("helper did not get ready: %q %v", line, err)
	}
	return h
}

// stop closes stdin (the helper deletes its file) and waits for it.
func (h *helperProc) stop(t *testing.T) {
	if h.stdin == nil {
		return
	}
	h.stdin.Close()
	h.stdin = nil
	if err := h.cmd.Wait(); err != nil {
		t.Errorf("helper: %v", err)
	}
}

// kernelFile reads a cgroup file with plain os.ReadFile, independent of cgroupfs.
func kernelFile(t *testing.T, fs *FS, cg, name string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(fs.abs(cg), name))
	if errors.Is(err, os.ErrNotExist) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b)), true
}

func kernelKeyed(t *testing.T, fs *FS, cg, name string) map[string]uint64 {
	s, ok := kernelFile(t, fs, cg, name)
	if !ok {
		return nil
	}
	out := map[string]uint64{}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			v, err := strconv.ParseUint(f[1], 10, 64)
			if err == nil {
				out[f[0]] = v
			}
		}
	}
	return out
}

// kernelMemory builds the Memory the kernel's files say, the slow obvious way.
func kernelMemory(t *testing.T, fs *FS, cg string) Memory {
	var m Memory
	num := func(name string) *uint64 {
		s, ok := kernelFile(t, fs, cg, name)
		if !ok {
			return nil
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s %s: %v", cg, name, err)
		}
		return &v
	}
	key := func(m map[string]uint64, k string) *uint64 {
		if v, ok := m[k]; ok {
			return &v
		}
		return nil
	}
	if fs.Hierarchy.Mode == ModeV2 {
		st := kernelKeyed(t, fs, cg, "memory.stat")
		m.Shmem, m.File, m.Anon, m.InactiveFile = key(st, "shmem"), key(st, "file"), key(st, "anon"), key(st, "inactive_file")
		m.Kernel, m.Slab, m.Sock = key(st, "kernel"), key(st, "slab"), key(st, "sock")
		if s, _ := kernelFile(t, fs, cg, "memory.max"); s == "max" {
			m.Unlimited = true
		} else {
			m.Limit = num("memory.max")
		}
		m.Usage, m.Peak = num("memory.current"), num("memory.peak")
		ev := kernelKeyed(t, fs, cg, "memory.events")
		m.LimitHits, m.OOMEvents, m.OOMKills, m.OOMGroupKills = key(ev, "max"), key(ev, "oom"), key(ev, "oom_kill"), key(ev, "oom_group_kill")
		if s, ok := kernelFile(t, fs, cg, "memory.pressure"); ok {
			p, err := ParsePSI([]byte(s))
			if err != nil {
				t.Fatal(err)
			}
			m.PSI = &p
		}
		m.DyingDescendants = key(kernelKeyed(t, fs, cg, "cgroup.stat"), "nr_dying_descendants")
	} else {
		st := kernelKeyed(t, fs, cg, "memory.stat")
		m.Shmem, m.File, m.Anon, m.InactiveFile = key(st, "total_shmem"), key(st, "total_cache"), key(st, "total_rss"), key(st, "total_inactive_file")
		if l := num("memory.limit_in_bytes"); *l >= 0x7FFFFFFFFFFFF000 {
			m.Unlimited = true
		} else {
			m.Limit = l
		}
		m.Usage, m.Peak, m.LimitHits = num("memory.usage_in_bytes"), num("memory.max_usage_in_bytes"), num("memory.failcnt")
		oc := kernelKeyed(t, fs, cg, "memory.oom_control")
		m.OOMKills = key(oc, "oom_kill")
		under := oc["under_oom"] == 1
		m.UnderOOM = &under
		m.Kernel = num("memory.kmem.usage_in_bytes")
		if l := num("memory.kmem.limit_in_bytes"); l != nil && *l < 0x7FFFFFFFFFFFF000 {
			m.KmemLimit = l
		}
	}
	if m.Usage != nil && m.InactiveFile != nil {
		ws := uint64(0)
		if *m.Usage > *m.InactiveFile {
			ws = *m.Usage - *m.InactiveFile
		}
		m.WorkingSet = &ws
	}
	return m
}

// assertMemoryMatchesKernel compares Memory with the kernel's files. Values
// can move between two reads, so a read is accepted when the kernel files
// read just before and just after it agree with each other and with it.
func assertMemoryMatchesKernel(t *testing.T, fs *FS, cg string) Memory {
	t.Helper()
	var diff string
	for try := 0; try < 20; try++ {
		before := kernelMemory(t, fs, cg)
		got := fs.MemoryFields(cg, FieldsAll)
		after := kernelMemory(t, fs, cg)
		if len(got.Errors) > 0 {
			t.Fatalf("Memory(%s) errors: %v", cg, got.Errors)
		}
		if !cmp.Equal(before, after) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if diff = cmp.Diff(before, got); diff == "" {
			return got
		}
	}
	t.Fatalf("Memory(%s) differs from the kernel files (-kernel +got):\n%s", cg, diff)
	return Memory{}
}

// poll calls cond every 100 ms for up to 20 s and says whether it came true.
func poll(cond func() bool) bool {
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// pollNode waits up to 20 s for cond on Node(); it returns the last Node.
func pollNode(fs *FS, cond func(Node) bool) (Node, bool) {
	var n Node
	ok := poll(func() bool { n = fs.Node(); return cond(n) })
	return n, ok
}

// settledNode waits until the node's dying memcg count holds still for a
// second: the kernel frees dying memcgs asynchronously, in batches, so a
// count taken while an earlier workload's cgroups are being reclaimed
// (another test, a cluster that just started) moves under the test.
func settledNode(t *testing.T, fs *FS) Node {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	prev, same := fs.Node(), 0
	for same < 4 && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		n := fs.Node()
		if n.DyingMemcgs != nil && prev.DyingMemcgs != nil && *n.DyingMemcgs == *prev.DyingMemcgs {
			same++
		} else {
			same = 0
		}
		prev = n
	}
	if same < 4 {
		t.Logf("dying memcg count still moving after 30 s (now %s)", ptrVal(prev.DyingMemcgs))
	}
	return prev
}

func ptrVal(p *uint64) string {
	if p == nil {
		return "nil"
	}
	return strconv.FormatUint(*p, 10)
}

const testMiB = 16

func TestRealKernelPodTree(t *testing.T) {
	fs := realFS(t)
	tr := newTestTree(t, fs)
	id := func(c byte) string { return strings.Repeat(string(c), 64) }
	uid1, uid2 := "11111111-2222-3333-4444-555555555555", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	uid3, uid4 := "33333333-2222-3333-4444-555555555555", "6d1a8c7e3f2b4a59bc0e1f2a3b4c5d6e" // uid4: static pod
	us := func(u string) string { return strings.ReplaceAll(u, "-", "_") }
	r := tr.root
	burst := r + "/kubepods/burstable/pod" + uid1
	guar := r + "/kubepods/pod" + uid2
	sdBE := r + "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + us(uid3) + ".slice"
	sdG := r + "/kubepods.slice/kubepods-pod" + us(uid4) + ".slice"
	ctr := burst + "/" + id('a')
	park := r + "/park"
	for _, d := range []string{ctr, burst + "/" + id('b'), guar + "/" + id('c'), r + "/kubepods/besteffort",
		sdBE + "/cri-containerd-" + id('d') + ".scope", sdBE + "/crio-conmon-" + id('e') + ".scope",
		sdG + "/crio-" + id('e') + ".scope", sdG + "/docker-" + id('f') + ".scope", park} {
		tr.mkdir(d)
	}
	if fs.Hierarchy.Mode == ModeV2 {
		tr.write(ctr+"/memory.max", "256M")
		tr.write(guar+"/memory.max", "512M")
	} else {
		tr.write(ctr+"/memory.limit_in_bytes", "256M")
		tr.write(guar+"/memory.limit_in_bytes", "512M")
	}

	pods, err := fs.Pods(r)
	if err != nil {
		t.Fatal(err)
	}
	want := []Pod{
		{UID: uid1, QOS: QOSBurstable, Driver: DriverCgroupfs, Path: burst, Containers: []Container{
			{ID: id('a'), Path: ctr}, {ID: id('b'), Path: burst + "/" + id('b')}}},
		{UID: uid2, QOS: QOSGuaranteed, Driver: DriverCgroupfs, Path: guar, Containers: []Container{{ID: id('c'), Path: guar + "/" + id('c')}}},
		{UID: uid3, QOS: QOSBestEffort, Driver: DriverSystemd, Path: sdBE, Containers: []Container{
			{ID: id('d'), Runtime: RuntimeContainerd, Path: sdBE + "/cri-containerd-" + id('d') + ".scope"}}},
		{UID: uid4, QOS: QOSGuaranteed, Driver: DriverSystemd, Path: sdG, Containers: []Container{
			{ID: id('e'), Runtime: RuntimeCRIO, Path: sdG + "/crio-" + id('e') + ".scope"},
			{ID: id('f'), Runtime: RuntimeDocker, Path: sdG + "/docker-" + id('f') + ".scope"}}},
	}
	if diff := cmp.Diff(want, pods); diff != "" {
		t.Errorf("Pods(%s) (-want +got)\n%s", r, diff)
	}
	if none, err := fs.Pods(r + "/park"); none != nil || err != nil {
		t.Errorf("Pods without kubepods = %v, %v; want nil, nil", none, err)
	}

	h := startHelper(t, fs, ctr, park, testMiB)
	if pids, err := fs.Procs(park); err != nil || !cmp.Equal(pids, []int{h.cmd.Process.Pid}) {
		t.Errorf("Procs(park) = %v, %v; want [%d]", pids, err, h.cmd.Process.Pid)
	}
	cm := assertMemoryMatchesKernel(t, fs, ctr)
	pm := assertMemoryMatchesKernel(t, fs, burst)
	gm := assertMemoryMatchesKernel(t, fs, guar)
	t.Logf("container: shmem=%s usage=%s ws=%s limit=%s kernel=%s; pod shmem=%s usage=%s; written %d",
		ptrVal(cm.Shmem), ptrVal(cm.Usage), ptrVal(cm.WorkingSet), ptrVal(cm.Limit), ptrVal(cm.Kernel),
		ptrVal(pm.Shmem), ptrVal(pm.Usage), testMiB<<20)
	if !statNear(cm.Shmem, testMiB<<20) || !statNear(pm.Shmem, testMiB<<20) {
		t.Errorf("shmem container %s pod %s, want %d (bytes written) within %d", ptrVal(cm.Shmem), ptrVal(pm.Shmem), testMiB<<20, statSlack())
	}
	if cm.Limit == nil || *cm.Limit != 256<<20 || gm.Limit == nil || *gm.Limit != 512<<20 || !pm.Unlimited || pm.Limit != nil {
		t.Errorf("limits: container %s, guaranteed pod %s, burstable pod unlimited=%v", ptrVal(cm.Limit), ptrVal(gm.Limit), pm.Unlimited)
	}
	if created, err := fs.Stat(ctr); err != nil || time.Since(created) > time.Minute || time.Since(created) < -time.Second {
		t.Errorf("Stat(%s) = %v, %v", ctr, created, err)
	}

	// A removed container cgroup whose tmpfs pages are still charged is a dying memcg.
	// The count is the node's, and the kernel frees earlier work's dying memcgs at any
	// time (in batches, as their pages are reclaimed), so each step is measured from the
	// count read just before it, and a fall that is not ours is allowed: our rise is
	// rmdir's own (synchronous), our fall is checked where the kernel says whose it is.
	settledNode(t, fs)
	d1 := dyingNow(t, fs)
	if err := syscall.Rmdir(fs.abs(ctr)); err != nil {
		t.Fatal(err)
	}
	after, ok := pollNode(fs, func(n Node) bool { return n.DyingMemcgs != nil && *n.DyingMemcgs >= d1+1 })
	t.Logf("node: mode=%s kernel=%s kmemFiles=%v nokmem=%v live=%s dying before rmdir=%d after=%s",
		after.Mode, after.KernelRelease, after.KmemFiles, after.NoKmem, ptrVal(after.LiveMemcgs), d1, ptrVal(after.DyingMemcgs))
	if !ok {
		t.Fatalf("DyingMemcgs = %s after rmdir, want at least %d", ptrVal(after.DyingMemcgs), d1+1)
	}
	if fs.Hierarchy.Mode == ModeV2 {
		if pm := fs.MemoryFields(burst, FieldsAll); pm.DyingDescendants == nil || *pm.DyingDescendants != 1 {
			t.Errorf("pod DyingDescendants = %s, want 1", ptrVal(pm.DyingDescendants))
		}
	}
	if pm := fs.MemoryFields(burst, FieldsAll); !statNear(pm.Shmem, testMiB<<20) {
		t.Errorf("pod shmem after rmdir = %s, want %d (still charged) within %d", ptrVal(pm.Shmem), testMiB<<20, statSlack())
	}
	d2 := dyingNow(t, fs)
	h.stop(t)
	freed, ok := pollNode(fs, func(n Node) bool { return n.DyingMemcgs != nil && *n.DyingMemcgs <= d2-1 })
	t.Logf("dying after the tmpfs file is gone: %d -> %s", d2, ptrVal(freed.DyingMemcgs))
	if !ok {
		t.Errorf("DyingMemcgs = %s after the file was deleted, want at most %d", ptrVal(freed.DyingMemcgs), d2-1)
	}
	if len(freed.Errors) > 0 {
		t.Errorf("Node errors: %v", freed.Errors)
	}
	// Whose fall it was: the pod's hierarchical shmem (v1 and v2) and, on v2, its own
	// count of dying descendants.
	var podM Memory
	podFreed := poll(func() bool {
		podM = fs.MemoryFields(burst, FieldsAll)
		return statNear(podM.Shmem, 0) &&
			(fs.Hierarchy.Mode != ModeV2 || podM.DyingDescendants != nil && *podM.DyingDescendants == 0)
	})
	if !podFreed {
		t.Errorf("pod after the file was deleted: shmem %s dying descendants %s, want 0 (within %d) and (v2) 0",
			ptrVal(podM.Shmem), ptrVal(podM.DyingDescendants), statSlack())
	}
}

// statSlack is how far a memory.stat counter may be from the true value: the
// kernel keeps each CPU's recent changes to it aside until they pass
// MEMCG_CHARGE_BATCH (32 pages), and a read before 5.13 does not add them in
// (later kernels add them on a read once enough have gathered, and every 2 s).
// Measured on 5.10: a 16 MiB tmpfs file reads 16 KiB short.
func statSlack() uint64 { return uint64(32 * os.Getpagesize() * runtime.NumCPU()) }

// statNear says whether a memory.stat counter reads want within statSlack.
func statNear(got *uint64, want uint64) bool {
	return got != nil && *got+statSlack() >= want && *got <= want+statSlack()
}

// dyingNow is the node's dying memcg count at this moment.
func dyingNow(t *testing.T, fs *FS) uint64 {
	t.Helper()
	n := fs.Node()
	if n.DyingMemcgs == nil || n.LiveMemcgs == nil {
		t.Fatalf("Node() = %+v", n)
	}
	return *n.DyingMemcgs
}

func TestRealKernelVanishedAndRuntime(t *testing.T) {
	fs := realFS(t)
	tr := newTestTree(t, fs)
	gone := fs.MemoryFields(tr.root+"/does-not-exist", FieldsAll)
	if len(gone.Errors) != 1 || !errors.Is(gone.Errors[0], os.ErrNotExist) || gone.Usage != nil {
		t.Errorf("vanished cgroup: %+v", gone)
	}
	id := strings.Repeat("0f", 32)
	tr.mkdir(tr.root + "/docker/" + id)
	tr.mkdir(tr.root + "/system.slice/docker-" + id + ".scope")
	tr.mkdir(tr.root + "/other/" + id) // bare id under an unknown parent: not a runtime's
	cs, err := fs.RuntimeContainers()
	if err != nil {
		t.Fatal(err)
	}
	var mine []Container
	for _, c := range cs {
		if strings.HasPrefix(c.Path, tr.root+"/") {
			mine = append(mine, c)
		}
	}
	want := []Container{
		{ID: id, Runtime: RuntimeDocker, Path: tr.root + "/docker/" + id},
		{ID: id, Runtime: RuntimeDocker, Path: tr.root + "/system.slice/docker-" + id + ".scope"},
	}
	if diff := cmp.Diff(want, mine); diff != "" {
		t.Errorf("RuntimeContainers (-want +got)\n%s", diff)
	}
}

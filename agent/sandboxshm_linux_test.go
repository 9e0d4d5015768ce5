package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shmwatch/shmwatch/cgroupfs"
	"github.com/shmwatch/shmwatch/internal/podtree"
	"github.com/shmwatch/shmwatch/shmscan"
)

// TestSandboxShmWhileContainersDown: the runtime's shm of a pod stays in
// the snapshot, with what the dead container wrote, while no container of
// the pod runs (a crash loop between restarts): found on the host by the
// sandbox's id, as the attribution of an OOM kill needs it.
func TestSandboxShmWhileContainersDown(t *testing.T) {
	const written = 3 << 20
	tree := podtree.New(t)
	pod := tree.MustAddPod(podtree.Burstable)
	sandboxID := podtree.RandomHex(32)
	if err := os.Mkdir(filepath.Join(pod.Dir, sandboxID), 0o755); err != nil { // the pause container's cgroup
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(filepath.Join(pod.Dir, sandboxID)) })
	shm, err := pod.RuntimeShm(sandboxID, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := pod.Start(shm, written)
	if err != nil {
		t.Fatal(err)
	}
	fs, scanner := hostReaders(t)
	c := NewCollector(Config{CgroupRoot: tree.CgroupRoot}, fs, scanner, nil, nil)

	running := collectPod(t, c, pod.Path)
	if len(running.Shm) != 1 || running.Shm[0].HostPath != shm {
		t.Fatalf("running: shm %+v, want the runtime shm at %s", running.Shm, shm)
	}
	if err := pod.RemoveContainer(ctr); err != nil {
		t.Fatal(err)
	}
	down := collectPod(t, c, pod.Path)
	if len(down.Shm) != 1 {
		t.Fatalf("no container running: shm %+v, want the sandbox's runtime shm", down.Shm)
	}
	s := down.Shm[0]
	if s.Source != string(shmscan.SourceRuntime) || s.HostPath != shm || len(s.Containers) != 0 {
		t.Errorf("no container running: shm %+v, want source runtime at %s and no container", s, shm)
	}
	used := tmpfsUsed(t, shm)
	if s.Used == nil || *s.Used != used || used < written {
		t.Fatalf("used %v, statfs %d (written %d)", s.Used, used, written)
	}
	t.Logf("container removed: runtime shm %s used %d (statfs %d, written %d)", s.HostPath, *s.Used, used, written)
}

// TestFirstPassSkipsSandboxMemory: with SkipSandboxMemory the pause
// container's memory files are not read, on the first collection too
// (its /dev/shm is resolved, which finds it is the pause container,
// before memory is read), while the app container's are; without it both
// are read.
func TestFirstPassSkipsSandboxMemory(t *testing.T) {
	tree := podtree.New(t)
	pod := tree.MustAddPod(podtree.Burstable)
	shm, err := pod.RuntimeShm(podtree.RandomHex(32), 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	sandbox, err := pod.StartPause(shm)
	if err != nil {
		t.Fatal(err)
	}
	app, err := pod.Start(shm, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	fs, scanner := hostReaders(t)
	for _, skip := range []bool{true, false} {
		c := NewCollector(Config{CgroupRoot: tree.CgroupRoot, SkipSandboxMemory: skip}, fs, scanner, nil, nil)
		p := collectPod(t, c, pod.Path)
		got := map[string]Container{}
		for _, ct := range p.Containers {
			got[ct.ID] = ct
		}
		s, a := got[sandbox.ID], got[app.ID]
		if !s.Sandbox || a.Sandbox {
			t.Fatalf("skip %v: sandbox flags: pause %v, app %v", skip, s.Sandbox, a.Sandbox)
		}
		if a.Memory.Usage == nil {
			t.Errorf("skip %v: app container's memory not read", skip)
		}
		if read := s.Memory.Usage != nil; read == skip {
			t.Errorf("skip %v: pause container's memory read %v on the first collection", skip, read)
		}
	}
}

// TestUnresolvedContainerShmError: a container whose /dev/shm cannot be
// resolved (here its processes cannot be listed: a tree of captured files
// has no cgroup.procs) gets the error on its pod, once, from the
// resolution the containers phase tried.
func TestUnresolvedContainerShmError(t *testing.T) {
	ft := buildV1Fixture(t)
	_, scanner := hostReaders(t)
	c := NewCollector(Config{NodeName: "fixture-node", CgroupRoot: "/"},
		cgroupfs.NewFSAt(ft.Hierarchy, ft.ProcRoot), scanner, fixtureMeta(), nil)
	for _, p := range collectPods(t, c, 2).Pods { // the fixture's two pods
		var shmErrs []string
		for _, e := range p.Errors {
			if strings.HasPrefix(e, "shm of container") {
				shmErrs = append(shmErrs, e)
			}
		}
		if len(shmErrs) != 1 || !strings.Contains(shmErrs[0], "list processes") {
			t.Errorf("pod %s: shm errors %q, want one naming the processes it could not list", p.Name, shmErrs)
		}
	}
}

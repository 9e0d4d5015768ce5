package cgroupfs

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// stableView keeps what two reads of an idle cgroup must agree on: limits,
// counters, errors, and which fields are present. Byte counts the kernel
// moves by itself (per-cpu charge batches, kernel memory of the reads
// themselves: 16 KiB then 256 KiB seen on 6.1) keep only their presence.
func stableView(m Memory) Memory {
	present := uint64(1)
	for _, p := range []**uint64{&m.Usage, &m.WorkingSet, &m.File, &m.Anon, &m.InactiveFile, &m.Kernel, &m.Slab, &m.Sock} {
		if *p != nil {
			*p = &present
		}
	}
	return m
}

// sameErrorText compares errors by message: two reads of a missing file
// give equal, not identical, errors.
var sameErrorText = cmp.Comparer(func(a, b error) bool {
	return a == nil && b == nil || a != nil && b != nil && a.Error() == b.Error()
})

// TestRealKernelNlinkCount proves the nlink shortcut of the v1 live count:
// on a real cgroup tree with leaves, nested children and a deep chain,
// countDirsNlink equals both a plain full walk and the number of
// directories made.
func TestRealKernelNlinkCount(t *testing.T) {
	fs := realFS(t)
	tr := newTestTree(t, fs)
	mk := tr.mkdir
	for i := range 20 {
		pod := fmt.Sprintf("%s/kubepods/burstable/pod%d", tr.root, i)
		mk(pod)
		for c := range i % 4 { // 0 to 3 containers: leaves and an empty pod
			mk(fmt.Sprintf("%s/c%d", pod, c))
		}
	}
	mk(tr.root + "/kubepods/besteffort")
	mk(tr.root + "/deep/a/b/c/d") // a chain: every level has nlink 3
	mk(tr.root + "/deep/a/b2")    // a sibling inside the chain

	// Count on the test tree alone, so concurrent cgroups elsewhere on the
	// host cannot make the two counts differ.
	sub := NewFSAt(Hierarchy{Mode: ModeV1, MemoryRoot: fs.abs(tr.root)}, "/proc")
	if !isCgroupFS(sub.Hierarchy.MemoryRoot) {
		t.Fatalf("%s is not on a cgroup file system", sub.Hierarchy.MemoryRoot)
	}
	var walkErrs []error
	plain := uint64(0)
	if err := sub.walk(func(string, string, []os.DirEntry) { plain++ }, &walkErrs); err != nil || len(walkErrs) > 0 {
		t.Fatal(err, walkErrs)
	}
	var errs []error
	fast, err := countDirsNlink(sub.Hierarchy.MemoryRoot, &errs, nil, nil)
	if err != nil || len(errs) > 0 {
		t.Fatal(err, errs)
	}
	want := uint64(len(tr.dirs) - 1) // every dir made below the root
	if diff := cmp.Diff([]uint64{want, want}, []uint64{plain, fast}); diff != "" {
		t.Fatalf("dirs below %s (-want +got [plain walk, nlink count]):\n%s", tr.root, diff)
	}
	t.Logf("%d cgroup dirs below the test root: plain walk %d, nlink count %d", want, plain, fast)

	// Node uses the nlink count on the whole hierarchy; it must agree with
	// the plain walk there too, up to cgroups others make meanwhile.
	for try := 0; ; try++ {
		var errs1, errs2 []error
		before, _ := countDirsNlink(fs.Hierarchy.MemoryRoot, &errs1, nil, nil)
		all := uint64(0)
		_ = fs.walk(func(string, string, []os.DirEntry) { all++ }, &errs2)
		after, _ := countDirsNlink(fs.Hierarchy.MemoryRoot, &errs1, nil, nil)
		if before == all && all == after {
			t.Logf("whole hierarchy: %d dirs by both counts", all)
			break
		}
		if try == 20 {
			t.Fatalf("whole hierarchy: nlink count %d/%d, plain walk %d", before, after, all)
		}
	}
}

// TestRealKernelNodeAndPods proves that the pods built from the live-count
// walk's listings are exactly Pods' own: both drivers, empty pods, pods
// with 1-3 containers, a container with a child cgroup, non-container
// directories, and a QoS directory with no pods.
func TestRealKernelNodeAndPods(t *testing.T) {
	fs := realFS(t)
	if fs.Hierarchy.Mode == ModeV2 || !isCgroupFS(fs.Hierarchy.MemoryRoot) {
		t.Skip("the shared walk is the v1 cgroup file system path")
	}
	tr := newTestTree(t, fs)
	id := func(i, c int) string { return fmt.Sprintf("%060x%04x", i, c) }
	for i := range 12 {
		pod := fmt.Sprintf("%s/kubepods/burstable/pod%08x-0000-4000-8000-%012x", tr.root, i, i)
		tr.mkdir(pod)
		for c := range i % 4 {
			tr.mkdir(pod + "/" + id(i, c))
		}
	}
	guar := tr.root + "/kubepods/pod0000aaaa-0000-4000-8000-000000000000"
	tr.mkdir(guar + "/" + id(99, 0) + "/nested") // a container with a child cgroup
	tr.mkdir(guar + "/not-a-container")
	sd := tr.root + "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0000bbbb_0000_4000_8000_000000000000.slice"
	tr.mkdir(sd + "/cri-containerd-" + id(7, 7) + ".scope")
	tr.mkdir(tr.root + "/kubepods/besteffort")

	want, err := fs.Pods(tr.root)
	if err != nil {
		t.Fatal(err)
	}
	rec := fs.podListings(tr.root)
	n := fs.node(rec)
	if !rec.done || len(rec.dirs) == 0 {
		t.Fatalf("the walk kept no listings (done %v, %d dirs); node errors %v", rec.done, len(rec.dirs), n.Errors)
	}
	got, err := fs.pods(tr.root, rec.list)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("pods from the walk's listings (-Pods +walk):\n%s", diff)
	}
	if len(got) != 14 {
		t.Fatalf("%d pods, want 14", len(got))
	}
	_, viaAPI, err := fs.NodeAndPods(tr.root)
	if err != nil || !cmp.Equal(want, viaAPI) {
		t.Fatalf("NodeAndPods pods differ from Pods (err %v):\n%s", err, cmp.Diff(want, viaAPI))
	}
	t.Logf("%d pods, %d pod-tree listings kept by the walk", len(got), len(rec.dirs))
}

// TestRealKernelKmemLimitCache proves the v1 kmem limit is read once per
// cgroup lifetime: a second read comes from the cache, a cgroup removed and
// made again under the same path (new inode) is read afresh, and Prune
// forgets cgroups no longer read. The reported value always equals the
// kernel's file.
func TestRealKernelKmemLimitCache(t *testing.T) {
	fs := realFS(t)
	if !fs.v1() {
		t.Skip("v1 only: v2 has no kmem limit")
	}
	tr := newTestTree(t, fs)
	cg := tr.root + "/pod"
	tr.mkdir(cg)
	kernel := func() *uint64 {
		data, err := ReadFile(fs.abs(cg) + "/memory.kmem.limit_in_bytes")
		if err != nil {
			t.Skipf("no kmem limit file on this kernel: %v", err)
		}
		v, unlimited, err := ParseLimit(data)
		if err != nil {
			t.Fatal(err)
		}
		if unlimited {
			return nil
		}
		return &v
	}
	entry := func() (dirID, kmemEntry, bool) {
		d, err := openDir(fs.abs(cg))
		if err != nil {
			t.Fatal(err)
		}
		defer d.close()
		id, err := d.id()
		if err != nil {
			t.Fatal(err)
		}
		fs.kmem.mu.Lock()
		defer fs.kmem.mu.Unlock()
		e, ok := fs.kmem.entries[id]
		return id, e, ok
	}
	read := func() Memory {
		m := fs.MemoryFields(cg, FieldKmemLimit)
		if len(m.Errors) > 0 {
			t.Fatal(m.Errors)
		}
		if diff := cmp.Diff(kernel(), m.KmemLimit); diff != "" {
			t.Fatalf("KmemLimit (-kernel +got):\n%s", diff)
		}
		return m
	}
	read()
	firstID, first, ok := entry()
	if !ok {
		t.Fatal("kmem limit not cached after the first read")
	}
	read()
	if _, again, _ := entry(); again != first {
		t.Fatalf("cache entry changed on a plain re-read: %+v -> %+v", first, again)
	}
	if err := os.Remove(fs.abs(cg)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(fs.abs(cg), 0o755); err != nil {
		t.Fatal(err)
	}
	read()
	recreatedID, _, ok := entry()
	if recreatedID == firstID || !ok {
		t.Fatalf("a cgroup made again under %s has the old identity %+v (cached: %v): cache cannot tell them apart", cg, firstID, ok)
	}
	if n := len(fs.kmem.entries); n != 2 {
		t.Fatalf("%d cache entries after a cgroup was made again, want 2 (old and new)", n)
	}
	fs.Prune() // read in this pass: kept
	if _, _, ok := entry(); !ok {
		t.Fatal("Prune dropped a cgroup read in this pass")
	}
	fs.Prune() // not read since: dropped
	if _, _, ok := entry(); ok {
		t.Fatal("Prune kept a cgroup not read since the previous Prune")
	}
	t.Logf("kmem limit %v, cached by %+v, then %+v once made again", ptrVal(kernel()), firstID, recreatedID)
}

// TestRealKernelPodMemory proves that reading containers relative to the
// open pod directory gives what MemoryFields gives by absolute path, that a
// container removed before the read gives the same not-found error, and
// that a unit whose container is the pod itself (--all-cgroups) works.
func TestRealKernelPodMemory(t *testing.T) {
	fs := realFS(t)
	tr := newTestTree(t, fs)
	pod := tr.root + "/kubepods/podaaaaaaaa-0000-4000-8000-000000000000"
	a, b := pod+"/"+strings.Repeat("a", 64), pod+"/"+strings.Repeat("b", 64)
	tr.mkdir(a)
	tr.mkdir(b)
	limitFile := "/memory.limit_in_bytes"
	if fs.Hierarchy.Mode == ModeV2 {
		limitFile = "/memory.max"
	}
	tr.write(pod+limitFile, "512M")
	tr.write(a+limitFile, "256M")
	gone := Container{ID: strings.Repeat("c", 64), Path: pod + "/" + strings.Repeat("c", 64)}
	p := Pod{UID: "aaaaaaaa-0000-4000-8000-000000000000", Path: pod,
		Containers: []Container{{ID: strings.Repeat("a", 64), Path: a}, {ID: strings.Repeat("b", 64), Path: b}, gone}}
	want := func(Container) Fields { return FieldStat | FieldLimit | FieldUsage | FieldEvents | FieldKernel }

	podMem, ctrs := fs.PodMemory(p, FieldStat|FieldLimit|FieldUsage, want)
	if diff := cmp.Diff(stableView(fs.MemoryFields(pod, FieldStat|FieldLimit|FieldUsage)), stableView(podMem)); diff != "" {
		t.Errorf("pod (-MemoryFields +PodMemory):\n%s", diff)
	}
	if podMem.Limit == nil || *podMem.Limit != 512<<20 {
		t.Errorf("pod limit %s, want %d", ptrVal(podMem.Limit), 512<<20)
	}
	for i, ct := range p.Containers {
		if diff := cmp.Diff(stableView(fs.MemoryFields(ct.Path, want(ct))), stableView(ctrs[i]), sameErrorText); diff != "" {
			t.Errorf("container %d (-MemoryFields +PodMemory):\n%s", i, diff)
		}
	}
	if ctrs[0].Limit == nil || *ctrs[0].Limit != 256<<20 {
		t.Errorf("container limit %s, want %d", ptrVal(ctrs[0].Limit), 256<<20)
	}
	if len(ctrs[2].Errors) != 1 || !errors.Is(ctrs[2].Errors[0].Err, iofs.ErrNotExist) || ctrs[2].Errors[0].Path != fs.abs(gone.Path) {
		t.Errorf("removed container: errors %v, want one not-found error for %s", ctrs[2].Errors, fs.abs(gone.Path))
	}

	self := Pod{Path: a, Containers: []Container{{ID: strings.Repeat("a", 64), Path: a}}}
	_, ctrs = fs.PodMemory(self, FieldLimit, want)
	if ctrs[0].Limit == nil || *ctrs[0].Limit != 256<<20 || len(ctrs[0].Errors) != 0 {
		t.Errorf("unit that is its own container: limit %s, errors %v", ptrVal(ctrs[0].Limit), ctrs[0].Errors)
	}

	// The caller owns what PodMemory returns: a later read after the
	// limits change leaves the earlier result as it was.
	first, firstCtrs := fs.PodMemory(p, FieldLimit, want)
	tr.write(pod+limitFile, "768M")
	tr.write(a+limitFile, "384M")
	second, secondCtrs := fs.PodMemory(p, FieldLimit, want)
	if first.Limit == nil || *first.Limit != 512<<20 || firstCtrs[0].Limit == nil || *firstCtrs[0].Limit != 256<<20 {
		t.Errorf("first read changed by the second: pod %s, container %s", ptrVal(first.Limit), ptrVal(firstCtrs[0].Limit))
	}
	if second.Limit == nil || *second.Limit != 768<<20 || secondCtrs[0].Limit == nil || *secondCtrs[0].Limit != 384<<20 {
		t.Errorf("second read: pod %s, container %s, want %d and %d", ptrVal(second.Limit), ptrVal(secondCtrs[0].Limit), 768<<20, 384<<20)
	}
}

// As a seq_file (one read when it fits) and read to EOF, with a buffer that
// holds the file and with one that it overflows, every memory file of a
// real cgroup reads as os.ReadFile reads it; a missing file fails with
// fs.ErrNotExist and its path.
func TestRealKernelDirRead(t *testing.T) {
	fsys := realFS(t)
	tr := newTestTree(t, fsys)
	d, err := openDir(fsys.abs(tr.root))
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	names := []string{nameStat, nameLimitV1, nameUsageV1, nameMax, nameCurrent, nameEvents}
	read := 0
	for _, seq := range []bool{false, true} {
		for _, name := range names {
			want, wantErr := os.ReadFile(d.path() + "/" + name)
			if wantErr != nil { // v1 or v2 only: the other's files are absent
				if _, err := d.read(name, &[]byte{}, seq); !errors.Is(err, iofs.ErrNotExist) || !strings.Contains(err.Error(), name) {
					t.Errorf("%s: %v, want a not-exist error naming it", name, err)
				}
				continue
			}
			for _, size := range []int{16 << 10, 7} {
				buf := make([]byte, 0, size)
				got, err := d.read(name, &buf, seq)
				if err != nil {
					t.Fatalf("%s, %d-byte buffer: %v", name, size, err)
				}
				if name != nameStat && name != nameEvents && string(got) != string(want) { // stat and events move
					t.Errorf("%s, %d-byte buffer: %q, want %q", name, size, got, want)
				}
				if len(got) < 2 || got[len(got)-1] != '\n' {
					t.Errorf("%s, %d-byte buffer: %q is not whole", name, size, got)
				}
				read++
			}
		}
	}
	if read < 8 {
		t.Errorf("only %d reads compared", read)
	}
}

// TestRealKernelDirCacheFollowsChanges proves the live-memcg walk's listing
// cache on a real tree: after each change (a container replaced by another
// under the same count, one added, one removed, a child made below a leaf,
// a whole pod removed) the cached walk's count and pod-tree listings equal
// an uncached walk's, an unchanged directory comes from the cache, and a
// removed one leaves it.
func TestRealKernelDirCacheFollowsChanges(t *testing.T) {
	fs := realFS(t)
	if fs.Hierarchy.Mode == ModeV2 || !isCgroupFS(fs.Hierarchy.MemoryRoot) {
		t.Skip("the nlink walk is the v1 cgroup file system path")
	}
	tr := newTestTree(t, fs)
	pod := func(i int) string { return fmt.Sprintf("%s/kubepods/burstable/pod%d", tr.root, i) }
	for i := range 4 {
		for c := range 2 {
			tr.mkdir(fmt.Sprintf("%s/c%d", pod(i), c))
		}
	}
	root := fs.abs(tr.root)
	var known dirCache
	walk := func(cache *dirCache) (uint64, map[string]listing) {
		t.Helper()
		rec := &listings{tops: []string{root}}
		rec.reset()
		var errs []error
		n, err := countDirsNlink(root, &errs, rec, cache)
		if err != nil || len(errs) > 0 {
			t.Fatal(err, errs)
		}
		return n, rec.dirs
	}
	check := func(step string) map[string]listing {
		t.Helper()
		n, dirs := walk(&known)
		wantN, wantDirs := walk(nil)
		if n != wantN {
			t.Fatalf("%s: cached walk counts %d dirs, uncached %d", step, n, wantN)
		}
		if diff := cmp.Diff(wantDirs, dirs, cmp.AllowUnexported(listing{})); diff != "" {
			t.Fatalf("%s: listings (-uncached +cached):\n%s", step, diff)
		}
		return dirs
	}
	rmdir := func(p string) {
		t.Helper()
		if err := os.Remove(fs.abs(p)); err != nil {
			t.Fatal(err)
		}
	}
	names := func(dirs map[string]listing, p string) []string { return dirs[fs.abs(p)].names }

	first := check("first walk")
	again := check("unchanged")
	if a, b := names(first, pod(0)), names(again, pod(0)); len(a) != 2 || &a[0] != &b[0] {
		t.Fatalf("unchanged pod listed again: %v then %v (want the cached slice)", a, b)
	}

	rmdir(pod(0) + "/c1")
	tr.mkdir(pod(0) + "/c7") // same count, other name
	if got := names(check("replaced"), pod(0)); !cmp.Equal(got, []string{"c0", "c7"}) {
		t.Fatalf("replaced: pod0 listed as %v, want [c0 c7]", got)
	}
	tr.mkdir(pod(1) + "/c2")
	check("added")
	rmdir(pod(2) + "/c0")
	check("removed")
	tr.mkdir(pod(3) + "/c0/nested") // a leaf gets a child
	check("child below a leaf")

	var st unix.Stat_t
	if err := unix.Stat(fs.abs(pod(1)), &st); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"c0", "c1", "c2"} {
		rmdir(pod(1) + "/" + c)
	}
	rmdir(pod(1))
	if got := names(check("pod removed"), pod(1)); got != nil {
		t.Fatalf("removed pod still listed: %v", got)
	}
	if _, ok := known.entries[statID(&st)]; ok {
		t.Fatal("the removed pod's directory stayed in the cache")
	}
	t.Logf("%d directories cached after the last walk", len(known.entries))
}

package cgroupfs

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path"
	"strings"
)

// podTop is where one kubelet driver puts its pods below the cgroup root.
type podTop struct {
	dir    string
	driver Driver
	qosDir map[string]QOS // child directories holding the pods of a QoS class
}

var podTops = []podTop{
	{dir: "kubepods", driver: DriverCgroupfs, qosDir: map[string]QOS{
		"burstable": QOSBurstable, "besteffort": QOSBestEffort}},
	{dir: "kubepods.slice", driver: DriverSystemd, qosDir: map[string]QOS{
		"kubepods-burstable.slice": QOSBurstable, "kubepods-besteffort.slice": QOSBestEffort}},
}

// Pods lists the pod cgroups below the kubelet's cgroup root (its
// --cgroup-root, "/" by default) for both cgroup drivers, with their
// container cgroups. No kubepods directory means no pods: (nil, nil). A pod
// that vanishes during the walk is skipped; other unreadable directories are
// skipped too and reported in the joined error next to the pods that were read.
func (fs *FS) Pods(cgroupRoot string) ([]Pod, error) {
	return fs.pods(cgroupRoot, listDirs)
}

// NodeAndPods is Node and Pods(cgroupRoot) with one walk where it can: on a
// v1 cgroup file system the live-memcg count lists every directory that has
// subdirectories, every pod directory included, so the pods come from those
// listings (BenchmarkNode, docs/performance.md). Elsewhere it is Node, then Pods.
func (fs *FS) NodeAndPods(cgroupRoot string) (Node, []Pod, error) {
	rec := fs.podListings(cgroupRoot)
	n := fs.node(rec)
	if !rec.done {
		pods, err := fs.Pods(cgroupRoot)
		return n, pods, err
	}
	pods, err := fs.pods(cgroupRoot, rec.list)
	return n, pods, err
}

// pods is Pods with list giving the subdirectories of an absolute path.
func (fs *FS) pods(cgroupRoot string, list func(dir string) ([]string, error)) ([]Pod, error) {
	root := path.Clean("/" + cgroupRoot)
	var pods []Pod
	var errs []error
	for _, top := range podTops {
		topPath := path.Join(root, top.dir)
		children, err := list(fs.abs(topPath))
		if err != nil {
			if !errors.Is(err, iofs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		for _, name := range children {
			if q, ok := top.qosDir[name]; ok {
				qosPath := path.Join(topPath, name)
				inner, err := list(fs.abs(qosPath))
				if err != nil {
					if !errors.Is(err, iofs.ErrNotExist) {
						errs = append(errs, err)
					}
					continue
				}
				for _, n := range inner {
					pods, errs = fs.addPod(pods, errs, list, top.driver, q, qosPath, n)
				}
				continue
			}
			pods, errs = fs.addPod(pods, errs, list, top.driver, QOSGuaranteed, topPath, name)
		}
	}
	return pods, errors.Join(errs...)
}

// addPod appends the pod cgroup parent/name if name is a pod of this driver
// whose QoS matches its parent directory.
func (fs *FS) addPod(pods []Pod, errs []error, list func(string) ([]string, error), driver Driver, qos QOS, parent, name string) ([]Pod, []error) {
	uid, nameQOS, d, ok := ParsePodCgroupName(name)
	if !ok || d != driver || (nameQOS != "" && nameQOS != qos) {
		return pods, errs
	}
	podPath := path.Join(parent, name)
	children, err := list(fs.abs(podPath))
	if err != nil {
		if !errors.Is(err, iofs.ErrNotExist) {
			errs = append(errs, err)
		}
		return pods, errs
	}
	pod := Pod{UID: uid, QOS: qos, Driver: driver, Path: podPath, Containers: make([]Container, 0, len(children))}
	for _, c := range children {
		if id, rt, ok := ParseContainerCgroupName(c); ok {
			pod.Containers = append(pod.Containers, Container{ID: id, Runtime: rt, Path: podPath + "/" + c})
		}
	}
	return append(pods, pod), errs
}

// runtimeParents are directories whose bare 64-hex children are containers
// of a known runtime outside Kubernetes (docker's cgroupfs driver).
var runtimeParents = map[string]Runtime{"docker": RuntimeDocker}

// RuntimeContainers lists every container cgroup a runtime named anywhere in
// the memory hierarchy, for hosts without Kubernetes (--all-cgroups):
// docker/<id>, system.slice/docker-<id>.scope, cri-containerd-<id>.scope,
// crio-<id>.scope, and bare 64-hex directories under docker/ or a pod cgroup.
// Unreadable directories are skipped and reported in the joined error.
func (fs *FS) RuntimeContainers() ([]Container, error) {
	var out []Container
	var errs []error
	err := fs.walk(func(rel, parent string, _ []os.DirEntry) {
		name := path.Base(rel)
		id, rt, ok := ParseContainerCgroupName(name)
		if !ok {
			return
		}
		if rt == RuntimeUnknown {
			prt, known := runtimeParents[parent]
			if _, _, _, isPod := ParsePodCgroupName(parent); !known && !isPod {
				return
			}
			rt = prt
		}
		out = append(out, Container{ID: id, Runtime: rt, Path: rel})
	}, &errs)
	if err != nil {
		return out, err
	}
	return out, errors.Join(errs...)
}

// walk calls fn for every cgroup directory below MemoryRoot (not the root
// itself) with its path relative to MemoryRoot, its parent's name and its
// entries. Symlinks are never followed. A directory that vanished is skipped;
// other unreadable ones are appended to errs. Only an unreadable root fails.
func (fs *FS) walk(fn func(rel, parent string, entries []os.DirEntry), errs *[]error) error {
	entries, err := readDirEntries(fs.Hierarchy.MemoryRoot)
	if err != nil {
		return err
	}
	var visit func(rel string, entries []os.DirEntry)
	visit = func(rel string, entries []os.DirEntry) {
		parent := path.Base(rel)
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			child := strings.TrimSuffix(rel, "/") + "/" + e.Name()
			sub, err := readDirEntries(fs.Hierarchy.MemoryRoot + child)
			if err != nil {
				if !errors.Is(err, iofs.ErrNotExist) {
					*errs = append(*errs, err)
				}
				continue
			}
			fn(child, parent, sub)
			visit(child, sub)
		}
	}
	visit("/", entries)
	return nil
}

func readDirEntries(dir string) ([]os.DirEntry, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrFileRead, dir, err)
	}
	return entries, nil
}

package shmscan

import "strings"

// Origin is what a host mount point's path says about the tmpfs mounted there.
type Origin struct {
	Source    Source
	Volume    string // emptyDir volume name
	PodUID    string // emptyDir pod uid
	SandboxID string // runtime sandbox (or container) id
}

// ClassifyHostPath tells from the shape of a host mount point which runtime or
// kubelet made it. It matches the path's tail, never a fixed prefix, because
// containerd's state dir and the kubelet's root dir are configurable:
//
//	.../pods/<uid>/volumes/kubernetes.io~empty-dir/<name>  emptyDir
//	.../sandboxes/<id>/shm                                 containerd (and the bench tree)
//	.../<id>/userdata/shm                                  CRI-O
//	.../containers/<id>/mounts/shm                         Docker
//
// The host's own /dev/shm is recognised by device, not by path (see
// Scanner); ClassifyHostPath reports it as unknown.
func ClassifyHostPath(p string) Origin {
	if !strings.HasPrefix(p, "/") {
		return Origin{Source: SourceUnknown}
	}
	parts := strings.Split(p[1:], "/")
	for _, c := range parts {
		if !goodComponent(c) {
			return Origin{Source: SourceUnknown}
		}
	}
	n := len(parts)
	tail := func(i int) string { return parts[n-i] } // tail(1) is the last component
	switch {
	case n >= 5 && tail(5) == "pods" && tail(3) == "volumes" && tail(2) == "kubernetes.io~empty-dir":
		return Origin{Source: SourceEmptyDir, PodUID: tail(4), Volume: tail(1)}
	case n >= 3 && tail(3) == "sandboxes" && tail(1) == "shm":
		return Origin{Source: SourceRuntime, SandboxID: tail(2)}
	case n >= 4 && tail(4) == "containers" && tail(2) == "mounts" && tail(1) == "shm":
		return Origin{Source: SourceRuntime, SandboxID: tail(3)}
	case n >= 3 && tail(2) == "userdata" && tail(1) == "shm":
		return Origin{Source: SourceRuntime, SandboxID: tail(3)}
	}
	return Origin{Source: SourceUnknown}
}

// goodComponent rejects the path pieces that would make an id or a name
// meaningless: empty (a "//" or trailing slash), ".", "..", and control bytes
// (the kernel escapes whitespace in mountinfo, so these only come from bad input).
func goodComponent(c string) bool {
	if c == "" || c == "." || c == ".." {
		return false
	}
	for i := 0; i < len(c); i++ {
		if c[i] < 0x20 || c[i] == 0x7f {
			return false
		}
	}
	return true
}

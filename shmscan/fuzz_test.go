package shmscan

import (
	"strings"
	"testing"
)

func FuzzClassifyHostPath(f *testing.F) {
	for _, s := range []string{
		"/run/containerd/io.containerd.grpc.v1.cri/sandboxes/abc/shm",
		"/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/dshm",
		"/var/lib/docker/containers/id/mounts/shm", "/x/id/userdata/shm",
		"/dev/shm", "", "/", "//", "/sandboxes/\x00/shm", strings.Repeat("/a", 1<<19),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		o := ClassifyHostPath(p)
		switch o.Source {
		case SourceUnknown:
			if o != (Origin{Source: SourceUnknown}) {
				t.Fatalf("unknown with ids: %+v", o)
			}
		case SourceRuntime:
			if o.SandboxID == "" || strings.Contains(o.SandboxID, "/") || !strings.Contains(p, o.SandboxID) {
				t.Fatalf("bad sandbox id %+v for %q", o, p)
			}
		case SourceEmptyDir:
			if o.PodUID == "" || o.Volume == "" || !strings.HasSuffix(p, "/"+o.Volume) {
				t.Fatalf("bad emptyDir %+v for %q", o, p)
			}
		default:
			t.Fatalf("source %q from a path", o.Source)
		}
	})
}

func FuzzParseSizeOption(f *testing.F) {
	for _, s := range []string{"rw,size=65536k,noswap", "size=64m", "size=50%", "size=16e", "size=-1",
		"size=18446744073709551615", "size=,size=1", "size=1k\x00", strings.Repeat("size=9", 1<<10)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := parseSizeOption(s)
		if n != nil && (*n == 0 || *n > 1<<63-1) {
			t.Fatalf("parseSizeOption(%q) = %d", s, *n)
		}
	})
}

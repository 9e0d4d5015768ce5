package shmscan

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestClassifyHostPath(t *testing.T) {
	const id = "4f1d2c3b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0011"
	const uid = "1e2d3c4b-aaaa-4bbb-8ccc-0123456789ab"
	tests := []struct {
		path string
		want Origin
	}{
		{"/run/containerd/io.containerd.grpc.v1.cri/sandboxes/" + id + "/shm", Origin{Source: SourceRuntime, SandboxID: id}},
		{"/var/lib/k8s-rig/containerd/state/io.containerd.grpc.v1.cri/sandboxes/" + id + "/shm", Origin{Source: SourceRuntime, SandboxID: id}},
		{"/tmp/benchroot/containerd/sandboxes/" + id + "/shm", Origin{Source: SourceRuntime, SandboxID: id}},
		{"/run/containers/storage/overlay-containers/" + id + "/userdata/shm", Origin{Source: SourceRuntime, SandboxID: id}},
		{"/var/lib/docker/containers/" + id + "/mounts/shm", Origin{Source: SourceRuntime, SandboxID: id}},
		{"/var/lib/kubelet/pods/" + uid + "/volumes/kubernetes.io~empty-dir/dshm", Origin{Source: SourceEmptyDir, PodUID: uid, Volume: "dshm"}},
		{"/tmp/benchroot/kubelet/pods/" + uid + "/volumes/kubernetes.io~empty-dir/cache", Origin{Source: SourceEmptyDir, PodUID: uid, Volume: "cache"}},
		{"/var/lib/kubelet/pods/" + uid + "/volumes/kubernetes.io~empty-dir/shm", Origin{Source: SourceEmptyDir, PodUID: uid, Volume: "shm"}},
		{"/var/lib/kubelet/pods/" + uid + "/volumes/kubernetes.io~projected/kube-api-access", Origin{Source: SourceUnknown}},
		{"/var/lib/kubelet/pods/" + uid + "/volumes/kubernetes.io~empty-dir/dshm/sub", Origin{Source: SourceUnknown}},
		{"/dev/shm", Origin{Source: SourceUnknown}}, // host shm is known by device
		{"/sandboxes/x/shm", Origin{Source: SourceRuntime, SandboxID: "x"}},
		{"sandboxes/x/shm", Origin{Source: SourceUnknown}},
		{"/run/sandboxes//shm", Origin{Source: SourceUnknown}},
		{"/run/sandboxes/../shm", Origin{Source: SourceUnknown}},
		{"/run/sandboxes/a\nb/shm", Origin{Source: SourceUnknown}},
		{"/userdata/shm", Origin{Source: SourceUnknown}},
		{"", Origin{Source: SourceUnknown}},
		{"/", Origin{Source: SourceUnknown}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, ClassifyHostPath(tt.path)); diff != "" {
			t.Errorf("ClassifyHostPath(%q) (-want +got):\n%s", tt.path, diff)
		}
	}
}

func TestParseSizeOption(t *testing.T) {
	tests := []struct {
		opts string
		want *uint64
	}{
		{"rw,size=65536k,noswap", u64p(64 << 20)},
		{"rw,size=65536k", u64p(64 << 20)},
		{"size=64m", u64p(64 << 20)},
		{"size=1G", u64p(1 << 30)},
		{"size=4096", u64p(4096)},
		{"size=1k,size=2k", u64p(2048)}, // the kernel takes the last
		{"size=50%", nil},               // percent of RAM: not a byte count here
		{"rw,nr_inodes=100", nil},
		{"size=0", nil}, // tmpfs: unlimited
		{"size=", nil},
		{"size=k", nil},
		{"size=-1", nil},
		{"size=+1", nil},
		{"size=16e", nil},                  // 2^64: overflows
		{"size=18446744073709551615", nil}, // > MaxInt64
		{"size=9223372036854775807", u64p(9223372036854775807)},
		{"size=64x", nil},
		{"", nil},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, parseSizeOption(tt.opts)); diff != "" {
			t.Errorf("parseSizeOption(%q) (-want +got):\n%s", tt.opts, diff)
		}
	}
}

func u64p(n uint64) *uint64 { return &n }

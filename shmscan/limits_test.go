package shmscan

import (
	"testing"
)

const (
	mi = uint64(1) << 20
	gi = uint64(1) << 30
)

func bp(b bool) *bool { return &b }

// The seeds' cases (see docs/shm-limits.md): what the kubelet sizes a memory
// emptyDir to.
func TestExpectedEmptyDirSize(t *testing.T) {
	const nodeRAM = 29 * gi // seed 000's node: df shows ~14.7G for an unsized emptyDir
	halfRAM := nodeRAM / 2
	alloc := 28 * gi
	tests := []struct {
		name                        string
		version                     string
		gate                        *bool
		sizeLimit, podLimit, nodeAl *uint64
		want                        uint64
		wantSized                   bool
	}{
		{"1.19 sizeLimit 256Mi: half of RAM, sizeLimit only by eviction", "v1.19.2", nil, u64p(256 * mi), nil, &alloc, halfRAM, false},
		{"1.19 gate forced on: the gate does not exist yet", "v1.19.2", bp(true), u64p(256 * mi), nil, &alloc, halfRAM, false},
		{"1.20 gate default off", "v1.20.4", nil, u64p(256 * mi), nil, &alloc, halfRAM, false},
		{"1.21 gate off explicitly", "v1.21.0", bp(false), u64p(256 * mi), u64p(128 * mi), &alloc, halfRAM, false},
		{"1.20 gate on: sizeLimit", "v1.20.4", bp(true), u64p(256 * mi), nil, &alloc, 256 * mi, true},
		{"1.22 default on: sizeLimit 256Mi", "v1.22.2", nil, u64p(256 * mi), nil, &alloc, 256 * mi, true},
		{"1.22 sizeLimit 256Mi capped by pod limit 128Mi", "v1.22.2", nil, u64p(256 * mi), u64p(128 * mi), &alloc, 128 * mi, true},
		{"1.22 no sizeLimit, pod limit 128Mi", "v1.22.2", nil, nil, u64p(128 * mi), &alloc, 128 * mi, true},
		{"1.22 no limits: node allocatable", "v1.22.2", nil, nil, nil, &alloc, alloc, true},
		{"1.22 gate off explicitly", "1.22.0", bp(false), nil, u64p(128 * mi), &alloc, halfRAM, false},
		{"1.22 nothing known: no size=", "v1.22.2", nil, nil, nil, nil, halfRAM, false},
		{"1.22 sizeLimit above allocatable", "v1.22.2", nil, u64p(64 * gi), nil, &alloc, alloc, true},
		{"1.22 zero sizeLimit ignored", "v1.22.2", nil, u64p(0), u64p(128 * mi), &alloc, 128 * mi, true},
		{"1.22 odd size rounds up to a page", "v1.22.2", nil, u64p(1000), nil, &alloc, 4096, true},
		{"1.32 GA: gate=false is ignored", "v1.32.1", bp(false), u64p(256 * mi), nil, &alloc, 256 * mi, true},
		{"vendor suffix", "v1.28.3-eks-4f4795d", nil, nil, u64p(128 * mi), &alloc, 128 * mi, true},
		{"unparseable version, gate given", "garbage", bp(true), u64p(256 * mi), nil, &alloc, 256 * mi, true},
		{"unparseable version, no gate: unknown", "garbage", nil, u64p(256 * mi), nil, &alloc, 0, false},
	}
	for _, tt := range tests {
		size, sized := ExpectedEmptyDirSize(tt.version, tt.gate, tt.sizeLimit, tt.podLimit, tt.nodeAl, nodeRAM)
		if size != tt.want || sized != tt.wantSized {
			t.Errorf("%s: got (%d, %v), want (%d, %v)", tt.name, size, sized, tt.want, tt.wantSized)
		}
	}
}

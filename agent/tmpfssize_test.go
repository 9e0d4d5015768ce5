package agent

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func bp(b bool) *bool { return &b }

// The seeds' cases (see docs/shm-limits.md): what the kubelet sizes a memory
// emptyDir to, and which input decided it.
func TestExplainEmptyDirSize(t *testing.T) {
	memTotal := 29 * gi // seed 000's node: df shows ~14.7G for an unsized emptyDir
	halfRAM := memTotal / 2
	alloc := 28 * gi
	sized := func(n uint64, by string) TmpfsSize {
		return TmpfsSize{ExpectedBytes: u64p(n), DecidedBy: by, Sized: true}
	}
	half := TmpfsSize{ExpectedBytes: u64p(halfRAM), DecidedBy: byHalfRAM}
	tests := []struct {
		name                        string
		version                     string
		gate                        *bool
		sizeLimit, podLimit, nodeAl *uint64
		want                        TmpfsSize
	}{
		{"1.19 sizeLimit 256Mi: half of RAM, sizeLimit only by eviction", "v1.19.2", nil, u64p(256 * mi), nil, &alloc, half},
		{"1.19 gate forced on: the gate does not exist yet", "v1.19.2", bp(true), u64p(256 * mi), nil, &alloc, half},
		{"1.20 gate default off", "v1.20.4", nil, u64p(256 * mi), nil, &alloc, half},
		{"1.21 gate off explicitly", "v1.21.0", bp(false), u64p(256 * mi), u64p(128 * mi), &alloc, half},
		{"1.20 gate on: sizeLimit", "v1.20.4", bp(true), u64p(256 * mi), nil, &alloc, sized(256*mi, bySizeLimit)},
		{"1.22 default on: sizeLimit 256Mi", "v1.22.2", nil, u64p(256 * mi), nil, &alloc, sized(256*mi, bySizeLimit)},
		{"1.22 sizeLimit 256Mi capped by pod limit 128Mi", "v1.22.2", nil, u64p(256 * mi), u64p(128 * mi), &alloc, sized(128*mi, byMemoryLimit)},
		{"1.33 sizeLimit 256Mi capped by pod limit 128Mi", "v1.33.13", nil, u64p(256 * mi), u64p(128 * mi), &alloc, sized(128*mi, byMemoryLimit)},
		{"1.22 sizeLimit equal to the pod limit: sizeLimit decides", "v1.22.2", nil, u64p(128 * mi), u64p(128 * mi), &alloc, sized(128*mi, bySizeLimit)},
		{"1.22 no sizeLimit, pod limit 128Mi", "v1.22.2", nil, nil, u64p(128 * mi), &alloc, sized(128*mi, byMemoryLimit)},
		{"1.22 no limits: node allocatable", "v1.22.2", nil, nil, nil, &alloc, sized(alloc, byAllocatable)},
		{"1.22 gate off explicitly", "1.22.0", bp(false), nil, u64p(128 * mi), &alloc, half},
		{"1.22 allocatable unknown", "v1.22.2", nil, nil, u64p(128 * mi), nil, TmpfsSize{Sized: true, Unknown: "node allocatable memory unknown (needs the API)"}},
		{"1.22 sizeLimit above allocatable", "v1.22.2", nil, u64p(64 * gi), nil, &alloc, sized(alloc, byAllocatable)},
		{"1.22 zero sizeLimit ignored", "v1.22.2", nil, u64p(0), u64p(128 * mi), &alloc, sized(128*mi, byMemoryLimit)},
		{"1.22 odd size rounds up to a page", "v1.22.2", nil, u64p(1000), nil, &alloc, sized(4096, bySizeLimit)},
		{"1.32 GA: gate=false is ignored", "v1.32.1", bp(false), u64p(256 * mi), nil, &alloc, sized(256*mi, bySizeLimit)},
		{"vendor suffix", "v1.28.3-eks-4f4795d", nil, nil, u64p(128 * mi), &alloc, sized(128*mi, byMemoryLimit)},
		{"unparseable version, gate given", "garbage", bp(true), u64p(256 * mi), nil, &alloc, sized(256*mi, bySizeLimit)},
	}
	for _, tt := range tests {
		got := ExplainEmptyDirSize(sizeInputs{ServerVersion: tt.version, Gate: tt.gate, SizeLimit: tt.sizeLimit,
			PodLimit: tt.podLimit, Allocatable: tt.nodeAl, MemTotal: &memTotal})
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
	for _, tc := range []struct {
		name string
		in   sizeInputs
		want string
	}{
		{"no version, no gate", sizeInputs{SizeLimit: u64p(256 * mi), Allocatable: &alloc, MemTotal: &memTotal}, "no Kubernetes version"},
		{"gate off, meminfo unreadable", sizeInputs{ServerVersion: "v1.19.0"}, "node RAM unknown"},
	} {
		got := ExplainEmptyDirSize(tc.in)
		if got.ExpectedBytes != nil || !strings.Contains(got.Unknown, tc.want) {
			t.Errorf("%s: %+v, want unknown size saying %q", tc.name, got, tc.want)
		}
	}
}

// The scan table's note and the audit finding for the seeds' two surprises.
func TestTmpfsSizeNoteAndFinding(t *testing.T) {
	pod := &Pod{Namespace: "ml", Name: "trainer-0"}
	cut := &Shm{Source: "emptydir", Volume: "dshm", Size: u64p(128 * mi), SizeLimit: u64p(256 * mi),
		SizeExplained: &TmpfsSize{ExpectedBytes: u64p(128 * mi), DecidedBy: byMemoryLimit, Sized: true}}
	if got, want := sizeNote(cut), "limits.memory; sizeLimit 256Mi"; got != want {
		t.Errorf("note = %q, want %q", got, want)
	}
	f := tmpfsSizeFinding(pod, cut)
	if f.Severity != SeverityWarning || !strings.Contains(f.Message, "sizeLimit 256Mi is cut to 128Mi by limits.memory") {
		t.Errorf("cut finding = %+v", f)
	}
	halfNode := &Shm{Source: "emptydir", Volume: "cache", Size: u64p(14*gi + 512*mi), SizeLimit: u64p(256 * mi),
		SizeExplained: &TmpfsSize{ExpectedBytes: u64p(14*gi + 512*mi), DecidedBy: byHalfRAM}}
	if f := tmpfsSizeFinding(pod, halfNode); f.Severity != SeverityWarning || !strings.Contains(f.Message, "enforced only by eviction") {
		t.Errorf("half-node finding = %+v", f)
	}
	bySize := &Shm{Source: "emptydir", Volume: "a", Size: u64p(256 * mi), SizeLimit: u64p(256 * mi),
		SizeExplained: &TmpfsSize{ExpectedBytes: u64p(256 * mi), DecidedBy: bySizeLimit, Sized: true}}
	if got := sizeNote(bySize); got != "sizeLimit" {
		t.Errorf("note = %q, want sizeLimit", got)
	}
	if f := tmpfsSizeFinding(pod, bySize); f.Check != "" {
		t.Errorf("a tmpfs sized by its sizeLimit is no finding: %+v", f)
	}
	differs := &Shm{Source: "emptydir", Size: u64p(64 * mi), SizeExplained: &TmpfsSize{ExpectedBytes: u64p(128 * mi), DecidedBy: byMemoryLimit, Sized: true}}
	if got := sizeNote(differs); got != "expected 128Mi by limits.memory" {
		t.Errorf("note = %q", got)
	}
	if got := sizeNote(&Shm{SizeExplained: &TmpfsSize{Unknown: "x"}}); got != "size reason unknown" {
		t.Errorf("note = %q", got)
	}
}

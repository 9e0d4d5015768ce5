package cgroupfs

import "testing"

// MemcgIDHeadroom is 65535 minus num_cgroups, set only on kernels that do
// not recycle memcg ids (< 4.7), and never guessed for a release that does
// not parse.
func TestMemcgIDHeadroom(t *testing.T) {
	tests := []struct {
		release    string
		numCgroups uint64
		want       *int64
	}{
		{"3.10.0-1160.el7.x86_64", 1000, i64p(64535)},
		{"4.6.7", 65535, i64p(0)},
		{"4.4.0-210-generic", 70000, i64p(-4465)}, // more than the ids: what a leaking node reports
		{"4.7.0", 1000, nil},
		{"6.18.0", 1000, nil},
		{"5.10", 1, nil},
		{"", 1000, nil},
		{"garbage", 1000, nil},
	}
	var fs FS
	for _, tt := range tests {
		n := Node{KernelRelease: tt.release}
		fs.idHeadroom(&n, tt.numCgroups)
		switch {
		case tt.want == nil && n.MemcgIDHeadroom != nil:
			t.Errorf("%q, %d cgroups: headroom %d, want none", tt.release, tt.numCgroups, *n.MemcgIDHeadroom)
		case tt.want != nil && (n.MemcgIDHeadroom == nil || *n.MemcgIDHeadroom != *tt.want):
			t.Errorf("%q, %d cgroups: headroom %v, want %d", tt.release, tt.numCgroups, n.MemcgIDHeadroom, *tt.want)
		}
	}
}

func i64p(v int64) *int64 { return &v }

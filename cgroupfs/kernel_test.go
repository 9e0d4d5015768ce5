package cgroupfs

import "testing"

func TestKernelAtLeast(t *testing.T) {
	for _, tc := range []struct {
		release     string
		atLeast, ok bool
	}{
		{"3.10.0-1160.el7.x86_64", false, true},
		{"4.6.0", true, true},
		{"4.7", true, true},
		{"4.5.7-200.fc23.x86_64", false, true},
		{"6.18.44-fc-v657", true, true},
		{"5.4rc1", true, true},
		{"", false, false},
		{"linux", false, false},
	} {
		atLeast, ok := KernelAtLeast(tc.release, 4, 6)
		if atLeast != tc.atLeast || ok != tc.ok {
			t.Errorf("KernelAtLeast(%q, 4, 6) = %v, %v; want %v, %v", tc.release, atLeast, ok, tc.atLeast, tc.ok)
		}
	}
}

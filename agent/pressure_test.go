package agent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/shmwatch/shmwatch/cgroupfs"
)

// TestPressureSeconds: a pressure file's totals become seconds exactly as
// total / 1e6, from the file the 6.1 VM showed after a throttled writer.
func TestPressureSeconds(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(captures, "vm-v2", "squeezed.proc.pressure.memory"))
	if err != nil {
		t.Fatal(err)
	}
	psi, err := cgroupfs.ParsePSI(data)
	if err != nil {
		t.Fatal(err)
	}
	got := pressureOf(&psi)
	if got.SomeSeconds != 34789579/1e6 || got.FullSeconds == nil || *got.FullSeconds != 34710451/1e6 {
		t.Fatalf("pressure = %+v (full %v), want some 34.789579 s, full 34.710451 s", got, got.FullSeconds)
	}
	if got.SomeAvg10 != 95.46 || *got.FullAvg10 != 95.42 {
		t.Errorf("avg10 = %v/%v, want 95.46/95.42", got.SomeAvg10, *got.FullAvg10)
	}
	if pressureOf(nil) != nil {
		t.Error("no pressure file must stay nil")
	}
}

// Package realkernel is how a real-kernel test gives up when the kernel
// facility it needs (root, a writable memory cgroup, tmpfs, FUSE, ...) is
// missing: it skips on a developer's machine and fails where the suite
// must run whole (CI sets SHMWATCH_REAL_KERNEL=required), so a test that
// silently did not run cannot pass for one that did.
package realkernel

import (
	"fmt"
	"os"
	"testing"
)

// EnvVar set to "required" turns every Skip into a failure.
const EnvVar = "SHMWATCH_REAL_KERNEL"

// Required reports whether real-kernel tests must run here.
func Required() bool { return os.Getenv(EnvVar) == "required" }

// Skip skips tb with the reason, or fails it when Required.
func Skip(tb testing.TB, format string, args ...any) {
	tb.Helper()
	reason := fmt.Sprintf(format, args...)
	if Required() {
		tb.Fatalf("real-kernel test cannot run, and %s=required: %s", EnvVar, reason)
	}
	tb.Skip("real-kernel test: " + reason)
}

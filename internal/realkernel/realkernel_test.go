package realkernel

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Skip skips without the variable and fails with it: run in a child
// process, since a failing test cannot be observed from inside.
func TestSkipFailsWhenRequired(t *testing.T) {
	if os.Getenv("REALKERNEL_CHILD") == "1" {
		Skip(t, "child")
		return
	}
	for _, tc := range []struct {
		env      string
		wantFail bool
		want     string
	}{
		{"", false, "SKIP: TestSkipFailsWhenRequired"},
		{"required", true, EnvVar + "=required: child"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSkipFailsWhenRequired$", "-test.v")
		cmd.Env = append(os.Environ(), "REALKERNEL_CHILD=1", EnvVar+"="+tc.env)
		out, err := cmd.CombinedOutput()
		if (err != nil) != tc.wantFail || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s=%q: err %v, output %q; want failure %v and %q", EnvVar, tc.env, err, out, tc.wantFail, tc.want)
		}
	}
}

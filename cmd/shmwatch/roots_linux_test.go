package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shmwatch/shmwatch/internal/podtree"
)

// runReport runs the binary with no API server and extra environment.
func runReport(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	requireBinary(t)
	cmd := exec.Command(binPath, append(args, "--kubeconfig=", "--log-root="+t.TempDir())...)
	cmd.Env = append(append(os.Environ(), "KUBECONFIG=", "KUBERNETES_SERVICE_HOST=", "SHMWATCH_HOST_ROOT="), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestMissingRootsAreErrors: a --cgroup-root or host root that does not exist
// stops scan and audit with the flag's name, never "no pod cgroups found".
func TestMissingRootsAreErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	cases := []struct {
		name string
		env  []string
		args []string
		flag string
	}{
		{"scan cgroup-root", nil, []string{"scan", "--cgroup-root=/shmwatch-no-such-cgroup"}, "--cgroup-root"},
		{"audit cgroup-root", nil, []string{"audit", "--cgroup-root=/shmwatch-no-such-cgroup"}, "--cgroup-root"},
		{"scan host-root flag", nil, []string{"scan", "--host-root=" + missing}, "--host-root"},
		{"audit host-root env", []string{"SHMWATCH_HOST_ROOT=" + missing}, []string{"audit"}, "--host-root"},
	}
	for _, c := range cases {
		out, err := runReport(t, c.env, c.args...)
		if err == nil {
			t.Errorf("%s: exit 0, want an error:\n%s", c.name, out)
		}
		if !strings.Contains(out, c.flag) || strings.Contains(out, "no pod cgroups found") {
			t.Errorf("%s: output does not name %s:\n%s", c.name, c.flag, out)
		}
	}
}

// TestHostRootFromEnvironment: scan reads SHMWATCH_HOST_ROOT as the DaemonSet
// sets it, so kubectl exec'd reports see the host: a host root whose proc
// links to the real /proc finds the test's pod.
func TestHostRootFromEnvironment(t *testing.T) {
	tree := podtree.New(t)
	p, _ := runtimeShmPod(t, tree)
	root := t.TempDir()
	if err := os.Symlink("/proc", filepath.Join(root, "proc")); err != nil {
		t.Fatal(err)
	}
	out, err := runReport(t, []string{"SHMWATCH_HOST_ROOT=" + root}, "scan", "-o", "json", "--cgroup-root="+tree.CgroupRoot)
	if err != nil {
		t.Fatalf("scan with SHMWATCH_HOST_ROOT=%s: %v\n%s", root, err, out)
	}
	if !strings.Contains(out, p.UID) {
		t.Errorf("scan through SHMWATCH_HOST_ROOT did not report pod %s:\n%.2000s", p.UID, out)
	}
}

package podtree

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// oomHelperEnv makes a test binary a container process (RunOOMHelper):
// it joins the cgroup directory the variable names, writes
// SHMWATCH_OOM_HELPER_FILL bytes to SHMWATCH_OOM_HELPER_SHM (when set), and
// grows its anonymous memory until the OOM killer ends it.
const oomHelperEnv = "SHMWATCH_OOM_HELPER"

// oomHeap keeps the helper's memory reachable.
var oomHeap [][]byte

// RunOOMHelper is called first in a TestMain: when the binary was started
// by KillInCgroup it becomes the helper and never returns.
func RunOOMHelper() {
	dir := os.Getenv(oomHelperEnv)
	if dir == "" {
		return
	}
	if err := joinAndFill(dir); err != nil {
		fmt.Fprintln(os.Stderr, "oom helper:", err)
		os.Exit(3)
	}
	for {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		oomHeap = append(oomHeap, b)
	}
}

// joinAndFill moves this process into the cgroup at dir and writes the
// shm fill the environment asks for.
func joinAndFill(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte("0"), 0); err != nil {
		return err
	}
	if shm := os.Getenv(oomHelperEnv + "_SHM"); shm != "" {
		fill, err := strconv.Atoi(os.Getenv(oomHelperEnv + "_FILL"))
		if err != nil {
			return err
		}
		if err := os.WriteFile(shm, make([]byte, fill), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// KillInCgroup re-runs the test binary as the OOM helper in cgroup
// directory dir (its TestMain calls RunOOMHelper), having it write fill
// bytes to shmFile first when shmFile is not "", and fails the test unless
// the helper dies by a signal.
func KillInCgroup(t testing.TB, dir, shmFile string, fill int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), oomHelperEnv+"="+dir)
	if shmFile != "" {
		cmd.Env = append(cmd.Env, oomHelperEnv+"_SHM="+shmFile, oomHelperEnv+"_FILL="+strconv.Itoa(fill))
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != -1 {
		t.Fatalf("helper did not die by a signal: %v: %s", err, out)
	}
}

package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SIGTERM (what the kubelet sends a DaemonSet pod) ends serve cleanly: the
// server shuts down, the process exits 0 and says so.
func TestServeShutsDownOnSIGTERM(t *testing.T) {
	srv := startServe(t, serveOpts{})
	if _, err := srv.Scrape(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("serve still running 10 s after SIGTERM")
	}
	if code := srv.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0\n%s", code, srv.Stderr.String())
	}
	if !strings.Contains(srv.Stderr.String(), `"msg":"stopped"`) {
		t.Errorf("no 'stopped' log line after SIGTERM:\n%s", srv.Stderr.String())
	}
}

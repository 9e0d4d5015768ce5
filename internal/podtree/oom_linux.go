package podtree

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
)

// OOMContainer is a container whose process writes to its /dev/shm and,
// once triggered, grows its anonymous memory until the OOM killer ends it.
type OOMContainer struct {
	*Container
	trigger io.WriteCloser
}

// StartOOM is Start whose process, after writing fill bytes to /dev/shm
// (shmHost bind-mounted there), waits for Trigger and then runs
// `tail /dev/zero`, which buffers an endless line.
func (p *Pod) StartOOM(shmHost string, fill uint64) (*OOMContainer, error) {
	c, err := p.newContainer()
	if err != nil {
		return nil, err
	}
	// An *os.File stdin goes to the process as is: no copying goroutine
	// for Wait to wait on.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("podtree: %w", err)
	}
	defer r.Close()
	c.stdin = r
	inner := fmt.Sprintf("set -e; mount --bind %s /dev/shm; head -c %d /dev/zero > /dev/shm/fill; echo READY; read go; exec tail /dev/zero", shmHost, fill)
	if err := c.run(c.Dir, inner); err != nil {
		_ = w.Close()
		return nil, err
	}
	return &OOMContainer{Container: c, trigger: w}, nil
}

// Trigger lets the process start growing. It closes the process's stdin,
// which os/exec copies until EOF before Wait returns.
func (c *OOMContainer) Trigger() error {
	_, err := io.WriteString(c.trigger, "go\n")
	return errors.Join(err, c.trigger.Close())
}

// WaitKilled waits for the process to end and says whether SIGKILL ended it.
func (c *OOMContainer) WaitKilled() error {
	_ = c.trigger.Close()
	err := c.cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != -1 {
		return fmt.Errorf("podtree: container process did not die by a signal: %v", err)
	}
	return nil
}

// RemoveContainer removes the container's cgroup, as the runtime does once
// its process is gone; the pod keeps its mounts.
func (p *Pod) RemoveContainer(c *Container) error {
	c.kill()
	if err := rmdirRetry(c.Dir); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.containers {
		if x == c {
			p.containers = append(p.containers[:i], p.containers[i+1:]...)
			break
		}
	}
	return nil
}

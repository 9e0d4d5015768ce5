package shmscan

import (
	"errors"
	"fmt"
	"math/bits"
	"sort"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// fsResult is one measurement of the filesystem at a path.
type fsResult struct {
	device string // "major:minor" of the filesystem found
	usage  Usage
	err    error
}

// flight is a statfs in progress on one key. At most one exists per key, so a
// hung filesystem holds at most one goroutine however often it is asked for.
type flight struct {
	done chan struct{}
	res  fsResult
}

// stuckMount is a mount whose statfs outlived the timeout.
type stuckMount struct {
	path  string
	since time.Time
}

// StatHosts statfs's each host mount through <proc>/<HostPID>/root/<HostPath>,
// in order, each with the timeout (see measure). When m.Device is set, a
// different filesystem at that path (the mount went away) fails with
// ErrMountChanged instead of measuring the parent filesystem.
func (s *Scanner) StatHosts(ms []Mount) []HostStat {
	out := make([]HostStat, len(ms))
	root := s.procPath(s.cfg.HostPID, "root")
	for i, m := range ms {
		rel, err := hostRel(m.HostPath)
		if err != nil {
			out[i].Err = err
			continue
		}
		key := m.Device
		if key == "" {
			key = m.HostPath
		}
		out[i] = hostStat(m, s.measure(key, root, rel))
	}
	return out
}

// hostStat checks a measurement of m against the device m expects.
func hostStat(m Mount, r fsResult) HostStat {
	if r.err != nil {
		return HostStat{Err: r.err}
	}
	if m.Device != "" && r.device != m.Device {
		return HostStat{Err: fmt.Errorf("%s: device %s, expected %s: %w", m.HostPath, r.device, m.Device, ErrMountChanged)}
	}
	return HostStat{Usage: r.usage}
}

// measure is the one way shmscan statfs's: measureAt(root, rel) on a
// goroutine of its own, awaited for at most the Scanner's timeout, which
// starts before that goroutine does, so it never counts another mount's
// time. key names the filesystem (its device when known): while a statfs on
// key is stuck every call returns ErrStuck at once, until that statfs
// returns; calls on a key in flight share its result.
func (s *Scanner) measure(key, root, rel string) fsResult {
	path := root + "/" + rel
	s.mu.Lock()
	if _, stuck := s.stuck[key]; stuck {
		s.mu.Unlock()
		return fsResult{err: fmt.Errorf("statfs %s (%s): %w", path, key, ErrStuck)}
	}
	f := s.inflight[key]
	if f == nil {
		f = &flight{done: make(chan struct{})}
		s.inflight[key] = f
		go s.fly(key, f, root, rel)
	}
	s.mu.Unlock()

	timer := time.NewTimer(s.cfg.StatfsTimeout)
	defer timer.Stop()
	select {
	case <-f.done:
		return f.res
	case <-timer.C:
	}
	return fsResult{err: s.markStuck(key, path)}
}

// fly does the blocking work of a flight and ends it: callers waiting on
// it get the result, and key is no longer in flight nor stuck.
func (s *Scanner) fly(key string, f *flight, root, rel string) {
	f.res = measureAt(root, rel)
	s.mu.Lock()
	delete(s.inflight, key)
	delete(s.stuck, key)
	s.mu.Unlock()
	close(f.done)
}

// markStuck skips key's mount (at path) until its statfs returns, and says
// so. A statfs that returned after the caller's last look is not marked: it
// took the timeout anyway, so the caller still fails, but nothing would
// unmark it.
func (s *Scanner) markStuck(key, path string) error {
	s.mu.Lock()
	if _, stuck := s.stuck[key]; !stuck && s.inflight[key] != nil {
		s.stuck[key] = stuckMount{path: path, since: time.Now()}
	}
	s.mu.Unlock()
	return fmt.Errorf("statfs %s (%s): timed out after %s: %w", path, key, s.cfg.StatfsTimeout, ErrStuck)
}

// Stuck lists the keys (device "major:minor", or the path when the device is
// not known) of mounts whose statfs timed out and has not returned yet; they
// are skipped with ErrStuck until it does.
func (s *Scanner) Stuck() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.stuck))
	for k := range s.stuck {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// measureAt opens rel inside root without leaving it (RESOLVE_IN_ROOT: an
// absolute symlink in a container resolves inside the container, not on the
// host), then takes the device (statx with AT_STATX_DONT_SYNC, which does not
// ask a network or FUSE server) and statfs of what it found. O_PATH does not
// open the file itself, so the only call that reaches the filesystem is fstatfs.
func measureAt(root, rel string) fsResult {
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fsResult{err: fmt.Errorf("open %s: %w", root, err)}
	}
	defer unix.Close(rootFD)
	path := root + "/" + rel
	fd, err := unix.Openat2(rootFD, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOSYS) { // kernel < 5.6
		fd, err = unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return fsResult{err: fmt.Errorf("open %s: %w", path, err)}
	}
	defer unix.Close(fd)
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, unix.STATX_TYPE, &stx); err != nil {
		return fsResult{err: fmt.Errorf("statx %s: %w", path, err)}
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return fsResult{err: fmt.Errorf("statfs %s: %w", path, err)}
	}
	u, err := usageOf(&st)
	if err != nil {
		return fsResult{err: fmt.Errorf("statfs %s: %w", path, err)}
	}
	dev := strconv.FormatUint(uint64(stx.Dev_major), 10) + ":" + strconv.FormatUint(uint64(stx.Dev_minor), 10)
	return fsResult{device: dev, usage: u}
}

// usageOf turns a statfs into bytes, refusing numbers that cannot be right
// rather than wrapping them.
func usageOf(st *unix.Statfs_t) (Usage, error) {
	unit := uint64(st.Frsize)
	if st.Frsize <= 0 {
		unit = uint64(st.Bsize)
	}
	if unit == 0 || st.Bfree > st.Blocks || st.Bavail > st.Blocks {
		return Usage{}, fmt.Errorf("implausible statfs: blocks=%d bfree=%d bavail=%d frsize=%d", st.Blocks, st.Bfree, st.Bavail, st.Frsize)
	}
	hi, size := bits.Mul64(st.Blocks, unit)
	if hi != 0 {
		return Usage{}, fmt.Errorf("statfs size overflows: %d blocks of %d", st.Blocks, unit)
	}
	return Usage{
		SizeBytes:      size,
		UsedBytes:      (st.Blocks - st.Bfree) * unit,
		AvailableBytes: st.Bavail * unit,
		Inodes:         st.Files,
		InodesFree:     st.Ffree,
	}, nil
}

package shmscan

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Scanner finds and measures the shm mounts of containers. It caches each
// mount namespace's /dev/shm entry and the indexed host mount table; statfs
// runs on every call. It is safe for concurrent use.
type Scanner struct {
	cfg Config

	refreshMu sync.Mutex // serialises Refresh and MountsChanged; owns hostFile and stale
	hostFile  *os.File   // open host mountinfo, polled for changes; nil when closed
	stale     bool       // MountsChanged saw a change the next Refresh must read

	mu       sync.Mutex // guards everything below
	host     *hostTable
	gen      uint64              // bumped by every Refresh
	ns       map[uint64]*nsEntry // by inode of <proc>/<pid>/ns/mnt
	inflight map[string]*flight
	stuck    map[string]stuckMount
}

// nsEntry is what one mount namespace has at /dev/shm.
type nsEntry struct {
	shm  *mountEntry // nil: /dev/shm is not a mount point there
	used uint64      // generation of the last Refresh before it was used
}

// NewScanner returns a Scanner reading the roots in cfg.
func NewScanner(cfg Config) *Scanner {
	return &Scanner{
		cfg:      cfg.withDefaults(),
		ns:       map[uint64]*nsEntry{},
		inflight: map[string]*flight{},
		stuck:    map[string]stuckMount{},
	}
}

func (s *Scanner) procPath(pid int, rest string) string {
	return s.cfg.ProcRoot + "/" + strconv.Itoa(pid) + "/" + rest
}

// Refresh re-reads the host mount table (<proc>/<HostPID>/mountinfo) only if
// it changed, and forgets mount namespaces not used since the previous
// Refresh. Call it once per scrape, before the per-container calls.
//
// Change detection keeps mountinfo open and polls it: the kernel flags
// POLLPRI|POLLERR once for every change of that namespace's mount table since
// the last poll, so an unchanged table costs one poll(2) (see
// BenchmarkRefreshUnchanged against BenchmarkParseHostTable).
func (s *Scanner) Refresh() error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	s.sweep()
	changed, err := s.hostChanged()
	if err != nil {
		return err
	}
	changed, s.stale = changed || s.stale, false
	s.mu.Lock()
	have := s.host != nil
	s.mu.Unlock()
	if have && !changed {
		return nil
	}
	t, err := s.readHostTable()
	if err != nil {
		s.closeHost() // reopen next time: the pid may have gone
		return err
	}
	s.mu.Lock()
	s.host = t
	s.mu.Unlock()
	return nil
}

// MountsChanged says whether the host mount table changed since the last
// Refresh: a pod's tmpfs was mounted or unmounted (or any other mount). It
// costs one poll(2) and leaves the change for the next Refresh to read.
// Before the first Refresh, or when the table cannot be polled, it says true.
func (s *Scanner) MountsChanged() (bool, error) {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	if s.stale {
		return true, nil
	}
	changed, err := s.hostChanged()
	if err != nil {
		return true, err
	}
	s.stale = changed
	return changed, nil
}

func (s *Scanner) sweep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	for ino, e := range s.ns {
		if e.used+1 < s.gen {
			delete(s.ns, ino)
		}
	}
}

// hostChanged opens the host mountinfo if needed (reporting a change) or
// polls it.
func (s *Scanner) hostChanged() (bool, error) {
	if s.hostFile == nil {
		// Not os.Open: it registers a pollable file (mountinfo is one) with
		// the runtime's network poller, whose epoll_wait then consumes the
		// mount table's change event before the poll below can see it.
		// os.NewFile leaves a blocking descriptor out of the poller.
		p := s.procPath(s.cfg.HostPID, "mountinfo")
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return false, fmt.Errorf("open %s: %w", p, err)
		}
		s.hostFile = os.NewFile(uintptr(fd), p)
		return true, nil
	}
	fds := []unix.PollFd{{Fd: int32(s.hostFile.Fd()), Events: unix.POLLPRI}}
	for {
		_, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			s.closeHost()
			return false, fmt.Errorf("poll host mountinfo: %w", err)
		}
		return fds[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0, nil
	}
}

func (s *Scanner) closeHost() {
	if s.hostFile != nil {
		s.hostFile.Close()
		s.hostFile = nil
	}
}

// readHostTable reads the open host mountinfo from offset 0 (seq_file starts
// over) with the 1 MiB cap.
func (s *Scanner) readHostTable() (*hostTable, error) {
	p := s.procPath(s.cfg.HostPID, "mountinfo")
	data, err := readAllCapped(io.NewSectionReader(s.hostFile, 0, readCap+1), p)
	if err != nil {
		return nil, err
	}
	es, err := parseMountinfo(data, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return buildHostTable(es), nil
}

// readCappedInto reads a /proc file into *buf (which it may grow) in one
// pass, without Stat (proc files report size 0), failing with ErrTooBig
// beyond readCap.
func readCappedInto(path string, buf *[]byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	return readAllCappedInto(f, path, buf)
}

// hostTable returns the current host table, reading it first if Refresh was
// never called.
func (s *Scanner) hostTable() (*hostTable, error) {
	s.mu.Lock()
	t := s.host
	s.mu.Unlock()
	if t != nil {
		return t, nil
	}
	if err := s.Refresh(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.host, nil
}

// ContainerShm finds what is mounted at /dev/shm for the container whose
// processes are pids (from its cgroup.procs) and statfs's it. A pid that has
// exited is skipped for the next one; when none is usable the error wraps
// ErrNoProcess (all gone) or the last filesystem error, and m and u are zero.
// ok is false with a nil error when the container has no /dev/shm mount.
// A mount whose statfs hangs fails with ErrStuck, without trying other pids;
// m then names the stuck mount (ok is true) so the caller can report it.
//
// Device is the identity of the shm: containers of one pod that share a tmpfs
// return the same Device (see Unique).
func (s *Scanner) ContainerShm(pids []int) (m Mount, u Usage, ok bool, err error) {
	return s.firstPid(pids, s.containerShmPid)
}

// ContainerShmMount is ContainerShm without the statfs: what the mount
// namespace of the first usable pid has at /dev/shm, from its mountinfo.
// A caller that measures mounts of the host table at their host path
// (StatHosts, which checks the device there) needs no statfs through the
// container, which costs a goroutine, a timer and a path walk through
// /proc/<pid>/root for each of a cold scan's 3000 containers. A mount with
// no HostPath is not in the host table: only ContainerShm can measure it.
func (s *Scanner) ContainerShmMount(pids []int) (m Mount, ok bool, err error) {
	m, _, ok, err = s.firstPid(pids, func(t *hostTable, pid int) (Mount, Usage, bool, error) {
		// Not through the namespace cache: its stat of /proc/<pid>/ns/mnt
		// pays off only for a namespace measured again, and a resolved
		// container is not resolved again (the caller keeps it).
		e, err := s.readDevShm(pid)
		if err != nil || e == nil {
			return Mount{}, Usage{}, false, err
		}
		return s.mountOf(t, e), Usage{}, true, nil
	})
	return m, ok, err
}

// firstPid returns what try says of the first of pids it can use: an
// exited pid is skipped for the next one, a stuck mount ends the search.
func (s *Scanner) firstPid(pids []int, try func(t *hostTable, pid int) (Mount, Usage, bool, error)) (Mount, Usage, bool, error) {
	t, err := s.hostTable()
	if err != nil {
		return Mount{}, Usage{}, false, err
	}
	var last error
	for _, pid := range pids {
		m, u, ok, err := try(t, pid)
		if err == nil {
			return m, u, ok, nil
		}
		if errors.Is(err, ErrStuck) {
			return m, Usage{}, ok, err
		}
		if last == nil || !isGone(err) {
			last = err
		}
	}
	switch {
	case len(pids) == 0:
		return Mount{}, Usage{}, false, fmt.Errorf("container shm: no pids: %w", ErrNoProcess)
	case isGone(last):
		return Mount{}, Usage{}, false, fmt.Errorf("container shm: all %d pids gone: %w (last: %v)", len(pids), ErrNoProcess, last)
	}
	return Mount{}, Usage{}, false, fmt.Errorf("container shm: %w", last)
}

// containerShmPid measures /dev/shm through one pid. If the device found there
// is not the one the cached mount table says (the namespace inode was reused,
// or /dev/shm was remounted), the table is re-read once.
func (s *Scanner) containerShmPid(t *hostTable, pid int) (Mount, Usage, bool, error) {
	for attempt := 0; ; attempt++ {
		e, err := s.nsShm(pid, attempt > 0)
		if err != nil {
			return Mount{}, Usage{}, false, err
		}
		if e == nil {
			return Mount{}, Usage{}, false, nil
		}
		r := s.measure(e.device, s.procPath(pid, "root"), "dev/shm")
		if errors.Is(r.err, ErrStuck) {
			return s.mountOf(t, e), Usage{}, true, r.err
		}
		if r.err != nil {
			return Mount{}, Usage{}, false, r.err
		}
		if r.device != e.device {
			if attempt == 0 {
				continue
			}
			return Mount{}, Usage{}, false, fmt.Errorf("pid %d /dev/shm: device %s, mountinfo says %s: %w", pid, r.device, e.device, ErrMountChanged)
		}
		return s.mountOf(t, e), r.usage, true, nil
	}
}

func (s *Scanner) mountOf(t *hostTable, e *mountEntry) Mount {
	hostPath, o := t.classify(e.device, e.root)
	return Mount{
		Device:     e.device,
		FSType:     e.fsType,
		MountPoint: "/dev/shm",
		HostPath:   hostPath,
		Source:     o.Source,
		Volume:     o.Volume,
		PodUID:     o.PodUID,
		SandboxID:  o.SandboxID,
		SizeOption: parseSizeOption(e.superOpts),
		AtDevShm:   true,
	}
}

// nsShm returns the /dev/shm entry of pid's mount namespace, reading its
// mountinfo only when the namespace is new (or reload is set).
func (s *Scanner) nsShm(pid int, reload bool) (*mountEntry, error) {
	nsPath := s.procPath(pid, "ns/mnt")
	var st unix.Stat_t
	if err := unix.Stat(nsPath, &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", nsPath, err)
	}
	s.mu.Lock()
	e, found := s.ns[st.Ino]
	if found && !reload {
		e.used = s.gen
		s.mu.Unlock()
		return e.shm, nil
	}
	s.mu.Unlock()

	shm, err := s.readDevShm(pid)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.ns[st.Ino] = &nsEntry{shm: shm, used: s.gen}
	s.mu.Unlock()
	return shm, nil
}

// readDevShm reads what pid's mount namespace has at /dev/shm from its
// mountinfo, through a pooled buffer: the entry keeps no part of it.
func (s *Scanner) readDevShm(pid int) (*mountEntry, error) {
	path := s.procPath(pid, "mountinfo")
	buf := mountinfoBufs.Get().(*[]byte)
	defer mountinfoBufs.Put(buf)
	data, err := readCappedInto(path, buf)
	if errors.Is(err, unix.EINVAL) { // a zombie has no mount namespace left
		return nil, fmt.Errorf("%w: %w", ErrNoProcess, err)
	}
	if err != nil {
		return nil, err
	}
	shm, err := devShmEntry(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return shm, nil
}

// mountinfoBufs holds container mountinfo reads (~3 KB on a real node).
var mountinfoBufs = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// isGone says whether err means the process exited: its /proc entry is gone
// (ENOENT, ESRCH) or it is a zombie (see nsShm).
func isGone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, ErrNoProcess)
}

// MemoryEmptyDirs lists the memory (tmpfs) emptyDirs of a pod in the host
// mount table, one per device, whatever the kubelet's root dir. MountPoint and
// HostPath are the host path; AtDevShm is false: join with ContainerShm by
// Device to tell which one a container sees at /dev/shm.
func (s *Scanner) MemoryEmptyDirs(podUID string) []Mount {
	t, err := s.hostTable()
	if err != nil {
		return nil
	}
	ms := t.emptyDirs[podUID]
	out := make([]Mount, len(ms))
	copy(out, ms)
	return out
}

// RuntimeShm returns the runtime's shm of the sandbox with the given id
// (containerd's .../sandboxes/<id>/shm) from the host mount table: it
// outlives the sandbox's containers, so it is found while none of them
// runs. AtDevShm is false. ok is false when the table has none.
func (s *Scanner) RuntimeShm(sandboxID string) (m Mount, ok bool) {
	t, err := s.hostTable()
	if err != nil {
		return Mount{}, false
	}
	m, ok = t.runtimeShm[sandboxID]
	return m, ok
}

// hostRel turns a host mount point into a path relative to the host root,
// refusing anything that is not a clean absolute path.
func hostRel(p string) (string, error) {
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p || strings.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("host path %q: not a clean absolute path", p)
	}
	if p == "/" {
		return ".", nil
	}
	return p[1:], nil
}

// IsPause says whether pids is a container's only process and it is a pause
// process (by its comm): the sandbox, whose /dev/shm the app containers may
// not share.
func (s *Scanner) IsPause(pids []int) bool {
	if len(pids) != 1 {
		return false
	}
	var buf []byte
	b, err := readCappedInto(s.procPath(pids[0], "comm"), &buf)
	return err == nil && strings.TrimSpace(string(b)) == "pause"
}

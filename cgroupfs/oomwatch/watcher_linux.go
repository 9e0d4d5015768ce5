package oomwatch

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Watcher holds the watches of one kind and delivers their wake-ups.
type Watcher struct {
	kind Kind
	root string // prefix of every watched directory
	max  int
	epfd int
	stop int // eventfd that ends Run
	ino  int // inotify fd (KindInotify), -1 otherwise

	mu      sync.Mutex
	closed  bool
	running bool
	byDir   map[string]int32 // dir as given -> inotify wd or eventfd
	byKey   map[int32]string // inotify wd or eventfd -> dir as given
	// children are the directories watched for new subdirectories
	// (IN_CREATE), by inotify wd; they share the inotify fd.
	children   map[int32]string
	childByDir map[string]int32
}

// New returns a Watcher of the given kind holding at most max watches of
// directories below root: a directory is given and reported relative to it,
// so the Watcher keeps the owner's strings rather than copies.
func New(kind Kind, root string, max int) (*Watcher, error) {
	if kind != KindInotify && kind != KindEventfd {
		return nil, fmt.Errorf("oomwatch: unknown kind %q", kind)
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("oomwatch: epoll_create1: %w", err)
	}
	w := &Watcher{kind: kind, root: root, max: max, epfd: epfd, stop: -1, ino: -1,
		byDir: map[string]int32{}, byKey: map[int32]string{},
		children: map[int32]string{}, childByDir: map[string]int32{}}
	if w.stop, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		w.Close()
		return nil, fmt.Errorf("oomwatch: eventfd: %w", err)
	}
	if err = w.poll(w.stop); err != nil {
		w.Close()
		return nil, err
	}
	{
		if w.ino, err = unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK); err != nil {
			w.Close()
			return nil, fmt.Errorf("oomwatch: inotify_init1: %w", err)
		}
		if err = w.poll(w.ino); err != nil {
			w.Close()
			return nil, err
		}
	}
	return w, nil
}

func (w *Watcher) poll(fd int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("oomwatch: epoll_ctl add %d: %w", fd, err)
	}
	return nil
}

// Kind says which kernel interface this Watcher uses.
func (w *Watcher) Kind() Kind { return w.kind }

// Watch starts watching the cgroup directory root+dir. A directory already
// watched is left as it is.
func (w *Watcher) Watch(dir string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if _, ok := w.byDir[dir]; ok {
		return nil
	}
	if len(w.byDir)+len(w.childByDir) >= w.max {
		return fmt.Errorf("watch %s: %w (%d)", dir, ErrTooMany, w.max)
	}
	key, err := w.add(dir)
	if err != nil {
		return err
	}
	w.byDir[dir], w.byKey[key] = key, dir
	return nil
}

func (w *Watcher) add(dir string) (int32, error) {
	if w.kind == KindInotify {
		file := filepath.Join(w.root+dir, "memory.events")
		wd, err := unix.InotifyAddWatch(w.ino, file, unix.IN_MODIFY)
		if err != nil {
			return 0, fmt.Errorf("inotify_add_watch %s: %w", file, err)
		}
		return int32(wd), nil
	}
	return w.addEventfd(dir)
}

// addEventfd registers an eventfd for dir's memory.oom_control. The
// control file's fd is needed only while registering.
func (w *Watcher) addEventfd(dir string) (int32, error) {
	ctl := filepath.Join(w.root+dir, "memory.oom_control")
	cfd, err := unix.Open(ctl, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", ctl, err)
	}
	defer unix.Close(cfd)
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return 0, fmt.Errorf("eventfd for %s: %w", dir, err)
	}
	reg := filepath.Join(w.root+dir, "cgroup.event_control")
	if err := writeFile(reg, strconv.Itoa(efd)+" "+strconv.Itoa(cfd)); err != nil {
		unix.Close(efd)
		return 0, fmt.Errorf("register oom eventfd in %s: %w", reg, err)
	}
	if err := w.poll(efd); err != nil {
		unix.Close(efd)
		return 0, err
	}
	return int32(efd), nil
}

func writeFile(path, s string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, err = unix.Write(fd, []byte(s))
	return err
}

// Unwatch stops watching dir. Closing a v1 eventfd unregisters it in the
// kernel.
func (w *Watcher) Unwatch(dir string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	key, ok := w.byDir[dir]
	if !ok {
		return
	}
	w.dropLocked(dir, key, true)
}

func (w *Watcher) dropLocked(dir string, key int32, remove bool) {
	delete(w.byDir, dir)
	delete(w.byKey, key)
	if w.kind == KindInotify {
		if remove {
			_, _ = unix.InotifyRmWatch(w.ino, uint32(key)) // EINVAL when the kernel dropped it already
		}
		return
	}
	_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, int(key), nil)
	_ = unix.Close(int(key))
}

// Watches is the number of watches held now (Watch and WatchChildren).
func (w *Watcher) Watches() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.byDir) + len(w.childByDir)
}

// FDs is the number of file descriptors the Watcher holds: epoll, its stop
// eventfd, the inotify fd, and one eventfd per v1 watch.
func (w *Watcher) FDs() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.kind == KindInotify {
		return 3
	}
	return 3 + len(w.byDir)
}

// WatchChildren reports each subdirectory created in root+dir as an Event with
// Created set, so a new container cgroup is watched before it can run
// anything. Removing dir ends the watch. It counts against the limit.
func (w *Watcher) WatchChildren(dir string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if _, ok := w.childByDir[dir]; ok {
		return nil
	}
	if len(w.byDir)+len(w.childByDir) >= w.max {
		return fmt.Errorf("watch children of %s: %w (%d)", dir, ErrTooMany, w.max)
	}
	wd, err := unix.InotifyAddWatch(w.ino, w.root+dir, unix.IN_CREATE|unix.IN_ONLYDIR)
	if err != nil {
		return fmt.Errorf("inotify_add_watch %s: %w", w.root+dir, err)
	}
	w.children[int32(wd)], w.childByDir[dir] = dir, int32(wd)
	return nil
}

// UnwatchChildren ends WatchChildren(dir).
func (w *Watcher) UnwatchChildren(dir string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if wd, ok := w.childByDir[dir]; ok {
		delete(w.children, wd)
		delete(w.childByDir, dir)
		_, _ = unix.InotifyRmWatch(w.ino, uint32(wd))
	}
}

// Run blocks in epoll_wait and calls notify once per wake-up of a watched
// cgroup, in this goroutine, until ctx is done or Close is called. notify
// should return quickly: signals that arrive meanwhile are merged by the
// kernel, not lost, since the owner re-reads counters.
func (w *Watcher) Run(ctx context.Context, notify func(Event)) error {
	w.mu.Lock()
	if w.closed || w.running {
		w.mu.Unlock()
		return ErrClosed
	}
	w.running = true
	w.mu.Unlock()
	defer w.shutdown()
	stopOnDone := context.AfterFunc(ctx, w.wakeStop)
	defer stopOnDone()
	events := make([]unix.EpollEvent, 16)
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("oomwatch: epoll_wait: %w", err)
		}
		for _, ev := range events[:n] {
			switch int(ev.Fd) {
			case w.stop:
				return ctx.Err()
			case w.ino:
				w.readInotify(buf, notify)
			default:
				w.readEventfd(ev.Fd, notify)
			}
		}
	}
}

func (w *Watcher) wakeStop() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(w.stop, one[:])
}

func (w *Watcher) readInotify(buf []byte, notify func(Event)) {
	for {
		n, err := unix.Read(w.ino, buf)
		if n <= 0 || err != nil {
			return // EAGAIN: drained
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(raw.Len)]
			off += unix.SizeofInotifyEvent + int(raw.Len)
			if w.deliverChild(raw, name, notify) {
				continue
			}
			w.deliver(raw.Wd, raw.Mask&unix.IN_IGNORED != 0, notify)
		}
	}
}

// readEventfd drains a v1 eventfd. The kernel signals it at an OOM and
// when the cgroup is removed; which of the two is told by the directory.
func (w *Watcher) readEventfd(fd int32, notify func(Event)) {
	var cnt [8]byte
	_, _ = unix.Read(int(fd), cnt[:])
	w.mu.Lock()
	dir, ok := w.byKey[fd]
	w.mu.Unlock()
	if !ok {
		return
	}
	gone := unix.Access(filepath.Join(w.root+dir, "memory.oom_control"), unix.F_OK) != nil
	w.deliver(fd, gone, notify)
}

// deliverChild handles an event of a WatchChildren watch; false when wd
// is not one.
func (w *Watcher) deliverChild(raw *unix.InotifyEvent, name []byte, notify func(Event)) bool {
	w.mu.Lock()
	dir, ok := w.children[raw.Wd]
	if ok && raw.Mask&unix.IN_IGNORED != 0 {
		delete(w.children, raw.Wd)
		delete(w.childByDir, dir)
	}
	w.mu.Unlock()
	if ok && raw.Mask&unix.IN_CREATE != 0 {
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		notify(Event{Dir: dir, Created: string(name)})
	}
	return ok
}

func (w *Watcher) deliver(key int32, gone bool, notify func(Event)) {
	w.mu.Lock()
	dir, ok := w.byKey[key]
	if ok && gone {
		w.dropLocked(dir, key, false)
		// kernfs need not send IN_IGNORED for the directory itself
		// while its inode lives on: end its children watch here.
		if wd, ok := w.childByDir[dir]; ok {
			delete(w.children, wd)
			delete(w.childByDir, dir)
			_, _ = unix.InotifyRmWatch(w.ino, uint32(wd))
		}
	}
	w.mu.Unlock()
	if ok {
		notify(Event{Dir: dir, Gone: gone})
	}
}

// Close drops every watch and releases the Watcher's fds; a Run in
// progress returns nil. A Watcher is not reused after Close or after its
// Run returned.
func (w *Watcher) Close() error {
	w.mu.Lock()
	running := w.running
	w.mu.Unlock()
	if running {
		w.wakeStop() // Run shuts down: a base fd closed under its epoll_wait could be reused
		return nil
	}
	w.shutdown()
	return nil
}

func (w *Watcher) shutdown() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	for dir, key := range w.byDir {
		w.dropLocked(dir, key, true)
	}
	clear(w.children)
	clear(w.childByDir)
	for _, fd := range []int{w.ino, w.stop, w.epfd} {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}
}

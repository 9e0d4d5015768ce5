// Package oomwatch wakes its owner when the kernel signals an OOM event on a
// watched memory cgroup, and when a watched cgroup goes away. It blocks in
// epoll between signals and never reads counters itself: the kernel rate
// limits and merges its signals, so the owner re-reads the cgroup's
// counters on every wake-up instead of counting wake-ups.
//
// Two kernel interfaces, one per cgroup version:
//   - v2: inotify IN_MODIFY on the cgroup's memory.events (the kernel's
//     cgroup_file_notify). One inotify fd serves every watch; a watch costs
//     no fd. Readable with a read-only cgroup mount. The kernel does not
//     signal the cgroup's removal (the watch pins the file's inode, so no
//     IN_IGNORED comes): the owner unwatches what its listing no longer has.
//   - v1: an eventfd registered through cgroup.event_control for
//     memory.oom_control. One fd per watch. Registering writes
//     cgroup.event_control (mode 0200, root only), so it needs a writable
//     cgroup mount and root: an opt-in.
//     The kernel signals the eventfd when the cgroup under OOM (or an
//     ancestor under OOM) starts the OOM killer, before the victim dies,
//     and once more when the cgroup is removed.
//
// It knows nothing about Kubernetes or Prometheus.
package oomwatch

import "errors"

// Kind is the kernel interface a Watcher uses.
type Kind string

const (
	KindInotify Kind = "inotify" // v2 memory.events
	KindEventfd Kind = "eventfd" // v1 cgroup.event_control + memory.oom_control
)

// Event is one wake-up for one watched cgroup directory.
type Event struct {
	// Dir is the cgroup directory as given to Watch or WatchChildren.
	Dir string
	// Gone is true when the kernel says the cgroup was removed (v1 only);
	// the watch is dropped already.
	Gone bool
	// Created names a subdirectory just created in Dir, for a
	// WatchChildren watch; "" for OOM and removal events.
	Created string
}

// Errors of Watch.
var (
	ErrTooMany     = errors.New("oomwatch: watch limit reached")
	ErrClosed      = errors.New("oomwatch: watcher closed")
	ErrUnsupported = errors.New("oomwatch: not supported on this platform")
)

package shmscan

import "errors"

var (
	// ErrNoProcess means every pid given for a container had exited (or was
	// never there) before its /dev/shm could be measured.
	ErrNoProcess = errors.New("no live process")
	// ErrStuck is returned for a mount whose statfs timed out, and for every
	// later request on it until that statfs returns.
	ErrStuck = errors.New("statfs stuck")
	// ErrMountChanged means the filesystem found at a path is not the device
	// the mount table named: the mount went away or was replaced.
	ErrMountChanged = errors.New("mount changed")
	// ErrTooBig means a pseudo-file was larger than the read cap.
	ErrTooBig = errors.New("file larger than read cap")
	// ErrUnsupported is returned on systems other than Linux.
	ErrUnsupported = errors.New("shmscan is only supported on Linux")
)

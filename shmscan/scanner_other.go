//go:build !linux

package shmscan

// Scanner measures shm mounts; on this system every method fails with
// ErrUnsupported.
type Scanner struct{}

// NewScanner returns a Scanner that reports ErrUnsupported.
func NewScanner(Config) *Scanner { return &Scanner{} }

// Refresh fails with ErrUnsupported.
func (*Scanner) Refresh() error { return ErrUnsupported }

// ContainerShm fails with ErrUnsupported.
func (*Scanner) ContainerShm([]int) (Mount, Usage, bool, error) {
	return Mount{}, Usage{}, false, ErrUnsupported
}

// ContainerShmMount fails with ErrUnsupported.
func (*Scanner) ContainerShmMount([]int) (Mount, bool, error) {
	return Mount{}, false, ErrUnsupported
}

// MemoryEmptyDirs returns nothing.
func (*Scanner) MemoryEmptyDirs(string) []Mount { return nil }

// RuntimeShm finds nothing.
func (*Scanner) RuntimeShm(string) (Mount, bool) { return Mount{}, false }

// StatHosts fails every mount with ErrUnsupported.
func (*Scanner) StatHosts(ms []Mount) []HostStat {
	out := make([]HostStat, len(ms))
	for i := range out {
		out[i].Err = ErrUnsupported
	}
	return out
}

// Stuck returns nothing.
func (*Scanner) Stuck() []string { return nil }

// IsPause is false off Linux.
func (*Scanner) IsPause([]int) bool { return false }

// Package shmscan measures the shared memory a container can write: what is
// mounted at its /dev/shm, how big and how full it is, where it comes from
// (runtime sandbox shm, memory emptyDir, host /dev/shm), and which limit stops
// a writer first. It takes pids and roots; it knows nothing about Prometheus.
package shmscan

// Source is where a tmpfs comes from, as the host mount table says.
type Source string

const (
	SourceRuntime  Source = "runtime"  // containerd/CRI-O/Docker per-sandbox shm
	SourceEmptyDir Source = "emptydir" // kubelet emptyDir{medium: Memory}
	SourceHost     Source = "host"     // the host's /dev/shm (hostIPC: true)
	SourceUnknown  Source = "unknown"
)

// Mount is one tmpfs a pod can write shared memory to.
type Mount struct {
	Device     string // "major:minor" from mountinfo; one tmpfs = one Device
	FSType     string // "tmpfs" normally
	MountPoint string // inside the container ("/dev/shm"), or the host path for emptyDirs not at /dev/shm
	HostPath   string // the mount point in the host mount table; "" when not found
	Source     Source
	Volume     string  // emptyDir volume name ("" for others)
	PodUID     string  // from the emptyDir host path ("" for others)
	SandboxID  string  // from the runtime shm host path ("" for others)
	SizeOption *uint64 // tmpfs size= option in bytes; nil when absent (tmpfs default: half of RAM)
	AtDevShm   bool    // mounted at the container's /dev/shm
}

// Usage is one statfs of a mount.
type Usage struct {
	SizeBytes      uint64 // f_blocks * f_frsize
	UsedBytes      uint64 // (f_blocks - f_bfree) * f_frsize
	AvailableBytes uint64 // f_bavail * f_frsize
	Inodes         uint64
	InodesFree     uint64
}

// HostStat is the result of one statfs of StatHosts.
type HostStat struct {
	Usage Usage
	Err   error
}

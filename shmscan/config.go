package shmscan

import "time"

// Config holds the roots a Scanner reads. The zero value is usable: it reads
// /proc, takes pid 1's mount table as the host's, and gives statfs 2s.
type Config struct {
	ProcRoot      string        // "/proc" or "/host/proc"
	HostPID       int           // whose mountinfo is the host mount table; default 1
	StatfsTimeout time.Duration // default 2s
}

func (c Config) withDefaults() Config {
	if c.ProcRoot == "" {
		c.ProcRoot = "/proc"
	}
	if c.HostPID <= 0 {
		c.HostPID = 1
	}
	if c.StatfsTimeout <= 0 {
		c.StatfsTimeout = 2 * time.Second
	}
	return c
}

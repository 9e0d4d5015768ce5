package cgroupfs

import "sync"

// dirCache remembers, between live-memcg walks, the sorted subdirectory
// names of each cgroup directory the walk listed, keyed by the directory's
// identity. The walk trusts an entry only while the directory's st_nlink
// still counts that many subdirectories and every remembered one still
// exists: a set of n names that all exist, in a directory with exactly n
// subdirectories, is the set. One removed and another made in its place
// fails the check (the old name is gone), and one made after the check is
// no different from one made after the walk, which the num_cgroups check
// around it catches.
//
// Listing a v1 cgroup directory returns ~35 entries (its files) for a pod's
// 2-4 subdirectories; the walk must fstatat each subdirectory anyway, for
// its own nlink, so a directory whose children did not change costs no
// getdents at all (see docs/performance.md).
//
// A nil *dirCache remembers nothing. The walk holds the lock throughout.
type dirCache struct {
	mu      sync.Mutex
	entries map[dirID]*knownDir
	gen     uint64
}

type knownDir struct {
	names []string // sorted; never modified once stored
	seen  uint64   // gen of the last walk that used it
}

func (c *dirCache) lock() {
	if c != nil {
		c.mu.Lock()
	}
}

func (c *dirCache) unlock() {
	if c != nil {
		c.mu.Unlock()
	}
}

// get returns the remembered names of directory id if there are subdirs of
// them.
func (c *dirCache) get(id dirID, subdirs uint64) ([]string, bool) {
	if c == nil {
		return nil, false
	}
	d, ok := c.entries[id]
	if !ok || uint64(len(d.names)) != subdirs {
		return nil, false
	}
	d.seen = c.gen
	return d.names, true
}

func (c *dirCache) put(id dirID, names []string) {
	if c == nil {
		return
	}
	if c.entries == nil {
		c.entries = map[dirID]*knownDir{}
	}
	c.entries[id] = &knownDir{names: names, seen: c.gen}
}

// prune drops the directories the walk did not reach (removed, or below a
// directory it could not read) and starts the next generation.
func (c *dirCache) prune() {
	if c == nil {
		return
	}
	for id, d := range c.entries {
		if d.seen != c.gen {
			delete(c.entries, id)
		}
	}
	c.gen++
}

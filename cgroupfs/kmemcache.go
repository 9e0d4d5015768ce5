package cgroupfs

import "sync"

// kmemCache remembers each cgroup's v1 memory.kmem.limit_in_bytes. The limit
// is the 3.10-era leak trigger: runc sets it when it creates the cgroup and
// nothing changes it afterwards, so reading it on every scrape cost one file
// (~4 us) per cgroup for a value that does not move. An entry is keyed by
// path and checked against the directory's inode, so a cgroup removed and
// created again under the same path is read afresh; Prune drops the
// entries of cgroups not read since the previous Prune.
type kmemCache struct {
	mu      sync.Mutex
	entries map[string]kmemEntry
	gen     uint64
}

type kmemEntry struct {
	ino       uint64
	limit     uint64
	unlimited bool
	used      uint64 // gen of the last get or put
}

func (c *kmemCache) get(path string, ino uint64) (limit uint64, unlimited, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, found := c.entries[path]
	if !found || e.ino != ino {
		return 0, false, false
	}
	e.used = c.gen
	c.entries[path] = e
	return e.limit, e.unlimited, true
}

func (c *kmemCache) put(path string, ino, limit uint64, unlimited bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]kmemEntry{}
	}
	c.entries[path] = kmemEntry{ino: ino, limit: limit, unlimited: unlimited, used: c.gen}
}

// prune drops the entries not used since the previous prune.
func (c *kmemCache) prune() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, e := range c.entries {
		if e.used != c.gen {
			delete(c.entries, p)
		}
	}
	c.gen++
}

// Prune forgets what FS cached about cgroups that were not read since the
// previous Prune (today: v1 kmem limits). Call it once per pass over the
// cgroups, so the cache holds only cgroups that still exist.
func (fs *FS) Prune() { fs.kmem.prune() }

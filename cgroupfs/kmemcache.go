package cgroupfs

import "sync"

// kmemCache remembers each cgroup's v1 memory.kmem.limit_in_bytes. The limit
// is the 3.10-era leak trigger: runc sets it when it creates the cgroup and
// nothing changes it afterwards, so it is read once per cgroup instead of
// once per scrape. The price: a limit rewritten after the first read is
// not seen until the cgroup is made again. An entry is keyed by the
// directory's identity, not its path, so a cgroup removed and created again
// under the same path is read afresh, and the cache holds no path strings.
// Prune drops the entries of cgroups not read since the previous Prune.
type kmemCache struct {
	mu      sync.Mutex
	entries map[dirID]kmemEntry
	gen     uint64
}

// dirID identifies a cgroup directory for the life of the boot: its inode
// (kernfs numbers carry a generation on 64-bit kernels) and the change time
// set at mkdir, which tells a reused 32-bit inode number apart.
type dirID struct {
	ino   uint64
	ctime int64 // ns
}

type kmemEntry struct {
	limit     uint64
	unlimited bool
	used      uint64 // gen of the last get or put
}

func (c *kmemCache) get(id dirID) (limit uint64, unlimited, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, found := c.entries[id]
	if !found {
		return 0, false, false
	}
	e.used = c.gen
	c.entries[id] = e
	return e.limit, e.unlimited, true
}

func (c *kmemCache) put(id dirID, limit uint64, unlimited bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[dirID]kmemEntry{}
	}
	c.entries[id] = kmemEntry{limit: limit, unlimited: unlimited, used: c.gen}
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

package cgroupfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// SlabCache is one row of a slabinfo file (/proc/slabinfo, v1
// memory.kmem.slabinfo; format of mm/slab_common.c, version 2.1).
type SlabCache struct {
	Name         string `json:"name"`
	ActiveObjs   uint64 `json:"active_objs"`
	NumObjs      uint64 `json:"num_objs"`
	ObjSize      uint64 `json:"objsize"`
	ObjPerSlab   uint64 `json:"objperslab"`
	PagesPerSlab uint64 `json:"pagesperslab"`
	ActiveSlabs  uint64 `json:"active_slabs"`
	NumSlabs     uint64 `json:"num_slabs"`
}

// Bytes is the memory the cache's slabs hold: num_slabs × pagesperslab pages.
func (c SlabCache) Bytes() uint64 { return c.NumSlabs * c.PagesPerSlab * uint64(os.Getpagesize()) }

// ParseSlabinfo parses a slabinfo file. An empty file is no caches and no
// error: from 5.9 a cgroup's memory.kmem.slabinfo is always empty.
func ParseSlabinfo(data []byte) ([]SlabCache, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil
	}
	var out []SlabCache
	for i := 0; len(data) > 0; i++ {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte("\n"))
		switch {
		case i == 0:
			if !bytes.HasPrefix(line, []byte("slabinfo - version: 2.")) {
				return nil, parseError("slabinfo version", line)
			}
		case bytes.HasPrefix(line, []byte("#")), len(bytes.TrimSpace(line)) == 0:
		default:
			c, err := parseSlabRow(line)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
	}
	return out, nil
}

// parseSlabRow reads "name <active_objs> <num_objs> <objsize> <objperslab>
// <pagesperslab> : tunables <3> : slabdata <active_slabs> <num_slabs> <sharedavail>".
func parseSlabRow(line []byte) (SlabCache, error) {
	f := bytes.Fields(line)
	if len(f) != 16 || string(f[6]) != ":" || string(f[7]) != "tunables" || string(f[11]) != ":" || string(f[12]) != "slabdata" {
		return SlabCache{}, parseError("slabinfo row", line)
	}
	var n [7]uint64
	for i, j := range []int{1, 2, 3, 4, 5, 13, 14} {
		v, err := strconv.ParseUint(string(f[j]), 10, 64)
		if err != nil {
			return SlabCache{}, parseError("slabinfo row", line)
		}
		n[i] = v
	}
	return SlabCache{Name: string(f[0]), ActiveObjs: n[0], NumObjs: n[1], ObjSize: n[2], ObjPerSlab: n[3],
		PagesPerSlab: n[4], ActiveSlabs: n[5], NumSlabs: n[6]}, nil
}

// NodeSlabinfo reads <proc>/slabinfo (mode 0400: root only).
func (fs *FS) NodeSlabinfo() ([]SlabCache, error) {
	path := fs.procPath("slabinfo")
	data, err := ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	caches, err := ParseSlabinfo(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return caches, nil
}

// Slabinfo states of a v1 memory cgroup's memory.kmem.slabinfo.
const (
	SlabinfoReadable = "readable"
	// SlabinfoEIO: before about 4.6 the read fails with EIO until a kmem
	// limit switches kmem accounting on for that memcg (seed 004's test).
	SlabinfoEIO    = "eio"
	SlabinfoAbsent = "absent" // v2, or a kernel without the file
)

// CgroupSlabinfo reads memory.kmem.slabinfo of a v1 cgroup: its state and,
// where the file has rows (kernels before 5.9), the caches.
func (fs *FS) CgroupSlabinfo(path string) (string, []SlabCache, error) {
	file := fs.abs(path) + "/memory.kmem.slabinfo"
	data, err := ReadFile(file)
	switch {
	case errors.Is(err, syscall.EIO):
		return SlabinfoEIO, nil, nil
	case errors.Is(err, os.ErrNotExist):
		if _, serr := os.Stat(fs.abs(path)); serr == nil {
			return SlabinfoAbsent, nil, nil
		}
		return "", nil, fmt.Errorf("read %s: %w", file, err)
	case err != nil:
		return "", nil, fmt.Errorf("read %s: %w", file, err)
	}
	caches, err := ParseSlabinfo(data)
	if err != nil {
		return SlabinfoReadable, nil, fmt.Errorf("%s: %w", file, err)
	}
	return SlabinfoReadable, caches, nil
}

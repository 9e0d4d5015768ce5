package cgroupfs

import (
	"path"
	"strings"
)

// listings keeps the subdirectory listings that the live-memcg walk made of
// the pod tree (the kubelet's kubepods and kubepods.slice and everything
// below), so that Pods can be built from them instead of listing the same
// ~1000 pod directories a second time on every scrape.
type listings struct {
	tops []string // absolute paths of the pod tops
	dirs map[string]listing
	done bool // a walk with this recorder finished
}

type listing struct {
	names []string
	err   error
}

func (fs *FS) podListings(cgroupRoot string) *listings {
	root := path.Clean("/" + cgroupRoot)
	r := &listings{}
	for _, top := range podTops {
		r.tops = append(r.tops, fs.abs(path.Join(root, top.dir)))
	}
	return r
}

// reset forgets an earlier attempt's listings.
func (r *listings) reset() {
	if r != nil {
		r.dirs, r.done = map[string]listing{}, false
	}
}

// wants reports whether dir is in the pod tree.
func (r *listings) wants(dir string) bool {
	if r == nil {
		return false
	}
	for _, top := range r.tops {
		if dir == top || strings.HasPrefix(dir, top) && dir[len(top)] == '/' {
			return true
		}
	}
	return false
}

// keep records dir's subdirectories: sorted, as listDirs returns them, and
// shared with the walk's dirCache, so never modified.
func (r *listings) keep(dir string, names []string) {
	r.dirs[dir] = listing{names: names}
}

func (r *listings) fail(dir string, err error) {
	if r.wants(dir) {
		r.dirs[dir] = listing{err: err}
	}
}

// list is listDirs from the walk's record. A directory the walk did not
// list had no subdirectories (st_nlink 2) or was gone: both have none.
func (r *listings) list(dir string) ([]string, error) {
	l := r.dirs[dir]
	return l.names, l.err
}

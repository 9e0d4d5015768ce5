//go:build !linux

package cgroupfs

import "fmt"

// listDirs returns the names of the subdirectories of dir, never following
// symlinks (the entry type comes from the directory, not stat).
func listDirs(dir string) ([]string, error) {
	entries, err := readDirEntries(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sortStrings(out) // stable output; directory order is arbitrary
	return out, nil
}

// isCgroupFS is false off Linux: there is no cgroup file system.
func isCgroupFS(string) bool { return false }

func countDirsNlink(string, *[]error, *listings, *dirCache) (uint64, error) {
	return 0, fmt.Errorf("%w: no cgroup file system off Linux", ErrNoMemory)
}

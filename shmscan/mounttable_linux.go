package shmscan

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// mountEntry is the part of one mountinfo line shmscan uses.
type mountEntry struct {
	device     string // "major:minor"
	root       string // root of the mount within its filesystem
	mountPoint string
	fsType     string
	superOpts  string
}

// parseMountinfo parses a mountinfo file with moby/sys/mountinfo's parser and
// keeps the entries keep accepts (nil keeps all). The library is fast enough:
// a container's table is parsed once per mount namespace and the host's only
// when it changes (see BenchmarkParseHostTable). Lines whose device the
// library could not parse (it turns garbage into 0:0 or negatives) are
// dropped: no real mount has device 0:0.
func parseMountinfo(data []byte, keep func(*mountinfo.Info) bool) ([]mountEntry, error) {
	filter := func(i *mountinfo.Info) (skip, stop bool) {
		if i.Major < 0 || i.Minor < 0 || (i.Major == 0 && i.Minor == 0) {
			return true, false
		}
		return keep != nil && !keep(i), false
	}
	infos, err := mountinfo.GetMountsFromReader(bytes.NewReader(data), filter)
	if err != nil {
		return nil, fmt.Errorf("parse mountinfo: %w", err)
	}
	// The library's fields are substrings of their line: cloned, the
	// entries kept (the host table lives until the table changes) do not
	// hold every line's bytes.
	out := make([]mountEntry, 0, len(infos))
	for _, i := range infos {
		out = append(out, mountEntry{
			device:     strconv.Itoa(i.Major) + ":" + strconv.Itoa(i.Minor),
			root:       strings.Clone(i.Root),
			mountPoint: strings.Clone(i.Mountpoint),
			fsType:     strings.Clone(i.FSType),
			superOpts:  strings.Clone(i.VFSOptions),
		})
	}
	return out, nil
}

// devShmEntry returns the mount visible at /dev/shm in a container's
// mountinfo: the last one listed, since a later mount hides an earlier one
// on the same point. nil when /dev/shm is not a mount point.
func devShmEntry(data []byte) (*mountEntry, error) {
	es, err := parseMountinfo(data, func(i *mountinfo.Info) bool { return i.Mountpoint == "/dev/shm" })
	if err != nil || len(es) == 0 {
		return nil, err
	}
	e := es[len(es)-1]
	return &e, nil
}

// hostTable is the host mount table indexed for the joins shmscan makes.
type hostTable struct {
	byDevice   map[string][]mountEntry // every host mount of a device, in table order
	devShm     string                  // device visible at the host's /dev/shm; "" if none
	emptyDirs  map[string][]Mount      // memory emptyDirs by pod uid, one per device
	runtimeShm map[string]Mount        // runtime sandbox shm by sandbox id
}

func buildHostTable(es []mountEntry) *hostTable {
	t := &hostTable{byDevice: map[string][]mountEntry{}, emptyDirs: map[string][]Mount{}, runtimeShm: map[string]Mount{}}
	for _, e := range es {
		t.byDevice[e.device] = append(t.byDevice[e.device], e)
		if e.mountPoint == "/dev/shm" {
			t.devShm = e.device
		}
	}
	seen := map[string]bool{}
	for _, e := range es {
		if e.fsType != "tmpfs" || seen[e.device] {
			continue
		}
		o := ClassifyHostPath(e.mountPoint)
		if o.Source == SourceRuntime {
			t.runtimeShm[o.SandboxID] = Mount{Device: e.device, FSType: e.fsType, MountPoint: e.mountPoint,
				HostPath: e.mountPoint, Source: SourceRuntime, SandboxID: o.SandboxID, SizeOption: parseSizeOption(e.superOpts)}
		}
		if o.Source != SourceEmptyDir {
			continue
		}
		seen[e.device] = true
		t.emptyDirs[o.PodUID] = append(t.emptyDirs[o.PodUID], Mount{
			Device:     e.device,
			FSType:     e.fsType,
			MountPoint: e.mountPoint,
			HostPath:   e.mountPoint,
			Source:     SourceEmptyDir,
			Volume:     o.Volume,
			PodUID:     o.PodUID,
			SizeOption: parseSizeOption(e.superOpts),
		})
	}
	return t
}

// classify joins a device (and the root within it) seen in a container with
// the host table. The host's /dev/shm wins; otherwise the host mount whose
// path has a known shape, preferring one with the same root; otherwise the
// first host mount of the device, as unknown.
func (t *hostTable) classify(device, root string) (hostPath string, o Origin) {
	if device == t.devShm {
		return "/dev/shm", Origin{Source: SourceHost}
	}
	var best *mountEntry
	bestScore := -1
	for i := range t.byDevice[device] {
		e := &t.byDevice[device][i]
		score := 0
		if ClassifyHostPath(e.mountPoint).Source != SourceUnknown {
			score += 2
		}
		if e.root == root {
			score++
		}
		if score > bestScore {
			best, bestScore = e, score
		}
	}
	if best == nil {
		return "", Origin{Source: SourceUnknown}
	}
	return best.mountPoint, ClassifyHostPath(best.mountPoint)
}

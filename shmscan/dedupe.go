package shmscan

// Unique drops every Mount whose Device was already seen, keeping the first.
// Device is the identity of a shm: the containers of one pod that see the same
// tmpfs report the same Device, and are one shm, not several.
func Unique(ms []Mount) []Mount {
	seen := make(map[string]bool, len(ms))
	out := ms[:0:0]
	for _, m := range ms {
		if seen[m.Device] {
			continue
		}
		seen[m.Device] = true
		out = append(out, m)
	}
	return out
}

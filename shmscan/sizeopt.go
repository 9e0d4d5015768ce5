package shmscan

import (
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// parseSizeOption returns the tmpfs size= option of a mount's super options
// ("rw,size=65536k,noswap") in bytes. It returns nil when there is no size=,
// when the size is a percentage of RAM ("size=50%", which the kernel never
// prints back but a caller may pass), when it is 0 (tmpfs: unlimited), or when
// it does not parse or overflows. The suffixes are those of the kernel's
// memparse: k, m, g, t, p, e (either case), powers of 1024.
func parseSizeOption(opts string) *uint64 {
	var val string
	found := false
	for _, o := range strings.Split(opts, ",") {
		if v, ok := strings.CutPrefix(o, "size="); ok {
			val, found = v, true // the kernel honours the last one
		}
	}
	if !found {
		return nil
	}
	n, ok := parseMemSize(val)
	if !ok || n == 0 {
		return nil
	}
	return &n
}

// parseMemSize parses "<digits>[kKmMgGtTpPeE]".
func parseMemSize(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	shift := uint(0)
	switch s[len(s)-1] {
	case 'k', 'K':
		shift = 10
	case 'm', 'M':
		shift = 20
	case 'g', 'G':
		shift = 30
	case 't', 'T':
		shift = 40
	case 'p', 'P':
		shift = 50
	case 'e', 'E':
		shift = 60
	}
	if shift != 0 {
		s = s[:len(s)-1]
	}
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false
	}
	if shift != 0 && bits.LeadingZeros64(n) < int(shift) {
		return 0, false
	}
	n <<= shift
	if n > math.MaxInt64 {
		return 0, false // the kernel's size is a signed long long
	}
	return n, true
}

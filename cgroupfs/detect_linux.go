package cgroupfs

import (
	"bytes"

	"github.com/moby/sys/mountinfo"
)

// parseMountinfo uses moby/sys/mountinfo's parser (it unescapes \040 and
// friends and rejects malformed lines), fed from our bounded read.
func parseMountinfo(data []byte) ([]*mountinfo.Info, error) {
	return mountinfo.GetMountsFromReader(bytes.NewReader(data), nil)
}

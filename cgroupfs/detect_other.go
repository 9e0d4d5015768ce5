//go:build !linux

package cgroupfs

import (
	"errors"

	"github.com/moby/sys/mountinfo"
)

func parseMountinfo([]byte) ([]*mountinfo.Info, error) {
	return nil, errors.New("mountinfo is Linux only")
}

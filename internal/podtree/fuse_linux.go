package podtree

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FUSE opcodes and sizes from <linux/fuse.h> (protocol 7.31).
const (
	fuseGetattr     = 3
	fuseForget      = 2
	fuseStatfs      = 17
	fuseInit        = 26
	fuseInterrupt   = 36
	fuseBatchForget = 42
	fuseInHeaderLen = 40
	fuseOutHdrLen   = 16
)

// HungFUSE is a FUSE filesystem served from this test process straight on
// /dev/fuse: it answers INIT and GETATTR of its root (so `mount --bind` of it
// works), refuses the rest with ENOSYS and never answers STATFS — the hung
// NFS-like mount a monitoring agent must survive.
type HungFUSE struct {
	// Dir is where it is mounted in this mount namespace.
	Dir    string
	fd     int
	statfs atomic.Int32
	inited chan struct{}

	mu       sync.Mutex
	held     []uint64 // unique ids of unanswered STATFS
	released bool
}

// MountHungFUSE mounts a HungFUSE at a new directory. At cleanup it is
// released, unmounted and its device closed.
//
// A process killed while its STATFS is held cannot exit (the kernel waits
// for the answer of a request already sent to the server), so call Release
// before waiting for such a process: register t.Cleanup(h.Release) after the
// cleanup that kills it.
func MountHungFUSE(t testing.TB) *HungFUSE {
	t.Helper()
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("real-kernel test: open /dev/fuse: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "hungfuse")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := "fd=" + strconv.Itoa(fd) + ",rootmode=40000,user_id=0,group_id=0"
	if err := unix.Mount("podtree-hung", dir, "fuse.podtree-hung", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		unix.Close(fd)
		t.Skipf("real-kernel test: mount fuse at %s: %v", dir, err)
	}
	h := &HungFUSE{Dir: dir, fd: fd, inited: make(chan struct{})}
	t.Cleanup(func() {
		h.Release()
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("podtree: unmount %s: %v", dir, err)
		}
		unix.Close(fd)
	})
	go h.serve()
	select {
	case <-h.inited:
	case <-time.After(10 * time.Second):
		t.Fatal("podtree: FUSE INIT never came")
	}
	return h
}

// StatfsRequests is how many STATFS requests the kernel sent (all held).
func (h *HungFUSE) StatfsRequests() int { return int(h.statfs.Load()) }

func (h *HungFUSE) serve() {
	buf := make([]byte, 1<<17+4096)
	for {
		n, err := unix.Read(h.fd, buf)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOENT) { // ENOENT: the request was interrupted
			continue
		}
		if err != nil || n < fuseInHeaderLen {
			return // ENODEV once the filesystem is gone
		}
		op := binary.LittleEndian.Uint32(buf[4:])
		unique := binary.LittleEndian.Uint64(buf[8:])
		switch op {
		case fuseInit:
			out := make([]byte, 64) // fuse_init_out
			binary.LittleEndian.PutUint32(out[0:], 7)
			binary.LittleEndian.PutUint32(out[4:], 31)
			binary.LittleEndian.PutUint32(out[20:], 65536) // max_write
			binary.LittleEndian.PutUint32(out[24:], 1)     // time_gran
			h.reply(unique, 0, out)
			close(h.inited)
		case fuseGetattr:
			h.reply(unique, 0, rootAttr())
		case fuseStatfs:
			h.statfs.Add(1)
			h.mu.Lock()
			if h.released {
				h.reply(unique, -int32(unix.EIO), nil)
			} else {
				h.held = append(h.held, unique) // held: not answered until Release
			}
			h.mu.Unlock()
		case fuseForget, fuseBatchForget, fuseInterrupt:
		default:
			h.reply(unique, -int32(unix.ENOSYS), nil)
		}
	}
}

// Release fails every held STATFS and every later one with EIO, so the
// processes waiting on them can exit. It is idempotent.
func (h *HungFUSE) Release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released {
		return
	}
	h.released = true
	for _, u := range h.held {
		h.reply(u, -int32(unix.EIO), nil)
	}
	h.held = nil
}

// rootAttr is a fuse_attr_out for the root directory, valid for an hour.
func rootAttr() []byte {
	out := make([]byte, 16+88)
	binary.LittleEndian.PutUint64(out[0:], 3600) // attr_valid
	a := out[16:]
	binary.LittleEndian.PutUint64(a[0:], 1)                    // ino
	binary.LittleEndian.PutUint32(a[60:], unix.S_IFDIR|0o1777) // mode
	binary.LittleEndian.PutUint32(a[64:], 2)                   // nlink
	binary.LittleEndian.PutUint32(a[80:], 4096)                // blksize
	return out
}

func (h *HungFUSE) reply(unique uint64, errno int32, body []byte) {
	out := make([]byte, fuseOutHdrLen+len(body))
	binary.LittleEndian.PutUint32(out[0:], uint32(len(out)))
	binary.LittleEndian.PutUint32(out[4:], uint32(errno))
	binary.LittleEndian.PutUint64(out[8:], unique)
	copy(out[fuseOutHdrLen:], body)
	_, _ = unix.Write(h.fd, out)
}

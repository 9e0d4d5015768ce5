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

	"github.com/shmwatch/shmwatch/internal/realkernel"
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
// works), refuses the rest with ENOSYS and holds every STATFS unanswered
// until Release (EIO) or Answer (a real answer) — the hung NFS-like mount a
// monitoring agent must survive. It is the one FUSE test server of the repo.
type HungFUSE struct {
	// Dir is where it is mounted in this mount namespace.
	Dir    string
	fd     int
	statfs atomic.Int32
	inited chan struct{}

	mu       sync.Mutex
	held     []uint64 // unique ids of unanswered STATFS
	released bool     // STATFS fails with EIO
	answered bool     // STATFS gets AnsweredStatfs
}

// What Answer replies to STATFS: 1000 blocks of 4 KiB, 250 free and
// available, 10 inodes, 5 free.
const (
	AnsweredBlocks, AnsweredFree, AnsweredBlockSize = 1000, 250, 4096
	AnsweredInodes, AnsweredInodesFree              = 10, 5
)

// MountHungFUSE mounts a HungFUSE at a new directory. At cleanup it is
// released, unmounted and its device closed.
//
// A process killed while its STATFS is held cannot exit (the kernel waits
// for the answer of a request already sent to the server), so call Release
// before waiting for such a process: register t.Cleanup(h.Release) after the
// cleanup that kills it.
func MountHungFUSE(t testing.TB) *HungFUSE {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); errors.Is(err, os.ErrNotExist) {
		// A minimal /dev (the VM rig's) lacks the node the kernel serves.
		_ = unix.Mknod("/dev/fuse", unix.S_IFCHR|0o666, int(unix.Mkdev(10, 229)))
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENODEV) && os.Getenv("VMRIG") == "1" {
		t.Skip("the VM rig's kernel has no fuse module loaded; the host run covers FUSE")
	}
	if err != nil {
		realkernel.Skip(t, "open /dev/fuse: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "hungfuse")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := "fd=" + strconv.Itoa(fd) + ",rootmode=40000,user_id=0,group_id=0"
	if err := unix.Mount("podtree-hung", dir, "fuse.podtree-hung", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		unix.Close(fd)
		realkernel.Skip(t, "mount fuse at %s: %v", dir, err)
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
			if h.answered {
				h.answerStatfs(unique)
			} else if h.released {
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

// Answer answers every held STATFS and every later one (see
// AnsweredBlocks), as a slow server that came back would.
func (h *HungFUSE) Answer() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.answered = true
	for _, u := range h.held {
		h.answerStatfs(u)
	}
	h.held = nil
}

// Device is the mount's "major:minor", from a stat of its root (GETATTR,
// which it answers).
func (h *HungFUSE) Device(t testing.TB) string {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, h.Dir, 0, unix.STATX_TYPE, &stx); err != nil {
		t.Fatal(err)
	}
	return strconv.FormatUint(uint64(stx.Dev_major), 10) + ":" + strconv.FormatUint(uint64(stx.Dev_minor), 10)
}

// answerStatfs replies a fuse_statfs_out of the Answered* values.
func (h *HungFUSE) answerStatfs(unique uint64) {
	st := make([]byte, 80)
	binary.LittleEndian.PutUint64(st[0:], AnsweredBlocks)
	binary.LittleEndian.PutUint64(st[8:], AnsweredFree)  // bfree
	binary.LittleEndian.PutUint64(st[16:], AnsweredFree) // bavail
	binary.LittleEndian.PutUint64(st[24:], AnsweredInodes)
	binary.LittleEndian.PutUint64(st[32:], AnsweredInodesFree)
	binary.LittleEndian.PutUint32(st[40:], AnsweredBlockSize) // bsize
	binary.LittleEndian.PutUint32(st[44:], 255)               // namelen
	binary.LittleEndian.PutUint32(st[48:], AnsweredBlockSize) // frsize
	h.reply(unique, 0, st)
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

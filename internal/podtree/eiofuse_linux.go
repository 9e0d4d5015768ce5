package podtree

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// More FUSE opcodes and flags from <linux/fuse.h>.
const (
	fuseLookup    = 1
	fuseOpen      = 14
	fuseRead      = 15
	fuseRelease   = 18
	fuseFlush     = 25
	fuseDirectIO  = 1 // FOPEN_DIRECT_IO: reads go to the server whatever the size says
	eioFileNodeID = 2
)

// MountEIOFile mounts a FUSE directory holding one file, name, that opens
// and then fails every read with EIO: a file the kernel refuses to show,
// such as 3.10's memory.kmem.slabinfo of a memcg whose kmem accounting
// was never switched on (mm/memcontrol.c of 3.10 returns -EIO from
// mem_cgroup_slabinfo_read then). It returns the directory; at cleanup it
// is unmounted and its device closed.
func MountEIOFile(t testing.TB, name string) string {
	t.Helper()
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("real-kernel test: open /dev/fuse: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "eiofuse")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := "fd=" + strconv.Itoa(fd) + ",rootmode=40000,user_id=0,group_id=0"
	if err := unix.Mount("podtree-eio", dir, "fuse.podtree-eio", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		unix.Close(fd)
		t.Skipf("real-kernel test: mount fuse at %s: %v", dir, err)
	}
	inited := make(chan struct{})
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("podtree: unmount %s: %v", dir, err)
		}
		unix.Close(fd)
	})
	go serveEIOFile(fd, name, inited)
	select {
	case <-inited:
	case <-time.After(10 * time.Second):
		t.Fatal("podtree: FUSE INIT never came")
	}
	return dir
}

func serveEIOFile(fd int, name string, inited chan struct{}) {
	buf := make([]byte, 1<<17+4096)
	h := &HungFUSE{fd: fd}
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil || n < fuseInHeaderLen {
			return
		}
		op := binary.LittleEndian.Uint32(buf[4:])
		unique := binary.LittleEndian.Uint64(buf[8:])
		node := binary.LittleEndian.Uint64(buf[16:])
		switch op {
		case fuseInit:
			out := make([]byte, 64)
			binary.LittleEndian.PutUint32(out[0:], 7)
			binary.LittleEndian.PutUint32(out[4:], 31)
			binary.LittleEndian.PutUint32(out[20:], 65536)
			binary.LittleEndian.PutUint32(out[24:], 1)
			h.reply(unique, 0, out)
			close(inited)
		case fuseLookup:
			if string(trimNUL(buf[fuseInHeaderLen:n])) != name || node != 1 {
				h.reply(unique, -int32(unix.ENOENT), nil)
				continue
			}
			out := make([]byte, 40+88) // fuse_entry_out
			binary.LittleEndian.PutUint64(out[0:], eioFileNodeID)
			binary.LittleEndian.PutUint64(out[16:], 3600) // entry_valid
			binary.LittleEndian.PutUint64(out[24:], 3600) // attr_valid
			fileAttr(out[40:])
			h.reply(unique, 0, out)
		case fuseGetattr:
			if node == eioFileNodeID {
				out := make([]byte, 16+88)
				binary.LittleEndian.PutUint64(out[0:], 3600)
				fileAttr(out[16:])
				h.reply(unique, 0, out)
			} else {
				h.reply(unique, 0, rootAttr())
			}
		case fuseOpen:
			out := make([]byte, 16) // fuse_open_out
			binary.LittleEndian.PutUint32(out[8:], fuseDirectIO)
			h.reply(unique, 0, out)
		case fuseRead:
			h.reply(unique, -int32(unix.EIO), nil)
		case fuseRelease, fuseFlush:
			h.reply(unique, 0, nil)
		case fuseForget, fuseBatchForget, fuseInterrupt:
		default:
			h.reply(unique, -int32(unix.ENOSYS), nil)
		}
	}
}

// fileAttr fills a fuse_attr of the read-only file, as cgroup files look.
func fileAttr(a []byte) {
	binary.LittleEndian.PutUint64(a[0:], eioFileNodeID)
	binary.LittleEndian.PutUint32(a[60:], unix.S_IFREG|0o444)
	binary.LittleEndian.PutUint32(a[64:], 1)
	binary.LittleEndian.PutUint32(a[80:], 4096)
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

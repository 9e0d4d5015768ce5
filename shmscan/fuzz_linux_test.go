package shmscan

import (
	"os"
	"strings"
	"testing"
)

// FuzzMountinfo drives bytes through everything shmscan does with a mount
// table: the library parser, the /dev/shm pick, the host index and the join.
func FuzzMountinfo(f *testing.F) {
	for _, name := range []string{"host-mountinfo.txt", "host-with-pods-mountinfo.txt", "container-runtime-shm-mountinfo.txt", "container-no-shm-mountinfo.txt"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("1 2 0:5 / /dev/shm rw - tmpfs shm rw,size=65536k"))                             // no newline
	f.Add([]byte("1 2 0:5 / /dev/shm rw - tmpfs shm rw\n1 2 0:5 / /dev/shm rw - tmpfs shm rw\n")) // duplicate
	f.Add([]byte("1 2 99999999999999999999:-1 / /dev/shm rw - tmpfs shm size=16e\n"))
	f.Add([]byte("1 2 0:5 / /a\\040b\\000 rw shared:1 master:2 - tmpfs shm rw\x00\n"))
	f.Add([]byte("1 2 0:5 / /" + strings.Repeat("x", 1<<20) + " rw - tmpfs t rw\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := parseMountinfo(data, nil)
		if err != nil {
			return
		}
		for _, e := range es {
			if e.device == "0:0" || strings.HasPrefix(e.device, "-") || strings.Contains(e.device, ":-") {
				t.Fatalf("invented device %q", e.device)
			}
		}
		ht := buildHostTable(es)
		shm, err := devShmEntry(data)
		if err != nil {
			t.Fatalf("devShmEntry failed where parseMountinfo did not: %v", err)
		}
		var last *mountEntry // what devShmEntry must find: the last /dev/shm of the whole parse
		for i := range es {
			if es[i].mountPoint == "/dev/shm" {
				last = &es[i]
			}
		}
		if (shm == nil) != (last == nil) || shm != nil && *shm != *last {
			t.Fatalf("devShmEntry on the /dev/shm lines = %+v, the whole table's last /dev/shm = %+v", shm, last)
		}
		if shm != nil {
			ht.classify(shm.device, shm.root)
		}
		for uid, ms := range ht.emptyDirs {
			seen := map[string]bool{}
			for _, m := range ms {
				if seen[m.Device] {
					t.Fatalf("duplicate device %s for pod %q", m.Device, uid)
				}
				seen[m.Device] = true
			}
		}
	})
}

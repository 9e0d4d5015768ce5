package cgroupfs

import (
	"bytes"
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// seeds adds every captured fixture with one of names, plus hostile inputs.
func seeds(f *testing.F, names ...string) {
	for _, dir := range []string{"host-v1", "vm-v1", "vm-v2", "docs-3.10"} {
		for _, n := range names {
			for _, p := range []string{"cg." + n, "root." + n, n} {
				if b, err := filepath.Glob(filepath.Join("testdata", dir, p)); err == nil && len(b) == 1 {
					f.Add(fixture(f, filepath.Join(dir, p)))
				}
			}
		}
	}
	for _, s := range []string{"", "\n", "max", "max\n", "-1\n", "18446744073709551616\n", "key 1\nkey 1\n",
		"a\x00 1\n", "total_shmem 99999999999999999999999\n", "some avg10=1e308 avg60=0 avg300=0 total=0",
		strings.Repeat("x", 1<<20), "anon 1\r\n"} {
		f.Add([]byte(s))
	}
}

// checkErr fails unless err is nil or wraps ErrFileParse.
func checkErr(t *testing.T, err error) {
	if err != nil && !errors.Is(err, ErrFileParse) {
		t.Fatalf("error does not wrap ErrFileParse: %v", err)
	}
}

func FuzzParseMemoryStat(f *testing.F) {
	seeds(f, "memory.stat")
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v1 := range []bool{true, false} {
			s, err := ParseMemoryStat(data, v1)
			checkErr(t, err)
			if v1 && (s.Kernel != nil || s.Slab != nil || s.Sock != nil) {
				t.Fatalf("v1 filled a v2-only field: %+v", s)
			}
		}
	})
}

func FuzzParseEvents(f *testing.F) {
	seeds(f, "memory.events", "memory.events.local", "cgroup.stat")
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseEvents(data)
		checkErr(t, err)
		for k := range m {
			if k == "" || strings.ContainsAny(k, " \n") {
				t.Fatalf("bad key %q", k)
			}
		}
	})
}

// FuzzParseCgroupStat fuzzes the v2 cgroup.stat reading as Node does it.
func FuzzParseCgroupStat(f *testing.F) {
	seeds(f, "cgroup.stat")
	f.Add([]byte("nr_descendants 3\nnr_subsys_memory 4\nnr_dying_descendants 1\nnr_dying_subsys_memory 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := ParseEvents(data)
		checkErr(t, err)
	})
}

func FuzzParsePSI(f *testing.F) {
	seeds(f, "memory.pressure", "proc.pressure.memory", "squeezed.proc.pressure.memory", "squeezed.cg.memory.pressure")
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePSI(data)
		checkErr(t, err)
		if err == nil && (p.Some.Avg10 < 0 || p.Some.Avg10 > 100) {
			t.Fatalf("avg10 out of range: %v", p.Some.Avg10)
		}
	})
}

func FuzzParseProcCgroups(f *testing.F) {
	seeds(f, "proc.cgroups")
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := ParseProcCgroups(data)
		checkErr(t, err)
	})
}

func FuzzParseLimit(f *testing.F) {
	seeds(f, "memory.limit_in_bytes", "memory.max", "memory.kmem.limit_in_bytes", "memory.current")
	f.Fuzz(func(t *testing.T, data []byte) {
		v, unlimited, err := ParseLimit(data)
		checkErr(t, err)
		if unlimited && v != 0 {
			t.Fatalf("unlimited with value %d", v)
		}
		if err == nil && !unlimited && v >= v1UnlimitedFloor {
			t.Fatalf("sentinel %d returned as a limit", v)
		}
		_, err = ParseCounter(data)
		checkErr(t, err)
	})
}

func FuzzParseOOMControl(f *testing.F) {
	seeds(f, "memory.oom_control")
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := ParseOOMControl(data)
		checkErr(t, err)
	})
}

func FuzzParseProcs(f *testing.F) {
	f.Add([]byte("1\n2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pids, err := ParseProcs(data)
		checkErr(t, err)
		for _, p := range pids {
			if p < 0 {
				t.Fatalf("negative pid %d", p)
			}
		}
	})
}

// FuzzMountinfo runs mode detection over arbitrary mountinfo text (moby's
// parser plus our selection of mounts).
func FuzzMountinfo(f *testing.F) {
	if runtime.GOOS != "linux" {
		f.Skip("mountinfo parsing is Linux only")
	}
	seeds(f, "self.mountinfo")
	f.Add([]byte("35 31 0:32 / /sys/fs/cgroup/mem\\040ory rw - cgroup cgroup rw,memory\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		mounts, err := parseMountinfo(data)
		if err != nil {
			return
		}
		h, err := hierarchyFromMounts(mounts, func(string) ([]byte, error) { return data, nil })
		if err == nil && h.MemoryRoot == "" {
			t.Fatalf("mode %q without a memory root", h.Mode)
		}
	})
}

func FuzzParseCgroupNames(f *testing.F) {
	id := strings.Repeat("ab", 32)
	for _, s := range []string{"pod5b1c0d1e-aaaa-bbbb-cccc-000000000001", "kubepods-burstable-pod5b1c0d1e_aaaa_bbbb_cccc_000000000001.slice",
		"kubepods-pod5b1c0d1e_aaaa_bbbb_cccc_000000000001.slice", id, "cri-containerd-" + id + ".scope", "crio-" + id,
		"crio-conmon-" + id + ".scope", "docker-" + id + ".scope", "kubepods-besteffort-pod.slice"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if uid, qos, d, ok := ParsePodCgroupName(name); ok {
			if !validUID(uid) || d == "" || (d == DriverSystemd) == (qos == "") {
				t.Fatalf("%q -> %q %q %q", name, uid, qos, d)
			}
		}
		if id, _, ok := ParseContainerCgroupName(name); ok && !isContainerID(id) {
			t.Fatalf("%q -> id %q", name, id)
		}
		if bytes.Contains([]byte(name), []byte("crio-conmon-")) {
			if _, _, ok := ParseContainerCgroupName(name); ok && strings.HasPrefix(name, "crio-conmon-") {
				t.Fatalf("conmon taken as a container: %q", name)
			}
		}
	})
}

func FuzzParseMemTotal(f *testing.F) {
	seeds(f, "proc.meminfo")
	f.Add([]byte("MemTotal:       18014398509481984 kB\n"))
	f.Add([]byte("MemTotal: 1 MB\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ParseMemTotal(data)
		if err != nil && n != 0 {
			t.Fatalf("error %v with value %d", err, n)
		}
		if err == nil && n%1024 != 0 {
			t.Fatalf("%d is not whole kB", n)
		}
	})
}

func FuzzParseSlabinfo(f *testing.F) {
	seeds(f, "proc.slabinfo", "memory.kmem.slabinfo")
	f.Add(fixture(f, "vm510-v1/proc.slabinfo"))
	f.Fuzz(func(t *testing.T, data []byte) {
		caches, err := ParseSlabinfo(data)
		if err != nil && caches != nil {
			t.Fatalf("error %v with %d caches", err, len(caches))
		}
		for _, c := range caches {
			if c.Name == "" {
				t.Fatalf("cache without a name: %+v", c)
			}
		}
	})
}

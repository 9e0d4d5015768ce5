package shmscan

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const fixtureSandbox = "4f1d2c3b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0011"
const fixturePod = "1e2d3c4b-aaaa-4bbb-8ccc-0123456789ab"

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fixtureHost(t testing.TB, name string) *hostTable {
	t.Helper()
	es, err := parseMountinfo(fixture(t, name), nil)
	if err != nil {
		t.Fatal(err)
	}
	return buildHostTable(es)
}

func TestDevShmEntryFixtures(t *testing.T) {
	e, err := devShmEntry(fixture(t, "container-runtime-shm-mountinfo.txt"))
	if err != nil || e == nil {
		t.Fatalf("runtime shm: %v %v", e, err)
	}
	want := mountEntry{device: "0:39", root: "/", mountPoint: "/dev/shm", fsType: "tmpfs", superOpts: "rw,size=65536k"}
	if diff := cmp.Diff(want, *e, cmp.AllowUnexported(mountEntry{})); diff != "" {
		t.Errorf("the last /dev/shm mount (-want +got):\n%s", diff)
	}
	e, err = devShmEntry(fixture(t, "container-no-shm-mountinfo.txt"))
	if err != nil || e != nil {
		t.Errorf("no /dev/shm mount: %+v %v", e, err)
	}
}

func TestHostTableFixtures(t *testing.T) {
	ht := fixtureHost(t, "host-with-pods-mountinfo.txt")
	if ht.devShm != "0:27" {
		t.Errorf("host /dev/shm device = %q, want 0:27 (the upper of two stacked mounts)", ht.devShm)
	}
	p, o := ht.classify("0:39", "/")
	if o.Source != SourceRuntime || o.SandboxID != fixtureSandbox || p == "" {
		t.Errorf("classify 0:39 = %q %+v", p, o)
	}
	if _, o := ht.classify("0:27", "/"); o.Source != SourceHost {
		t.Errorf("classify host shm = %+v", o)
	}
	if p, o := ht.classify("0:23", "/"); o.Source != SourceUnknown || p != "/dev/shm" {
		t.Errorf("classify the hidden lower /dev/shm = %q %+v, want unknown", p, o)
	}
	if p, o := ht.classify("9:99", "/"); o.Source != SourceUnknown || p != "" {
		t.Errorf("classify an absent device = %q %+v", p, o)
	}
	eds := ht.emptyDirs[fixturePod]
	if len(eds) != 1 || eds[0].Device != "0:40" || eds[0].Volume != "dshm" || eds[0].SizeOption == nil || *eds[0].SizeOption != 128<<20 {
		t.Errorf("emptyDirs = %+v", eds)
	}
	rs, ok := ht.runtimeShm[fixtureSandbox]
	if !ok || len(ht.runtimeShm) != 1 || rs.Device != "0:39" || rs.Source != SourceRuntime || rs.HostPath == "" ||
		rs.SizeOption == nil || *rs.SizeOption != 64<<20 {
		t.Errorf("runtimeShm = %+v", ht.runtimeShm)
	}
	if plain := fixtureHost(t, "host-mountinfo.txt"); len(plain.emptyDirs) != 0 || len(plain.runtimeShm) != 0 {
		t.Errorf("emptyDirs, runtime shm on a host without pods: %+v %+v", plain.emptyDirs, plain.runtimeShm)
	}
}

func TestParseMountinfoBadInput(t *testing.T) {
	for name, in := range map[string]string{
		"too few fields": "1 2 3:4 / /x rw\n",
		"no separator":   "1 2 3:4 / /x rw a b c d e\n",
		"long line":      "1 2 0:5 / /" + string(make([]byte, 70000)) + " rw - tmpfs tmpfs rw\n",
	} {
		if _, err := parseMountinfo([]byte(in), nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	es, err := parseMountinfo([]byte("1 2 x:y / /dev/shm rw - tmpfs t rw\n3 4 -1:2 / /dev/shm rw - tmpfs t rw\n"), nil)
	if err != nil || len(es) != 0 {
		t.Errorf("bad devices must be dropped, not read as 0:0: %+v %v", es, err)
	}
}

package cgroupfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func u64(v uint64) *uint64 { return &v }

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseMemoryStat(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		data    string
		v1      bool
		want    MemoryStat
		wantErr error
	}{
		{name: "host v1 6.18 captured", file: "host-v1/cg.memory.stat", v1: true,
			want: MemoryStat{Shmem: u64(8388608), File: u64(8482816), Anon: u64(0), InactiveFile: u64(90112)}},
		{name: "vm v1 6.1 captured", file: "vm-v1/cg.memory.stat", v1: true,
			want: MemoryStat{Shmem: u64(8388608), File: u64(8388608), Anon: u64(0), InactiveFile: u64(0)}},
		{name: "vm v2 6.1 captured", file: "vm-v2/cg.memory.stat",
			want: MemoryStat{Shmem: u64(8388608), File: u64(8388608), Anon: u64(0), InactiveFile: u64(0),
				Kernel: u64(24576), Slab: u64(16776), Sock: u64(0)}},
		{name: "3.10 from docs: no shmem", file: "docs-3.10/memory.stat", v1: true,
			want: MemoryStat{File: u64(8388608), Anon: u64(4194304), InactiveFile: u64(6291456)}},
		{name: "v1 local fields ignored", data: "shmem 5\ncache 6\n", v1: true},
		{name: "no final newline", data: "anon 1\nshmem 2", want: MemoryStat{Anon: u64(1), Shmem: u64(2)}},
		{name: "max uint64", data: "anon 18446744073709551615\n", want: MemoryStat{Anon: u64(1<<64 - 1)}},
		{name: "overflow", data: "anon 1\nshmem 18446744073709551616\n", want: MemoryStat{Anon: u64(1)}, wantErr: ErrFileParse},
		{name: "negative", data: "anon -1\n", wantErr: ErrFileParse},
		{name: "max word", data: "anon max\n", wantErr: ErrFileParse},
		{name: "duplicate key", data: "anon 1\nanon 2\n", want: MemoryStat{Anon: u64(2)}, wantErr: ErrFileParse},
		{name: "NUL byte", data: "anon 1\x00\n", wantErr: ErrFileParse},
		{name: "missing value", data: "anon\n", wantErr: ErrFileParse},
		{name: "empty", data: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(tt.data)
			if tt.file != "" {
				data = fixture(t, tt.file)
			}
			got, err := ParseMemoryStat(data, tt.v1)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestParseLimit(t *testing.T) {
	tests := []struct {
		data          string
		want          uint64
		wantUnlimited bool
		wantErr       bool
	}{
		{data: "268435456\n", want: 268435456},
		{data: "max\n", wantUnlimited: true},
		{data: "9223372036854771712\n", wantUnlimited: true}, // 4 KiB page-rounded LONG_MAX (captured)
		{data: "9223372036854775807\n", wantUnlimited: true}, // 3.10 unrounded
		{data: "9223372036854710272\n", wantUnlimited: true}, // 64 KiB page-rounded
		{data: "9223372036854000000\n", want: 9223372036854000000},
		{data: "0", want: 0},
		{data: "-1\n", wantErr: true},
		{data: "", wantErr: true},
		{data: "max max\n", wantErr: true},
		{data: "12 \n", wantErr: true},
	}
	for _, tt := range tests {
		v, unl, err := ParseLimit([]byte(tt.data))
		if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, ErrFileParse)) {
			t.Errorf("ParseLimit(%q) err = %v", tt.data, err)
		}
		if v != tt.want || unl != tt.wantUnlimited {
			t.Errorf("ParseLimit(%q) = %d, %v; want %d, %v", tt.data, v, unl, tt.want, tt.wantUnlimited)
		}
	}
	for _, f := range []string{"host-v1/cg.memory.limit_in_bytes", "vm-v1/cg.memory.limit_in_bytes", "vm-v2/cg.memory.max"} {
		if v, unl, err := ParseLimit(fixture(t, f)); err != nil || unl || v != 256<<20 {
			t.Errorf("%s: %d %v %v, want 256 MiB", f, v, unl, err)
		}
	}
	for _, f := range []string{"host-v1/root.memory.limit_in_bytes", "host-v1/cg.memory.kmem.limit_in_bytes"} {
		if _, unl, err := ParseLimit(fixture(t, f)); err != nil || !unl {
			t.Errorf("%s: unlimited=%v err=%v, want unlimited", f, unl, err)
		}
	}
}

func TestParseEvents(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		file    string
		want    map[string]uint64
		wantErr bool
	}{
		{name: "memory.events 6.1", file: "vm-v2/cg.memory.events",
			want: map[string]uint64{"low": 0, "high": 0, "max": 0, "oom": 0, "oom_kill": 0, "oom_group_kill": 0}},
		{name: "root cgroup.stat 6.1", file: "vm-v2/root.cgroup.stat",
			want: map[string]uint64{"nr_descendants": 1, "nr_dying_descendants": 0}},
		{name: "cgroup.stat 6.11+ subsys", data: "nr_descendants 3\nnr_subsys_memory 4\nnr_dying_descendants 1\nnr_dying_subsys_memory 1",
			want: map[string]uint64{"nr_descendants": 3, "nr_subsys_memory": 4, "nr_dying_descendants": 1, "nr_dying_subsys_memory": 1}},
		{name: "duplicate", data: "max 1\nmax 2\n", want: map[string]uint64{"max": 2}, wantErr: true},
		{name: "malformed keeps earlier", data: "max 1\noom x\n", want: map[string]uint64{"max": 1}, wantErr: true},
		{name: "tabs", data: "max\t1\n", want: map[string]uint64{}, wantErr: true},
		{name: "blank lines", data: "\n\nmax 1\n\n", want: map[string]uint64{"max": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(tt.data)
			if tt.file != "" {
				data = fixture(t, tt.file)
			}
			got, err := ParseEvents(data)
			if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, ErrFileParse)) {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestParsePSI(t *testing.T) {
	got, err := ParsePSI(fixture(t, "vm-v2/cg.memory.pressure"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(PSI{Full: &PSILine{}}, got); diff != "" {
		t.Errorf("captured (-want +got)\n%s", diff)
	}
	got, err = ParsePSI([]byte("some avg10=1.50 avg60=0.25 avg300=0.00 total=123456\nfull avg10=0.10 avg60=0.00 avg300=0.00 total=99"))
	want := PSI{Some: PSILine{Avg10: 1.5, Avg60: 0.25, TotalMicroseconds: 123456}, Full: &PSILine{Avg10: 0.1, TotalMicroseconds: 99}}
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	got, err = ParsePSI([]byte("some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n"))
	if err != nil || got.Full != nil || got.Some.TotalMicroseconds != 7 {
		t.Errorf("some only: %+v %v", got, err)
	}
	for _, bad := range []string{"", "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
		"some avg10=0.00 avg60=0.00 total=0\n", "some avg10=NaN avg60=0.00 avg300=0.00 total=0\n",
		"some avg10=-1 avg60=0.00 avg300=0.00 total=0\n", "some avg10=0.00 avg60=0.00 avg300=0.00 total=-5\n",
		"some avg10=0.00 avg10=0.00 avg300=0.00 total=0\n", "other avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
		"some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nsome avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"} {
		if _, err := ParsePSI([]byte(bad)); !errors.Is(err, ErrFileParse) {
			t.Errorf("ParsePSI(%q) err = %v, want ErrFileParse", bad, err)
		}
	}
}

func TestParseProcCgroups(t *testing.T) {
	got, err := ParseProcCgroups(fixture(t, "vm-v1/proc.cgroups"))
	if err != nil {
		t.Fatal(err)
	}
	var mem *ProcCgroup
	for i := range got {
		if got[i].Name == "memory" {
			mem = &got[i]
		}
	}
	// The capture ran with its own test cgroup alive: root + 1.
	if mem == nil || mem.NumCgroups != 2 || !mem.Enabled || mem.Hierarchy == 0 {
		t.Errorf("vm-v1 memory line = %+v", mem)
	}
	got, err = ParseProcCgroups(fixture(t, "vm-v2/proc.cgroups"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range got {
		if c.Hierarchy != 0 {
			t.Errorf("v2 controller %+v has a v1 hierarchy", c)
		}
	}
	want := []ProcCgroup{{Name: "memory", Hierarchy: 5, NumCgroups: 31, Enabled: true}}
	got, err = ParseProcCgroups([]byte("#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t5\t31\t1"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	for _, bad := range []string{"memory\t5\t31\n", "memory\t5\t-1\t1\n", "memory\t5\t3\t2\n", "memory\t5\tx\t1\n"} {
		if _, err := ParseProcCgroups([]byte(bad)); !errors.Is(err, ErrFileParse) {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
}

func TestParseOOMControl(t *testing.T) {
	got, err := ParseOOMControl(fixture(t, "host-v1/cg.memory.oom_control"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(OOMControl{OOMKill: u64(0)}, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	got, err = ParseOOMControl([]byte("oom_kill_disable 1\nunder_oom 1\n"))
	if err != nil || !got.UnderOOM || !got.OOMKillDisable || got.OOMKill != nil {
		t.Errorf("pre-4.13 = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "under_oom 1\n", "oom_kill_disable 0\nunder_oom 0\nunder_oom 1\n", "oom_kill_disable x\nunder_oom 0\n"} {
		if _, err := ParseOOMControl([]byte(bad)); !errors.Is(err, ErrFileParse) {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
}

func TestParseCounterAndProcs(t *testing.T) {
	if v, err := ParseCounter(fixture(t, "vm-v2/cg.memory.current")); err != nil || v == 0 {
		t.Errorf("memory.current = %d, %v", v, err)
	}
	if _, err := ParseCounter([]byte("12\n13\n")); !errors.Is(err, ErrFileParse) {
		t.Errorf("two lines: %v", err)
	}
	got, err := ParseProcs([]byte("1\n42\n"))
	if err != nil || !cmp.Equal(got, []int{1, 42}) {
		t.Errorf("ParseProcs = %v, %v", got, err)
	}
	if _, err := ParseProcs([]byte("1\n99999999999\n")); !errors.Is(err, ErrFileParse) {
		t.Errorf("huge pid: %v", err)
	}
}

func TestNames(t *testing.T) {
	const uid = "5b1c0d1e-aaaa-bbbb-cccc-000000000001"
	uidU := strings.ReplaceAll(uid, "-", "_")
	const static = "6d1a8c7e3f2b4a59bc0e1f2a3b4c5d6e"
	pods := []struct {
		name   string
		uid    string
		qos    QOS
		driver Driver
		wantOK bool
	}{
		{"pod" + uid, uid, "", DriverCgroupfs, true},
		{"pod" + static, static, "", DriverCgroupfs, true},
		{"kubepods-pod" + uidU + ".slice", uid, QOSGuaranteed, DriverSystemd, true},
		{"kubepods-burstable-pod" + uidU + ".slice", uid, QOSBurstable, DriverSystemd, true},
		{"kubepods-besteffort-pod" + uidU + ".slice", uid, QOSBestEffort, DriverSystemd, true},
		{"kubepods-burstable-pod" + uid + ".slice", "", "", "", false}, // dashes are not systemd-escaped
		{"kubepods-burstable.slice", "", "", "", false},
		{"pod" + uid + "x", "", "", "", false},
		{"podABCDEF", "", "", "", false},
		{"kubepods-pod" + uidU, "", "", "", false},
	}
	for _, tt := range pods {
		uid, qos, d, ok := ParsePodCgroupName(tt.name)
		if ok != tt.wantOK || uid != tt.uid || qos != tt.qos || d != tt.driver {
			t.Errorf("ParsePodCgroupName(%q) = %q %q %q %v", tt.name, uid, qos, d, ok)
		}
	}
	id := strings.Repeat("0123456789abcdef", 4)
	ctrs := []struct {
		name   string
		rt     Runtime
		wantOK bool
	}{
		{id, RuntimeUnknown, true},
		{"cri-containerd-" + id + ".scope", RuntimeContainerd, true},
		{"crio-" + id + ".scope", RuntimeCRIO, true},
		{"crio-" + id, RuntimeCRIO, true},
		{"docker-" + id + ".scope", RuntimeDocker, true},
		{"crio-conmon-" + id + ".scope", "", false},
		{"crio-conmon-" + id, "", false},
		{"docker-" + id, "", false},
		{"cri-containerd-" + id[:63] + ".scope", "", false},
		{strings.ToUpper(id), "", false},
		{"pod" + uid, "", false},
	}
	for _, tt := range ctrs {
		gotID, rt, ok := ParseContainerCgroupName(tt.name)
		wantID := ""
		if tt.wantOK {
			wantID = id
		}
		if ok != tt.wantOK || rt != tt.rt || gotID != wantID {
			t.Errorf("ParseContainerCgroupName(%q) = %q %q %v", tt.name, gotID, rt, ok)
		}
	}
}

func TestNodePressure(t *testing.T) {
	for _, tc := range []struct {
		capture, file string
		want          *PSI
	}{
		// Captured from /proc/pressure/memory: this 6.18 host (idle) and the
		// 6.1 VM after a cgroup was throttled above its memory.high.
		{"host-v1", "proc.pressure.memory", &PSI{Full: &PSILine{}}},
		{"vm-v2", "squeezed.proc.pressure.memory", &PSI{
			Some: PSILine{Avg10: 95.46, Avg60: 42.92, Avg300: 10.95, TotalMicroseconds: 34789579},
			Full: &PSILine{Avg10: 95.42, Avg60: 42.85, Avg300: 10.94, TotalMicroseconds: 34710451}}},
	} {
		proc := t.TempDir()
		if err := os.Mkdir(filepath.Join(proc, "pressure"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, "pressure", "memory"), fixture(t, tc.capture+"/"+tc.file), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := (&FS{ProcRoot: proc}).NodePressure()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.capture, diff)
		}
	}
	// psi=0 (or no CONFIG_PSI): no /proc/pressure at all.
	if got, err := (&FS{ProcRoot: t.TempDir()}).NodePressure(); got != nil || err != nil {
		t.Errorf("without /proc/pressure: %+v, %v; want nil, nil", got, err)
	}
	proc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proc, "pressure"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proc, "pressure", "memory"), []byte("some avg10=x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (&FS{ProcRoot: proc}).NodePressure(); !errors.Is(err, ErrFileParse) {
		t.Errorf("malformed: err = %v, want ErrFileParse", err)
	}
}

func TestParseMemTotal(t *testing.T) {
	got, err := ParseMemTotal(fixture(t, "host-v1/proc.meminfo")) // captured: MemTotal: 24683748 kB
	if err != nil || got != 24683748*1024 {
		t.Errorf("host meminfo: %d, %v; want %d", got, err, 24683748*1024)
	}
	for _, bad := range []string{"", "MemFree: 1 kB\n", "MemTotal: 1\n", "MemTotal: x kB\n", "MemTotal: 1 MB\n", "MemTotal: 18014398509481984 kB\n"} {
		if n, err := ParseMemTotal([]byte(bad)); !errors.Is(err, ErrFileParse) || n != 0 {
			t.Errorf("ParseMemTotal(%q) = %d, %v; want ErrFileParse", bad, n, err)
		}
	}
}

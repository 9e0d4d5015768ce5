package agent

import (
	"bytes"
	"strings"
	"testing"
)

// The FULL IN column is there only when growth was sampled, and names the
// sooner of the tmpfs and the memcg.
func TestWriteTableFullIn(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	snap := &Snapshot{Pods: []Pod{
		{Namespace: "ml", Name: "trainer", Shm: []Shm{{Source: "emptydir", Volume: "dshm", FullIn: f(180)}}, MemoryFullIn: f(40)},
		{Namespace: "ml", Name: "loader", Shm: []Shm{{Source: "runtime", FullIn: f(7200)}, {Source: "emptydir", FullIn: f(600)}}},
		{Namespace: "web", Name: "flat", Shm: []Shm{{Source: "runtime"}}},
	}}
	var plain bytes.Buffer
	if err := WriteTable(&plain, snap, false); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plain.String(), "FULL IN") {
		t.Errorf("table without growth sampling has a FULL IN column:\n%s", plain.String())
	}
	sampled := *snap
	sampled.GrowthWindow = 5
	var out bytes.Buffer
	if err := WriteTable(&out, &sampled, false); err != nil {
		t.Fatal(err)
	}
	for pod, want := range map[string]string{"ml/trainer": "memory 40s", "ml/loader": "shm 10m", "web/flat": "-"} {
		row := rowOf(out.String(), pod)
		if !strings.HasSuffix(strings.TrimSpace(row), want) {
			t.Errorf("row of %s = %q, want it to end in %q", pod, row, want)
		}
	}
	if !strings.Contains(out.String(), "FULL IN") {
		t.Errorf("no FULL IN header:\n%s", out.String())
	}
}

func rowOf(table, pod string) string {
	for _, line := range strings.Split(table, "\n") {
		if strings.HasPrefix(line, pod+" ") {
			return line
		}
	}
	return ""
}

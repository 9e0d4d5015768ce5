package cgroupfs

import (
	"testing"
)

func BenchmarkParseMemoryStatV1(b *testing.B) {
	data := fixture(b, "host-v1/cg.memory.stat")
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var m memStat
		if err := parseMemStat(data, true, &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseMemoryStatV2(b *testing.B) {
	data := fixture(b, "vm-v2/cg.memory.stat")
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var m memStat
		if err := parseMemStat(data, false, &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseLimit(b *testing.B) {
	data := []byte("9223372036854771712\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseLimit(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParsePSI(b *testing.B) {
	data := fixture(b, "vm-v2/cg.memory.pressure")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePSI(data); err != nil {
			b.Fatal(err)
		}
	}
}

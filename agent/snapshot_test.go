package agent

import "testing"

// A pod's values fit the block newValues sizes, so every pointer handed
// out stays in it, and each points at its own copy.
func TestValuesKeepWithinOneBlock(t *testing.T) {
	const containers = 3
	v := newValues(containers)
	block := cap(v)
	var ptrs []*uint64
	for i := range podValueCount + containers*containerValueCount {
		x := uint64(i * 10)
		ptrs = append(ptrs, v.keep(&x))
	}
	if cap(v) != block {
		t.Fatalf("block grew from %d to %d: earlier pointers left behind", block, cap(v))
	}
	for i, p := range ptrs {
		if *p != uint64(i*10) {
			t.Errorf("value %d reads %d", i, *p)
		}
	}
	if v.keep(nil) != nil {
		t.Error("keep(nil) is not nil: an absent value would read as 0")
	}
}

package podmeta

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkProviderLookup is what one scrape of a full node (110 pods) costs in Pod and Source
// calls while the API source is healthy.
func BenchmarkProviderLookup(b *testing.B) {
	cfg := Config{NodeName: "n"}
	cfg.setDefaults()
	a := newAPISource(cfg, nil)
	uids := make([]string, 110)
	for i := range uids {
		uids[i] = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		a.byUID[uids[i]] = Pod{UID: uids[i], Namespace: "ns", Name: fmt.Sprint("p", i), Source: SourceAPI}
	}
	now := time.Now()
	a.probed, a.synced, a.lwOK, a.watches = true, true, now, 1
	p := &provider{api: a, logs: newKubeletLogs("", time.Second)}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if p.Source() != SourceAPI {
			b.Fatal("not healthy")
		}
		for _, uid := range uids {
			if _, ok := p.Pod(uid); !ok {
				b.Fatal("missing")
			}
		}
	}
}

package agent

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The HTTP path serves exactly what the Exporter's constant metrics say:
// the same golden file as TestGolden.
func TestHandlerServesGolden(t *testing.T) {
	col := fixtureCollector(buildV1Fixture(t), fixtureMeta())
	srv := httptest.NewServer(NewExporter(col, 10*time.Second, false).Handler(prometheus.NewRegistry(), promhttp.HandlerOpts{}))
	defer srv.Close()
	body := get(t, srv.URL)
	compareGolden(t, "metrics.golden", normalizeMetrics(body))
}

// Scrapes in flight together share one set of gathered families, and the
// set is dropped once the last of them is done.
func TestSharedGathererBuildsOncePerSnapshot(t *testing.T) {
	col := fixtureCollector(buildV1Fixture(t), fixtureMeta())
	g := &sharedGatherer{exporter: NewExporter(col, 10*time.Second, false), base: prometheus.NewRegistry()}
	const scrapers = 20
	for i := 0; i < scrapers; i++ {
		g.begin() // all in flight at once
	}
	if _, err := col.Collect(t.Context()); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	sizes := make([]int, scrapers)
	for i := range scrapers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fams, err := g.Gather()
			if err != nil {
				t.Error(err)
			}
			sizes[i] = len(fams)
		}()
	}
	wg.Wait()
	// A fixture collection takes well under a millisecond, so the scrapes
	// may see several; each snapshot's families are built once however many
	// scrapes it serves.
	collections := int(col.epoch) - 1
	if g.builds > collections {
		t.Errorf("%d concurrent scrapes saw %d collections but built %d family sets", scrapers, collections, g.builds)
	}
	for i := 0; i < scrapers; i++ {
		g.end()
	}
	if g.families != nil {
		t.Errorf("families kept after the last scrape ended")
	}
	t.Logf("%d concurrent scrapes, %d collections, %d family set(s) built, %d families each", scrapers, collections, g.builds, sizes[0])
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

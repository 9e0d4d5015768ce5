package agent

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The HTTP path serves exactly what the Exporter's constant metrics say:
// the same golden file as TestGolden, in text and in protobuf.
func TestHandlerServesGolden(t *testing.T) {
	col := fixtureCollector(buildV1Fixture(t), fixtureMeta())
	srv := httptest.NewServer(NewExporter(col, 10*time.Second, false).Handler(prometheus.NewRegistry(), promhttp.HandlerOpts{}))
	defer srv.Close()
	for _, tc := range []struct {
		name, accept, encoding string
	}{
		{"text", "", ""},
		{"text gzip", "text/plain;version=0.0.4;q=0.5,*/*;q=0.1", "gzip"},
		{"protobuf", `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fams := scrapeFamilies(t, srv.URL, tc.accept, tc.encoding)
			compareGolden(t, "metrics.golden", normalizeMetrics(familiesText(t, fams)))
		})
	}
}

// Scrapes in flight together share one output per snapshot, in both
// paths, and it is dropped once the last of them is done.
func TestHandlerBuildsOncePerSnapshot(t *testing.T) {
	col := fixtureCollector(buildV1Fixture(t), fixtureMeta())
	h := NewExporter(col, 10*time.Second, false).Handler(prometheus.NewRegistry(), promhttp.HandlerOpts{}).(*metricsHandler)
	const scrapers = 20
	for i := 0; i < scrapers; i++ {
		h.begin() // all in flight at once
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
			if i%2 == 0 {
				sizes[i] = len(h.snapshotText())
				return
			}
			fams, err := registryGatherer{h}.Gather()
			if err != nil {
				t.Error(err)
			}
			sizes[i] = len(fams)
		}()
	}
	wg.Wait()
	// A fixture collection takes well under a millisecond, so the scrapes
	// may see several; each snapshot's output is built once per path
	// however many scrapes it serves.
	collections := int(col.epoch) - 1
	if h.builds > 2*collections {
		t.Errorf("%d concurrent scrapes saw %d collections but built %d outputs", scrapers, collections, h.builds)
	}
	for i := 0; i < scrapers; i++ {
		h.end()
	}
	if h.text != nil || h.families != nil {
		t.Errorf("output kept after the last scrape ended")
	}
	t.Logf("%d concurrent scrapes, %d collections, %d output(s) built, %d/%d families", scrapers, collections, h.builds, sizes[0], sizes[1])
}

// The text writer and the constant metrics give the same families, HELP,
// TYPE, series and values, including label values that need escaping or
// are not UTF-8, and with sandboxes exported.
func TestTextSinkMatchesConstMetrics(t *testing.T) {
	snap, err := fixtureCollector(buildV1Fixture(t), fixtureMeta()).Collect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	odd := *snap
	odd.Pods = slices.Clone(snap.Pods)
	p := &odd.Pods[0]
	p.Namespace, p.Name = "we\\ird\"ns", "pod\nname\xff"
	p.Containers = slices.Clone(p.Containers)
	p.Containers[0].Name = `quote"d\`
	for _, tc := range []struct {
		name        string
		snap        *Snapshot
		withSandbox bool
	}{{"fixture", snap, false}, {"fixture with sandboxes", snap, true}, {"odd labels", &odd, false}} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(snapshotMetrics{snap: tc.snap, withSandbox: tc.withSandbox})
			want, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			ts := newTextSink(nil)
			writeMetrics(ts, tc.snap, tc.withSandbox)
			own, _ := ts.families()
			var buf bytes.Buffer
			if err := writeMerged(&buf, own, nil, expfmt.NewFormat(expfmt.TypeTextPlain)); err != nil {
				t.Fatal(err)
			}
			got := parseText(t, buf.Bytes())
			if diff := cmp.Diff(string(familiesText(t, want)), string(familiesText(t, got))); diff != "" {
				t.Errorf("text writer differs from the constant metrics (-const +text):\n%s", diff)
			}
			if len(got) < 20 {
				t.Errorf("only %d families compared", len(got))
			}
		})
	}
}

// scrapeFamilies GETs url with the given Accept and Accept-Encoding and
// decodes whatever format the handler chose.
func scrapeFamilies(t *testing.T, url, accept, encoding string) []*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	req.Header.Set("Accept-Encoding", encoding) // "" keeps Go from asking for gzip itself
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if got := resp.Header.Get("Content-Encoding"); got != encoding {
		t.Fatalf("Content-Encoding %q, want %q", got, encoding)
	}
	var body io.Reader = resp.Body
	if encoding == "gzip" {
		gz, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		body = gz
	}
	format := expfmt.ResponseFormat(resp.Header)
	if accept == "" && format.FormatType() != expfmt.TypeTextPlain || strings.Contains(accept, "protobuf") && format.FormatType() != expfmt.TypeProtoDelim {
		t.Fatalf("Content-Type %q for Accept %q", resp.Header.Get("Content-Type"), accept)
	}
	dec := expfmt.NewDecoder(body, format)
	var fams []*dto.MetricFamily
	for {
		mf := &dto.MetricFamily{}
		if err := dec.Decode(mf); err == io.EOF {
			return fams
		} else if err != nil {
			t.Fatalf("decoding %s: %v", format, err)
		}
		fams = append(fams, mf)
	}
}

func parseText(t *testing.T, b []byte) []*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	byName, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the text writer's output does not parse: %v", err)
	}
	fams := make([]*dto.MetricFamily, 0, len(byName))
	for _, mf := range byName {
		fams = append(fams, mf)
	}
	return fams
}

// familiesText renders families as a registry would: families by name,
// series by label values.
func familiesText(t *testing.T, fams []*dto.MetricFamily) []byte {
	t.Helper()
	fams = slices.Clone(fams)
	slices.SortFunc(fams, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	var buf bytes.Buffer
	for _, mf := range fams {
		slices.SortStableFunc(mf.Metric, func(a, b *dto.Metric) int {
			for i := range min(len(a.Label), len(b.Label)) {
				if c := strings.Compare(a.Label[i].GetValue(), b.Label[i].GetValue()); c != 0 {
					return c
				}
			}
			return len(a.Label) - len(b.Label)
		})
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

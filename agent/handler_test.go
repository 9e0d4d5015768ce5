package agent

import (
	"bytes"
	"compress/gzip"
	"fmt"
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

// Text and protobuf scrapes served at once each get the whole set of
// families. (Collections are shared by Collector.Collect:
// TestCollectSharedByConcurrentCallers.)
func TestHandlerConcurrentScrapes(t *testing.T) {
	col := fixtureCollector(buildV1Fixture(t), fixtureMeta())
	h := NewExporter(col, 10*time.Second, false).Handler(prometheus.NewRegistry(), promhttp.HandlerOpts{})
	const scrapers = 20
	var wg sync.WaitGroup
	families := make([]int, scrapers)
	for i := range scrapers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			if i%2 == 1 {
				req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Errorf("scrape %d: status %d", i, rec.Code)
				return
			}
			dec := expfmt.NewDecoder(rec.Body, expfmt.ResponseFormat(rec.Header()))
			for {
				var mf dto.MetricFamily
				if err := dec.Decode(&mf); err != nil {
					if err != io.EOF {
						t.Errorf("scrape %d: %v", i, err)
					}
					break
				}
				families[i]++
			}
		}()
	}
	wg.Wait()
	want := families[0]
	if want < 20 {
		t.Fatalf("a text scrape got %d families, want 20 or more", want)
	}
	for i, n := range families {
		if n != want {
			t.Errorf("scrape %d (protobuf: %v) got %d families, want %d", i, i%2 == 1, n, want)
		}
	}
}

// Every family has exactly one writer, and each writer writes samples of
// its own family only, with one value per label: a writer listed under the
// wrong family, or writing another's samples, would put series where no
// HELP line announced them.
func TestEveryFamilyHasOneWriter(t *testing.T) {
	if len(familyWriters) != len(allFamilies) {
		t.Errorf("%d writers for %d families", len(familyWriters), len(allFamilies))
	}
	snap, err := fixtureCollector(buildV1Fixture(t), fixtureMeta()).Collect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[*family]bool{}
	wrote := 0
	for _, w := range familyWriters {
		if seen[w.f] {
			t.Errorf("family %s has two writers", w.f.name)
		}
		seen[w.f] = true
		rec := &recordingSink{}
		w.write(rec, w.f, snap, true)
		for _, s := range rec.samples {
			if s.f != w.f {
				t.Errorf("the writer of %s wrote a sample of %s", w.f.name, s.f.name)
			}
			if len(s.labels) != len(w.f.order) {
				t.Errorf("%s: %d label values for %d labels", w.f.name, len(s.labels), len(w.f.order))
			}
		}
		wrote += len(rec.samples)
	}
	if wrote < 40 { // the golden scrape of the same fixture has 43 shmwatch_ samples
		t.Errorf("the writers wrote %d samples of the fixture, want 40 or more", wrote)
	}
}

type recordedSample struct {
	f      *family
	labels []string
}

type recordingSink struct{ samples []recordedSample }

func (r *recordingSink) add(f *family, _ float64, labelValues ...string) {
	r.samples = append(r.samples, recordedSample{f: f, labels: slices.Clone(labelValues)})
}

// The text writer merges the base registry's families in name order,
// before, between and after its own, and flushes in bounded writes.
func TestTextWriterMergesBase(t *testing.T) {
	one, err := fixtureCollector(buildV1Fixture(t), fixtureMeta()).Collect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	snap := *one // 40 copies of the fixture's pods: several flushes
	snap.Pods = nil
	for i := range 40 {
		for _, p := range one.Pods {
			p.UID = fmt.Sprintf("%s-%d", p.UID, i)
			snap.Pods = append(snap.Pods, p)
		}
	}
	base := prometheus.NewRegistry()
	for _, name := range []string{"a_first", "shmwatch_container_between", "shmwatch_zz_last"} {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "base " + name})
		g.Set(7)
		base.MustRegister(g)
	}
	baseFams, err := base.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var w largestWriteBuffer
	tw := newTextWriter(&w, baseFams, expfmt.NewFormat(expfmt.TypeTextPlain))
	writeMetrics(tw, &snap, false)
	if err := tw.finish(); err != nil {
		t.Fatal(err)
	}
	all := prometheus.NewPedanticRegistry()
	all.MustRegister(snapshotMetrics{snap: &snap})
	want, err := prometheus.Gatherers{base, all}.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := parseText(t, w.Bytes())
	if diff := cmp.Diff(string(familiesText(t, want)), string(familiesText(t, got))); diff != "" {
		t.Errorf("merged text differs from one registry's (-registry +text):\n%s", diff)
	}
	var names []string // in the order written
	for _, line := range strings.Split(w.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			names = append(names, strings.Fields(rest)[0])
		}
	}
	if !slices.IsSorted(names) || len(names) != len(got) {
		t.Errorf("families not in name order: %v", names)
	}
	if w.Len() < 4*textFlushSize || w.largest > textFlushSize+4<<10 {
		t.Errorf("%d bytes written, largest write %d bytes, want several of at most %d", w.Len(), w.largest, textFlushSize+4<<10)
	}
}

// largestWriteBuffer keeps what is written and the largest single write.
type largestWriteBuffer struct {
	bytes.Buffer
	largest int
}

func (c *largestWriteBuffer) Write(p []byte) (int, error) {
	c.largest = max(c.largest, len(p))
	return c.Buffer.Write(p)
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
			var buf bytes.Buffer
			tw := newTextWriter(&buf, nil, expfmt.NewFormat(expfmt.TypeTextPlain))
			writeMetrics(tw, tc.snap, tc.withSandbox)
			if err := tw.finish(); err != nil {
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

package agent

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Handler serves /metrics: the base registry (Go and process collectors)
// and the snapshot's metrics. A scrape that accepts the text format (every
// Prometheus does) gets the snapshot streamed by textWriter; one that asks
// for protobuf gets the Exporter's constant metrics through a registry and
// promhttp. Both carry the same series (TestTextSinkMatchesConstMetrics).
//
// Scrapes in flight together share one collection (Collector.Collect);
// each builds its own output from the shared snapshot.
func (e *Exporter) Handler(base prometheus.Gatherer, opts promhttp.HandlerOpts) http.Handler {
	h := &metricsHandler{exporter: e, base: base, errorLog: opts.ErrorLog}
	h.registryPath = promhttp.HandlerFor(registryGatherer{h}, opts)
	return h
}

type metricsHandler struct {
	exporter     *Exporter
	base         prometheus.Gatherer
	errorLog     promhttp.Logger
	registryPath http.Handler
}

func (h *metricsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	format := expfmt.NegotiateAccept(r.Header, expfmt.DefaultAcceptedFormats()...)
	if format.FormatType() != expfmt.TypeTextPlain {
		h.registryPath.ServeHTTP(w, r)
		return
	}
	h.serveText(w, r, format)
}

// serveText streams the snapshot's families and the base registry's,
// merged in name order as a registry would, gzipped when the client
// accepts it. Base gathering errors are logged and the rest is served,
// like promhttp.ContinueOnError.
func (h *metricsHandler) serveText(w http.ResponseWriter, r *http.Request, format expfmt.Format) {
	base, err := h.base.Gather()
	if err != nil {
		h.logf("gathering base metrics: %v", err)
	}
	w.Header().Set("Content-Type", string(format))
	w.Header().Add("Vary", "Accept")
	w.Header().Add("Vary", "Accept-Encoding")
	var out io.Writer = w
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		w.Header().Set("Content-Encoding", "gzip")
		gz := gzipWriters.Get().(*gzip.Writer)
		gz.Reset(w)
		defer func() { _ = gz.Close(); gzipWriters.Put(gz) }()
		out = gz
	}
	tw := newTextWriter(out, base, format)
	h.exporter.write(tw)
	if err := tw.finish(); err != nil {
		h.logf("writing metrics: %v", err)
	}
}

// gzipWriters are reused across scrapes; BestSpeed because the agent runs
// on every node and a scrape's text compresses ~15x even so.
var gzipWriters = sync.Pool{New: func() any {
	gz, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return gz
}}

// acceptsGzip reports whether an Accept-Encoding header offers gzip with
// a non-zero quality.
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q, ok := strings.CutPrefix(strings.TrimSpace(params), "q=")
		if !ok {
			return true
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(q), 64)
		return err == nil && v > 0
	}
	return false
}

func (h *metricsHandler) logf(format string, args ...any) {
	if h.errorLog != nil {
		h.errorLog.Println(fmt.Sprintf(format, args...))
	}
}

// registryGatherer is the protobuf path: the base families and the
// snapshot's constant metrics gathered by a registry, sorted by name.
type registryGatherer struct{ h *metricsHandler }

// Gather returns the base families and the snapshot's. The snapshot's
// families were checked for consistency by the registry that built them;
// the two sets share no names.
func (g registryGatherer) Gather() ([]*dto.MetricFamily, error) {
	own, ownErr := g.h.snapshotFamilies()
	base, baseErr := g.h.base.Gather()
	all := make([]*dto.MetricFamily, 0, len(base)+len(own))
	all = append(append(all, base...), own...)
	sort.Slice(all, func(i, j int) bool { return all[i].GetName() < all[j].GetName() })
	if ownErr != nil {
		return all, ownErr
	}
	return all, baseErr
}

// snapshotFamilies returns the current snapshot's families.
func (h *metricsHandler) snapshotFamilies() ([]*dto.MetricFamily, error) {
	snap, err := h.exporter.snapshot()
	if err != nil {
		return gatherOnce(failedCollection{})
	}
	return gatherOnce(snapshotMetrics{snap: snap, withSandbox: h.exporter.withSandbox})
}

// gatherOnce runs one collector through a fresh registry, which builds the
// families and checks them (no duplicate series, consistent labels).
func gatherOnce(c prometheus.Collector) ([]*dto.MetricFamily, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		return nil, err
	}
	return reg.Gather()
}

// snapshotMetrics is one snapshot as a prometheus.Collector.
type snapshotMetrics struct {
	snap        *Snapshot
	withSandbox bool
}

func (snapshotMetrics) Describe(chan<- *prometheus.Desc) {}

func (s snapshotMetrics) Collect(ch chan<- prometheus.Metric) {
	writeMetrics(constSink(ch), s.snap, s.withSandbox)
}

// failedCollection reports a collection that did not finish in time.
type failedCollection struct{}

func (failedCollection) Describe(chan<- *prometheus.Desc) {}

func (failedCollection) Collect(ch chan<- prometheus.Metric) {
	writeFailedCollection(constSink(ch))
}

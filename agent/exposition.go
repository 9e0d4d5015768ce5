package agent

import (
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// family is one metric family with what both sinks need prebuilt: the
// constant-metric Desc, and for the text writer the label prefixes in
// label-name order (client_golang sorts labels by name; so does the text
// writer, so the two outputs are the same series).
type family struct {
	name   string
	help   string
	typ    prometheus.ValueType
	desc   *prometheus.Desc
	index  int      // position in allFamilies
	order  []int    // label value indexes in label-name order
	prefix []string // `{name="` then `,name="` for each label in that order
}

// allFamilies lists every family in declaration order.
var allFamilies []*family

func gaugeFamily(name, help string, labels ...string) *family {
	return newFamily(name, help, prometheus.GaugeValue, labels)
}

func counterFamily(name, help string, labels ...string) *family {
	return newFamily(name, help, prometheus.CounterValue, labels)
}

func newFamily(name, help string, typ prometheus.ValueType, labels []string) *family {
	f := &family{
		name:  namespace + "_" + name,
		help:  help,
		typ:   typ,
		index: len(allFamilies),
		order: make([]int, len(labels)),
	}
	f.desc = prometheus.NewDesc(f.name, help, labels, nil)
	for i := range f.order {
		f.order[i] = i
	}
	slices.SortFunc(f.order, func(a, b int) int { return strings.Compare(labels[a], labels[b]) })
	for k, i := range f.order {
		sep := ","
		if k == 0 {
			sep = "{"
		}
		f.prefix = append(f.prefix, sep+labels[i]+`="`)
	}
	allFamilies = append(allFamilies, f)
	return f
}

// sink receives one snapshot's samples. writeMetrics is the only place
// that decides which series exist; the sinks only encode them. A sink
// must not keep labelValues: the caller reuses the slice.
type sink interface {
	add(f *family, value float64, labelValues ...string)
}

// constSink sends constant metrics to a prometheus.Collector's channel.
type constSink chan<- prometheus.Metric

func (c constSink) add(f *family, value float64, labelValues ...string) {
	m, err := prometheus.NewConstMetric(f.desc, f.typ, value, labelValues...)
	if err != nil { // only invalid UTF-8 in a label value can get here
		m, err = prometheus.NewConstMetric(f.desc, f.typ, value, validLabels(labelValues)...)
	}
	if err != nil {
		m = prometheus.NewInvalidMetric(f.desc, err)
	}
	c <- m
}

// validLabels replaces invalid UTF-8 (a pod name read from a directory
// name can hold any bytes) with U+FFFD, as the text writer does.
func validLabels(values []string) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = strings.ToValidUTF8(v, "\uFFFD")
	}
	return out
}

// textSink writes the Prometheus text format (0.0.4) directly, one buffer
// per family. It exists for speed: at 1000 pods, building 23,700 constant
// metrics, gathering them through a registry and encoding them cost
// ~80 ms and 490k allocations per scrape; this writer ~11 ms and ~4k
// allocations (pprof of BenchmarkScrape, docs/performance.md).
// TestTextSinkMatchesConstMetrics proves both sinks give the same series.
type textSink struct {
	bufs [][]byte // by family index
}

func newTextSink(sizeHint []int) *textSink {
	t := &textSink{bufs: make([][]byte, len(allFamilies))}
	for i, n := range sizeHint {
		if n > 0 && i < len(t.bufs) {
			t.bufs[i] = make([]byte, 0, n+n/8)
		}
	}
	return t
}

func (t *textSink) add(f *family, value float64, labelValues ...string) {
	b := append(t.bufs[f.index], f.name...)
	for k, i := range f.order {
		b = append(b, f.prefix[k]...)
		b = appendLabelValue(b, labelValues[i])
		b = append(b, '"')
	}
	if len(f.order) > 0 {
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = strconv.AppendFloat(b, value, 'g', -1, 64) // expfmt's format: 1, 0, 2.68435456e+08, NaN, +Inf
	t.bufs[f.index] = append(b, '\n')
}

// appendLabelValue escapes a label value as the text format wants:
// backslash, double quote and newline.
func appendLabelValue(b []byte, v string) []byte {
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, "\uFFFD")
	}
	if !strings.ContainsAny(v, "\\\"\n") {
		return append(b, v...)
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '"':
			b = append(b, `\"`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendHelp escapes HELP text: backslash and newline.
func appendHelp(b []byte, help string) []byte {
	for i := 0; i < len(help); i++ {
		switch c := help[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// textFamily is one family's finished text: HELP, TYPE and samples.
type textFamily struct {
	name    string
	head    []byte // HELP and TYPE lines
	samples []byte
}

// families returns the non-empty families, each with its HELP and TYPE
// lines, sorted by name like a registry's output, and the buffer sizes
// for the next sink's hint.
func (t *textSink) families() ([]textFamily, []int) {
	out := make([]textFamily, 0, len(t.bufs))
	sizes := make([]int, len(t.bufs))
	for _, f := range allFamilies {
		samples := t.bufs[f.index]
		sizes[f.index] = len(samples)
		if len(samples) == 0 {
			continue // a registry emits no family without samples
		}
		head := make([]byte, 0, 2*len(f.name)+len(f.help)+32)
		head = append(append(append(head, "# HELP "...), f.name...), ' ')
		head = append(appendHelp(head, f.help), '\n')
		head = append(append(append(head, "# TYPE "...), f.name...), ' ')
		head = append(append(head, typeName(f.typ)...), '\n')
		out = append(out, textFamily{name: f.name, head: head, samples: samples})
	}
	slices.SortFunc(out, func(a, b textFamily) int { return strings.Compare(a.name, b.name) })
	return out, sizes
}

func typeName(t prometheus.ValueType) string {
	if t == prometheus.CounterValue {
		return "counter"
	}
	return "gauge"
}

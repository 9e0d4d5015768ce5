package agent

import (
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
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
	head   []byte   // the HELP and TYPE lines
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
	f.head = append(append(append(f.head, "# HELP "...), f.name...), ' ')
	f.head = append(appendHelp(f.head, help), '\n')
	f.head = append(append(append(f.head, "# TYPE "...), f.name...), ' ')
	f.head = append(append(f.head, typeName(typ)...), '\n')
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

// textWriter streams the Prometheus text format (0.0.4) to w as the
// families come, merging in the base registry's families by name as a
// registry would. It exists for speed and memory: at 1000 pods, building
// 23,700 constant metrics, gathering them through a registry and encoding
// them cost ~80 ms and 490k allocations per scrape, and holding the text
// of the whole scrape kept 3.5 MB on the heap; this writer holds one
// 32 KiB buffer (docs/performance.md). TestTextSinkMatchesConstMetrics
// proves it and the constant metrics give the same series.
type textWriter struct {
	w    io.Writer
	enc  expfmt.Encoder
	base []*dto.MetricFamily // sorted by name, not yet written
	buf  []byte
	cur  *family
	err  error // the first write error; later writes are skipped
}

// textFlushSize is when the buffer goes to w: large enough that the gzip
// and HTTP layers see few writes.
const textFlushSize = 32 << 10

var textBufs = sync.Pool{New: func() any { b := make([]byte, 0, textFlushSize+4<<10); return &b }}

func newTextWriter(w io.Writer, base []*dto.MetricFamily, format expfmt.Format) *textWriter {
	return &textWriter{w: w, enc: expfmt.NewEncoder(w, format), base: base, buf: (*textBufs.Get().(*[]byte))[:0]}
}

func (t *textWriter) add(f *family, value float64, labelValues ...string) {
	if f != t.cur {
		t.startFamily(f)
	}
	b := append(t.buf, f.name...)
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
	t.buf = append(b, '\n')
	if len(t.buf) >= textFlushSize {
		t.flush()
	}
}

// startFamily writes the base families that sort before f, then f's HELP
// and TYPE. writeMetrics sends one family at a time, so a family starts
// once, at its first sample: an empty family is not written, as a
// registry writes none.
func (t *textWriter) startFamily(f *family) {
	t.cur = f
	t.writeBase(f.name)
	t.buf = append(t.buf, f.head...)
}

// writeBase encodes the base families whose names sort before name, or
// all that are left when name is "".
func (t *textWriter) writeBase(name string) {
	for len(t.base) > 0 && (name == "" || t.base[0].GetName() < name) {
		t.flush()
		if t.err == nil {
			t.err = t.enc.Encode(t.base[0])
		}
		t.base = t.base[1:]
	}
}

func (t *textWriter) flush() {
	if t.err == nil && len(t.buf) > 0 {
		_, t.err = t.w.Write(t.buf)
	}
	t.buf = t.buf[:0]
}

// finish writes what is left and returns the first write error. The
// writer must not be used afterwards.
func (t *textWriter) finish() error {
	t.writeBase("")
	t.flush()
	b := t.buf
	t.buf = nil
	textBufs.Put(&b)
	return t.err
}

// appendLabelValue escapes a label value as the text format wants:
// backslash, double quote and newline. Label values are nearly always
// plain ASCII (uids, ids, DNS names): one pass over a table says so, where
// utf8.ValidString and strings.ContainsAny took two (~1.5 % of a scrape
// at 1000 pods).
func appendLabelValue(b []byte, v string) []byte {
	plain := true
	for i := 0; i < len(v); i++ {
		if labelByteSpecial[v[i]] {
			plain = false
			break
		}
	}
	if plain {
		return append(b, v...)
	}
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, "\uFFFD")
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

// labelByteSpecial marks the bytes a label value cannot be copied with:
// the escaped ones and every non-ASCII byte (UTF-8 to validate).
var labelByteSpecial = func() (t [256]bool) {
	for c := 0x80; c < 0x100; c++ {
		t[c] = true
	}
	t['\\'], t['"'], t['\n'] = true, true, true
	return t
}()

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

func typeName(t prometheus.ValueType) string {
	if t == prometheus.CounterValue {
		return "counter"
	}
	return "gauge"
}

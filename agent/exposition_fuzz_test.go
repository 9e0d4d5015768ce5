package agent

import (
	"strings"
	"testing"
)

// expfmtEscape is how the text format escapes a label value (what expfmt
// does, after client_golang's replacement of invalid UTF-8).
var expfmtEscape = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

// FuzzAppendLabelValue holds the text writer's label escaping, fast path
// and slow, to the text format's: any bytes (a pod name read from a
// directory name can hold anything) come out as expfmt would write them.
func FuzzAppendLabelValue(f *testing.F) {
	for _, s := range []string{"", "web-7f9c", `say "hi"`, `C:\x`, "two\nlines", `a"b\c` + "\nd", "caf\xc3\xa9", "bad\xff\xfeutf8", "\x00\x7f", strings.Repeat("x", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		want := "pre" + expfmtEscape.Replace(strings.ToValidUTF8(v, "\uFFFD"))
		if got := string(appendLabelValue([]byte("pre"), v)); got != want {
			t.Fatalf("appendLabelValue(%q) = %q, want %q", v, got, want)
		}
	})
}

package metricsauth

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzBearerToken: any Authorization header gives either no token or a
// non-empty token without surrounding space that the header contains.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"", "Bearer abc", "bearer  abc ", "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "BEARER x y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		r := &http.Request{Header: http.Header{"Authorization": {h}}}
		tok, ok := bearerToken(r)
		if !ok {
			if tok != "" {
				t.Errorf("%q: no token but %q returned", h, tok)
			}
			return
		}
		if tok == "" || tok != strings.TrimSpace(tok) || !strings.Contains(h, tok) {
			t.Errorf("%q: token %q", h, tok)
		}
	})
}

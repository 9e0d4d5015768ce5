package metricsauth

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

// reviewServer answers TokenReviews and SubjectAccessReviews over real HTTP
// on 127.0.0.1 from two tables, counts the reviews, and can be stopped
// (connection refused) and started again on the same address.
type reviewServer struct {
	t                           *testing.T
	addr                        string
	users                       map[string]string // token -> user name
	allowed                     map[string]bool   // user -> may get /metrics
	tokenReviews, accessReviews atomic.Int64

	mu  sync.Mutex
	srv *http.Server
}

func newReviewServer(t *testing.T) *reviewServer {
	s := &reviewServer{t: t,
		users:   map[string]string{"scraper-token": "system:serviceaccount:monitoring:prometheus", "nobody-token": "system:serviceaccount:default:nobody"},
		allowed: map[string]bool{"system:serviceaccount:monitoring:prometheus": true},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	t.Cleanup(s.stop)
	return s
}

func (s *reviewServer) serve(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /apis/authentication.k8s.io/v1/tokenreviews", func(w http.ResponseWriter, r *http.Request) {
		s.tokenReviews.Add(1)
		var tr authnv1.TokenReview
		if err := s.decode(r, &tr); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if u, ok := s.users[tr.Spec.Token]; ok {
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: u, Groups: []string{"system:serviceaccounts"}}}
		}
		tr.Kind, tr.APIVersion = "TokenReview", "authentication.k8s.io/v1"
		s.reply(w, &tr)
	})
	mux.HandleFunc("POST /apis/authorization.k8s.io/v1/subjectaccessreviews", func(w http.ResponseWriter, r *http.Request) {
		s.accessReviews.Add(1)
		var sar authzv1.SubjectAccessReview
		if err := s.decode(r, &sar); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		na := sar.Spec.NonResourceAttributes
		sar.Status.Allowed = na != nil && na.Verb == "get" && na.Path == "/metrics" && s.allowed[sar.Spec.User]
		sar.Kind, sar.APIVersion = "SubjectAccessReview", "authorization.k8s.io/v1"
		s.reply(w, &sar)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// decode reads a review in JSON or protobuf, whichever client-go sent.
func (s *reviewServer) decode(r *http.Request, into runtime.Object) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	_, _, err = scheme.Codecs.UniversalDeserializer().Decode(body, nil, into)
	return err
}

func (s *reviewServer) reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		s.t.Errorf("encode review: %v", err)
	}
}

func (s *reviewServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		_ = s.srv.Close()
		s.srv = nil
	}
}

func (s *reviewServer) start() {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.t.Fatalf("restart review server on %s: %v", s.addr, err)
	}
	s.serve(ln)
}

// clock is a settable time for the cache TTLs.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestFilter(t *testing.T, api *reviewServer, cfg Config) (http.Handler, *Filter, *clock) {
	t.Helper()
	cfg.Timeout = 2 * time.Second
	// QPS: client-go's default limiter (5/s) would pace the garbage-token flood.
	f, err := New(&rest.Config{Host: "http://" + api.addr, QPS: 1000, Burst: 1000}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	f.now = c.Now
	h := f.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("metrics\n")) }))
	return h, f, c
}

func get(h http.Handler, auth string) (int, string) {
	r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

func TestFilterTable(t *testing.T) {
	api := newReviewServer(t)
	h, f, _ := newTestFilter(t, api, DefaultConfig())
	cases := []struct {
		name, auth string
		code       int
		reason     string
	}{
		{"no header", "", 401, ReasonNoToken},
		{"basic auth", "Basic dXNlcjpwYXNz", 401, ReasonNoToken},
		{"empty bearer", "Bearer ", 401, ReasonNoToken},
		{"garbage token", "Bearer garbage", 401, ReasonInvalidToken},
		{"user without binding", "Bearer nobody-token", 403, ReasonForbidden},
		{"scraper", "Bearer scraper-token", 200, ""},
		{"scheme case", "bearer scraper-token", 200, ""},
	}
	for _, c := range cases {
		code, body := get(h, c.auth)
		if code != c.code {
			t.Errorf("%s: status %d, want %d (%q)", c.name, code, c.code, body)
		}
		if c.code == 200 && body != "metrics\n" {
			t.Errorf("%s: body %q, want the wrapped handler's", c.name, body)
		}
		if c.reason != "" && !strings.Contains(body, c.reason) {
			t.Errorf("%s: body %q does not name reason %s", c.name, body, c.reason)
		}
	}
	for reason, want := range map[string]float64{ReasonNoToken: 3, ReasonInvalidToken: 1, ReasonForbidden: 1, ReasonTokenReviewErr: 0} {
		if got := testutil.ToFloat64(f.failures.WithLabelValues(reason)); got != want {
			t.Errorf("failures{reason=%s} = %v, want %v", reason, got, want)
		}
	}
}

func TestFilterCachesAllowFor5MinAndDenyFor30s(t *testing.T) {
	api := newReviewServer(t)
	h, _, clk := newTestFilter(t, api, DefaultConfig())
	for range 3 {
		if code, _ := get(h, "Bearer scraper-token"); code != 200 {
			t.Fatalf("scraper refused: %d", code)
		}
		if code, _ := get(h, "Bearer nobody-token"); code != 403 {
			t.Fatalf("nobody: %d, want 403", code)
		}
	}
	if n, m := api.tokenReviews.Load(), api.accessReviews.Load(); n != 2 || m != 2 {
		t.Fatalf("reviews after 3 rounds: %d token, %d access; want 2 and 2 (cached)", n, m)
	}
	clk.advance(31 * time.Second) // deny expired, allow not
	get(h, "Bearer scraper-token")
	get(h, "Bearer nobody-token")
	if n := api.tokenReviews.Load(); n != 3 {
		t.Errorf("token reviews after 31 s = %d, want 3 (only the denied token asked again)", n)
	}
	clk.advance(5 * time.Minute)
	get(h, "Bearer scraper-token")
	if n := api.tokenReviews.Load(); n != 4 {
		t.Errorf("token reviews after 5 min = %d, want 4 (the allowed token asked again)", n)
	}
}

func TestFilterFailsClosedWhenAPIDown(t *testing.T) {
	api := newReviewServer(t)
	h, f, clk := newTestFilter(t, api, DefaultConfig())
	if code, _ := get(h, "Bearer scraper-token"); code != 200 {
		t.Fatalf("scraper refused while the API is up: %d", code)
	}
	api.stop()
	if code, _ := get(h, "Bearer scraper-token"); code != 200 {
		t.Errorf("cached scraper with the API down: %d, want 200", code)
	}
	api.users["second-token"] = "system:serviceaccount:monitoring:prometheus"
	if code, _ := get(h, "Bearer second-token"); code != http.StatusServiceUnavailable {
		t.Errorf("new token with the API down: %d, want 503", code)
	}
	if got := testutil.ToFloat64(f.failures.WithLabelValues(ReasonTokenReviewErr)); got != 1 {
		t.Errorf("failures{reason=tokenreview_error} = %v, want 1", got)
	}
	clk.advance(5*time.Minute + time.Second)
	if code, _ := get(h, "Bearer scraper-token"); code != http.StatusServiceUnavailable {
		t.Errorf("expired decision with the API down: %d, want 503", code)
	}
	api.start()
	if code, _ := get(h, "Bearer second-token"); code != 200 {
		t.Errorf("new token after the API is back: %d, want 200 (errors are not cached)", code)
	}
}

func TestFilterSharesConcurrentReviews(t *testing.T) {
	api := newReviewServer(t)
	h, _, _ := newTestFilter(t, api, DefaultConfig())
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if code, _ := get(h, "Bearer scraper-token"); code != 200 {
				t.Errorf("concurrent scrape: %d", code)
			}
		})
	}
	wg.Wait()
	// Requests that arrive after the first review finished hit the cache;
	// ones that overlap it share it: never one review per request.
	if n := api.tokenReviews.Load(); n > 2 {
		t.Errorf("20 concurrent scrapes made %d token reviews, want at most 2", n)
	}
}

func TestFilterCacheIsBounded(t *testing.T) {
	api := newReviewServer(t)
	cfg := DefaultConfig()
	cfg.MaxEntries = 8
	h, f, _ := newTestFilter(t, api, cfg)
	for i := range 50 {
		get(h, "Bearer garbage-"+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	f.mu.Lock()
	n := len(f.cache)
	f.mu.Unlock()
	if n > cfg.MaxEntries {
		t.Errorf("cache holds %d entries after 50 garbage tokens, want <= %d", n, cfg.MaxEntries)
	}
}

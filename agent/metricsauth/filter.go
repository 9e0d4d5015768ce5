package metricsauth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
)

// Reasons a request is refused, the values of the failures metric's reason label.
const (
	ReasonNoToken         = "no_token"          // no bearer token in the request
	ReasonInvalidToken    = "invalid_token"     // the TokenReview did not authenticate it
	ReasonForbidden       = "forbidden"         // the SubjectAccessReview denied the user
	ReasonTokenReviewErr  = "tokenreview_error" // the API server did not answer the TokenReview
	ReasonAccessReviewErr = "subjectaccessreview_error"
)

// Config says what the filter asks the API server.
type Config struct {
	// Verb and Path form the non-resource attributes of the SubjectAccessReview.
	Verb, Path string
	// AllowTTL and DenyTTL bound how long an answer is reused for a token.
	AllowTTL, DenyTTL time.Duration
	// Timeout bounds each review round trip.
	Timeout time.Duration
	// MaxEntries bounds the cache; beyond it expired entries go first, then any.
	MaxEntries int
}

// DefaultConfig is controller-runtime's choice: allow 5 min, deny 30 s.
func DefaultConfig() Config {
	return Config{Verb: "get", Path: "/metrics", AllowTTL: 5 * time.Minute, DenyTTL: 30 * time.Second,
		Timeout: 10 * time.Second, MaxEntries: 1024}
}

// decision is one cached answer for a token.
type decision struct {
	status  int    // http.StatusOK, 401 or 403
	reason  string // failure reason when status is not 200
	user    string
	expires time.Time
}

// Filter authenticates and authorizes requests against the API server.
type Filter struct {
	cfg      Config
	authn    *rest.RESTClient // authentication.k8s.io/v1
	authz    *rest.RESTClient // authorization.k8s.io/v1
	failures *prometheus.CounterVec
	now      func() time.Time

	inflight singleflight.Group
	mu       sync.Mutex
	cache    map[[sha256.Size]byte]decision
}

// New builds a filter that reviews through the API server of rc.
func New(rc *rest.Config, cfg Config) (*Filter, error) {
	authn, err := restClientFor(rc, authnv1.SchemeGroupVersion, authnv1.AddToScheme)
	if err != nil {
		return nil, fmt.Errorf("metricsauth: tokenreview client: %w", err)
	}
	authz, err := restClientFor(rc, authzv1.SchemeGroupVersion, authzv1.AddToScheme)
	if err != nil {
		return nil, fmt.Errorf("metricsauth: subjectaccessreview client: %w", err)
	}
	f := &Filter{
		cfg:   cfg,
		authn: authn,
		authz: authz,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shmwatch_metrics_auth_failures_total",
			Help: "Requests to /metrics refused by the Kubernetes RBAC filter, by reason (no_token, invalid_token, forbidden, tokenreview_error, subjectaccessreview_error).",
		}, []string{"reason"}),
		now:   time.Now,
		cache: make(map[[sha256.Size]byte]decision),
	}
	for _, r := range []string{ReasonNoToken, ReasonInvalidToken, ReasonForbidden, ReasonTokenReviewErr, ReasonAccessReviewErr} {
		f.failures.WithLabelValues(r) // every reason exported from the start, at 0
	}
	return f, nil
}

// restClientFor is a REST client whose scheme holds one API group: client-go's
// typed clients import k8s.io/client-go/kubernetes/scheme, which registers
// every API group (docs/performance.md; podmeta avoids it the same way).
func restClientFor(rc *rest.Config, gv schema.GroupVersion, add func(*runtime.Scheme) error) (*rest.RESTClient, error) {
	scheme := runtime.NewScheme()
	if err := add(scheme); err != nil {
		return nil, err
	}
	c := rest.CopyConfig(rc)
	c.APIPath = "/apis"
	c.GroupVersion = &gv
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	return rest.RESTClientFor(c)
}

// Collector exports the failures counter.
func (f *Filter) Collector() prometheus.Collector { return f.failures }

// Wrap lets a request through to next only when its token's user may
// Verb the Path.
func (f *Filter) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := f.decide(r)
		if d.status == http.StatusOK {
			next.ServeHTTP(w, r)
			return
		}
		f.failures.WithLabelValues(d.reason).Inc()
		if d.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="shmwatch"`)
		}
		http.Error(w, fmt.Sprintf("%s: %s", http.StatusText(d.status), d.reason), d.status)
	})
}

func (f *Filter) decide(r *http.Request) decision {
	token, ok := bearerToken(r)
	if !ok {
		return decision{status: http.StatusUnauthorized, reason: ReasonNoToken}
	}
	key := sha256.Sum256([]byte(token))
	if d, ok := f.cached(key); ok {
		return d
	}
	// Concurrent scrapes with one new token share one pair of reviews.
	v, _, _ := f.inflight.Do(string(key[:]), func() (any, error) {
		d := f.review(r.Context(), token)
		if d.expires.After(f.now()) {
			f.store(key, d)
		}
		return d, nil
	})
	return v.(decision)
}

// review asks the API server; an API error is a refusal that is not cached.
func (f *Filter) review(ctx context.Context, token string) decision {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.Timeout)
	defer cancel()
	tr := &authnv1.TokenReview{}
	err := f.authn.Post().Resource("tokenreviews").
		Body(&authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}).Do(ctx).Into(tr)
	if err != nil {
		return decision{status: http.StatusServiceUnavailable, reason: ReasonTokenReviewErr}
	}
	now := f.now()
	if !tr.Status.Authenticated {
		return decision{status: http.StatusUnauthorized, reason: ReasonInvalidToken, expires: now.Add(f.cfg.DenyTTL)}
	}
	u := tr.Status.User
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra(u.Extra),
		NonResourceAttributes: &authzv1.NonResourceAttributes{Verb: f.cfg.Verb, Path: f.cfg.Path},
	}}
	res := &authzv1.SubjectAccessReview{}
	if err := f.authz.Post().Resource("subjectaccessreviews").Body(sar).Do(ctx).Into(res); err != nil {
		return decision{status: http.StatusServiceUnavailable, reason: ReasonAccessReviewErr, user: u.Username}
	}
	if !res.Status.Allowed {
		return decision{status: http.StatusForbidden, reason: ReasonForbidden, user: u.Username, expires: now.Add(f.cfg.DenyTTL)}
	}
	return decision{status: http.StatusOK, user: u.Username, expires: now.Add(f.cfg.AllowTTL)}
}

func (f *Filter) cached(key [sha256.Size]byte) (decision, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.cache[key]
	if !ok {
		return decision{}, false
	}
	if !f.now().Before(d.expires) {
		delete(f.cache, key)
		return decision{}, false
	}
	return d, true
}

func (f *Filter) store(key [sha256.Size]byte, d decision) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.cache) >= f.cfg.MaxEntries {
		f.evictLocked()
	}
	f.cache[key] = d
}

// evictLocked drops expired entries, else one arbitrary entry: a flood of
// garbage tokens must not grow the cache without bound.
func (f *Filter) evictLocked() {
	now := f.now()
	for k, d := range f.cache {
		if !now.Before(d.expires) {
			delete(f.cache, k)
		}
	}
	for k := range f.cache {
		if len(f.cache) < f.cfg.MaxEntries {
			return
		}
		delete(f.cache, k)
	}
}

func extra(in map[string]authnv1.ExtraValue) map[string]authzv1.ExtraValue {
	if in == nil {
		return nil
	}
	out := make(map[string]authzv1.ExtraValue, len(in))
	for k, v := range in {
		out[k] = authzv1.ExtraValue(v)
	}
	return out
}

// bearerToken returns the token of an "Authorization: Bearer <token>" header.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

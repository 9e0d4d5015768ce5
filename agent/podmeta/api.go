package podmeta

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// apiSource keeps this node's pods from one informer (pods with spec.nodeName=<node>) and judges
// whether that view is current.
//
// Health has two inputs, because either alone misses cases: the informer's own list/watch calls
// (a dropped watch that cannot be re-established is seen at once), and a periodic probe (a
// black-holed connection never errors, and after an outage the reflector may sleep up to a
// minute in its backoff; when the probe has succeeded for RestartAfter but the informer still has
// not, the informer is replaced by a fresh one, which lists at once).
type apiSource struct {
	client   Client
	cfg      Config
	log      *zap.Logger
	selector string

	// running counts the goroutines start made (informers, their sync
	// waiters, watch relays, the probe loop); stop cancels them and waits.
	running sync.WaitGroup
	cancel  context.CancelFunc

	mu        sync.RWMutex
	byUID     map[string]Pod
	nodeInfo  Node
	gen       uint64             // informer generation whose events are applied
	genStart  time.Time          // when generation gen started
	stopGen   context.CancelFunc // stops generation gen
	synced    bool               // generation gen has listed once
	lwOK      time.Time          // last list or watch event of generation gen
	lwErr     time.Time          // last failed list or watch of generation gen
	lwLastErr error
	watches   int       // open watch streams of generation gen
	watchEnd  time.Time // when the last one ended
	probeErr  error     // last probe's error; nil when it succeeded
	probed    bool      // a probe has run
	probeOKAt time.Time // start of the current run of successful probes
	wasUp     bool      // health at the last transition log
	nodeErr   string    // last node/version error logged, to log each distinct one once
}

func newAPISource(cfg Config, client Client) *apiSource {
	return &apiSource{
		client:   client,
		cfg:      cfg,
		log:      cfg.Logger.With(zap.String("component", "podmeta"), zap.String("node", cfg.NodeName)),
		selector: fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String(),
		byUID:    make(map[string]Pod),
	}
}

func (a *apiSource) start(ctx context.Context) {
	ctx, a.cancel = context.WithCancel(ctx)
	a.startInformer(ctx)
	a.goRun(func() { a.probeLoop(ctx) })
}

// stop ends every goroutine of the source and returns when they have.
func (a *apiSource) stop() {
	a.cancel()
	a.running.Wait()
}

// goRun runs f on a goroutine stop waits for.
func (a *apiSource) goRun(f func()) {
	a.running.Add(1)
	go func() {
		defer a.running.Done()
		f()
	}()
}

// healthy is true when the last probe succeeded, the informer has synced, it has a watch stream
// open (or had one less than watchGap ago), and its last contact with the API server (a list, an
// accepted watch, an event) is newer than its last list/watch error.
func (a *apiSource) healthy() bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.healthyLocked()
}

func (a *apiSource) healthyLocked() bool {
	return a.probed && a.probeErr == nil && a.informerOKLocked()
}

// watchGap is how long the informer may be between watch streams and still count as connected:
// the reflector re-watches at once when a stream times out normally (every 5-10 minutes).
const watchGap = time.Second

func (a *apiSource) informerOKLocked() bool {
	streaming := a.watches > 0 || time.Since(a.watchEnd) < watchGap
	return a.synced && !a.lwErr.After(a.lwOK) && streaming
}

func (a *apiSource) pod(uid string) (Pod, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	p, ok := a.byUID[uid]
	return p, ok
}

func (a *apiSource) pods() []Pod {
	a.mu.RLock()
	out := make([]Pod, 0, len(a.byUID))
	for _, p := range a.byUID {
		out = append(out, p)
	}
	a.mu.RUnlock()
	slices.SortFunc(out, func(x, y Pod) int {
		return cmp.Or(cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name), cmp.Compare(x.UID, y.UID))
	})
	return out
}

func (a *apiSource) node() Node {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.nodeInfo
}

// startInformer replaces the running informer (if any) with a new generation.
func (a *apiSource) startInformer(ctx context.Context) {
	a.mu.Lock()
	if a.stopGen != nil {
		a.stopGen()
	}
	a.gen++
	gen := a.gen
	genCtx, stop := context.WithCancel(ctx)
	a.stopGen, a.genStart = stop, time.Now()
	a.synced, a.lwOK, a.lwErr, a.watches, a.watchEnd = false, time.Time{}, time.Time{}, 0, time.Time{}
	a.mu.Unlock()

	inf := cache.NewSharedIndexInformerWithOptions(a.listWatch(gen), &v1.Pod{},
		cache.SharedIndexInformerOptions{ResyncPeriod: a.cfg.Resync, ObjectDescription: "node pods"})
	_ = inf.SetTransform(dropManagedFields) // only fails once the informer runs
	_ = inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) { a.noteListWatch(gen, err) })
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.upsert(gen, obj) },
		UpdateFunc: func(_, obj any) { a.upsert(gen, obj) },
		DeleteFunc: func(obj any) { a.remove(gen, obj) },
	})
	a.goRun(func() { inf.RunWithContext(genCtx) })
	a.goRun(func() {
		if cache.WaitForCacheSync(genCtx.Done(), inf.HasSynced) {
			a.markSynced(gen, inf.GetStore())
		}
	})
}

// listWatch lists and watches this node's pods and records what proves contact with the API
// server: a successful list, a watch stream the server accepted, events on it; and what breaks
// it: failed calls (the reflector retries refused watches without calling the watch error
// handler), error events, and the end of a stream (the reflector may then sleep in its backoff
// for up to a minute without making a call that could fail).
func (a *apiSource) listWatch(gen uint64) cache.ListerWatcher {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = a.selector
			obj, err := a.client.ListPods(ctx, opts)
			a.noteListWatch(gen, err)
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = a.selector
			w, err := a.client.WatchPods(ctx, opts)
			if err != nil {
				a.noteListWatch(gen, err)
				return nil, err
			}
			// client-go answers EOF and timeouts with an already-closed watch and no error.
			first, closed := peek(w)
			if closed {
				a.noteListWatch(gen, errWatchClosed)
				return w, nil
			}
			return a.observe(gen, w, first), nil
		},
	}
}

// observedWatch passes a watch's events through and tells the apiSource when it opens, delivers
// and ends. client-go hands out an already-closed watch, and no error, for EOF and timeouts;
// that is seen here as a stream that ends at once.
type observedWatch struct {
	inner watch.Interface
	out   chan watch.Event
	done  chan struct{}
	once  sync.Once
}

// errWatchClosed marks a watch that client-go returned already closed.
var errWatchClosed = errors.New("watch closed as soon as it was opened (EOF or timeout)")

// peek takes an event the watch already holds, and tells whether its channel is already closed.
func peek(w watch.Interface) (first *watch.Event, closed bool) {
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			return nil, true
		}
		return &ev, false
	default:
		return nil, false
	}
}

func (a *apiSource) observe(gen uint64, w watch.Interface, first *watch.Event) watch.Interface {
	ow := &observedWatch{inner: w, out: make(chan watch.Event), done: make(chan struct{})}
	a.noteWatch(gen, +1)
	a.goRun(func() {
		defer close(ow.out)
		defer a.noteWatch(gen, -1)
		if first != nil && !ow.pass(a, gen, *first) {
			return
		}
		for ev := range w.ResultChan() {
			if !ow.pass(a, gen, ev) {
				return
			}
		}
	})
	return ow
}

// pass records an event and hands it on; false once the watch was stopped.
func (o *observedWatch) pass(a *apiSource, gen uint64, ev watch.Event) bool {
	if ev.Type == watch.Error {
		a.noteListWatch(gen, fmt.Errorf("watch error event: %w", apierrors.FromObject(ev.Object)))
	} else {
		a.noteListWatch(gen, nil)
	}
	select {
	case o.out <- ev:
		return true
	case <-o.done:
		return false
	}
}

func (o *observedWatch) ResultChan() <-chan watch.Event { return o.out }

func (o *observedWatch) Stop() {
	o.once.Do(func() { close(o.done) })
	o.inner.Stop()
}

func (a *apiSource) noteWatch(gen uint64, delta int) {
	a.mu.Lock()
	if gen == a.gen {
		a.watches += delta
		if delta > 0 {
			a.lwOK = time.Now()
		} else {
			a.watchEnd = time.Now()
		}
	}
	a.mu.Unlock()
	a.logTransition()
}

func (a *apiSource) noteListWatch(gen uint64, err error) {
	a.mu.Lock()
	if gen == a.gen {
		if err == nil {
			a.lwOK = time.Now()
		} else {
			a.lwErr, a.lwLastErr = time.Now(), err
		}
	}
	a.mu.Unlock()
	a.logTransition()
}

// dropManagedFields keeps the informer's cache small; shmwatch never reads managedFields.
func dropManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

func (a *apiSource) upsert(gen uint64, obj any) {
	p, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	rec := fromAPI(p)
	killed := false
	a.mu.Lock()
	if gen == a.gen {
		prev := a.byUID[rec.UID]
		killed = newKill(prev.OOMKilled, rec.OOMKilled)
		rec.OOMKilled = mergeOOMKilled(prev.OOMKilled, rec.OOMKilled)
		a.byUID[rec.UID] = rec
	}
	a.mu.Unlock()
	if killed && a.cfg.OnOOMKilled != nil {
		a.cfg.OnOOMKilled(rec.UID)
	}
}

func (a *apiSource) remove(gen uint64, obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	p, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	a.mu.Lock()
	if gen == a.gen {
		delete(a.byUID, string(p.UID))
	}
	a.mu.Unlock()
}

// markSynced drops the pods a new generation's first list no longer has: they went away while
// the previous informer was cut off.
func (a *apiSource) markSynced(gen uint64, store cache.Store) {
	present := make(map[string]bool)
	for _, obj := range store.List() {
		if p, ok := obj.(*v1.Pod); ok {
			present[string(p.UID)] = true
		}
	}
	a.mu.Lock()
	if gen == a.gen {
		for uid := range a.byUID {
			if !present[uid] {
				delete(a.byUID, uid)
			}
		}
		a.synced = true
	}
	a.mu.Unlock()
	a.logTransition()
}

func (a *apiSource) probeLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.ProbeInterval)
	defer t.Stop()
	var last time.Time
	for {
		// While healthy the informer's own stream shows trouble; the probe then only refreshes
		// node facts and guards against a silent stream, so it runs rarely (per-node agents
		// multiply every request by the cluster's size).
		if !a.healthy() || time.Since(last) >= a.cfg.HealthyProbeInterval {
			last = time.Now()
			a.probe(ctx)
			a.restartIfStuck(ctx)
		}
		a.logTransition() // a stream gap outlasting watchGap has no event of its own
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probe asks for this node's pods (the same permission and path the informer needs; served from
// the API server's watch cache with resourceVersion=0), then refreshes the node object and the
// server version, whose failures do not make the pod view unhealthy.
func (a *apiSource) probe(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ProbeTimeout)
	defer cancel()
	start := time.Now()
	_, err := a.client.ListPods(ctx, metav1.ListOptions{FieldSelector: a.selector, Limit: 1, ResourceVersion: "0"})
	if ctx.Err() != nil && err == nil {
		err = ctx.Err()
	}
	a.mu.Lock()
	if err != nil && a.lwOK.After(start) && a.informerOKLocked() {
		// client-go retried this request inside the outage (1 s per EOF) and failed after the
		// informer had already reached the server again: the failure is old news.
		err = nil
	}
	if err == nil && (a.probeErr != nil || !a.probed) {
		a.probeOKAt = time.Now()
	}
	a.probed, a.probeErr = true, err
	a.mu.Unlock()
	a.logTransition()
	if err != nil {
		return
	}
	a.refreshNode(ctx)
}

func (a *apiSource) refreshNode(ctx context.Context) {
	n := a.node()
	var errs []error
	node, err := a.client.GetNode(ctx, a.cfg.NodeName, metav1.GetOptions{ResourceVersion: "0"})
	if err != nil {
		errs = append(errs, fmt.Errorf("get node %s: %w", a.cfg.NodeName, err))
	} else {
		n.AllocatableMemory = quantityBytes(node.Status.Allocatable, v1.ResourceMemory)
		n.CapacityMemory = quantityBytes(node.Status.Capacity, v1.ResourceMemory)
	}
	if v, err := a.client.ServerVersion(ctx); err != nil {
		errs = append(errs, err)
	} else {
		n.ServerVersion = v
	}
	a.mu.Lock()
	a.nodeInfo = n
	msg := fmt.Sprint(errs)
	logIt := msg != a.nodeErr
	a.nodeErr = msg
	a.mu.Unlock()
	if logIt && len(errs) > 0 {
		a.log.Warn("node facts from the API server incomplete", zap.Errors("errors", errs))
	}
}

func quantityBytes(list v1.ResourceList, name v1.ResourceName) *uint64 {
	q, ok := list[name]
	if !ok || q.Sign() < 0 {
		return nil
	}
	v := uint64(q.Value())
	return &v
}

// restartIfStuck replaces the informer when the API server has answered probes for RestartAfter
// but the informer still has not listed or re-established its watch.
func (a *apiSource) restartIfStuck(ctx context.Context) {
	a.mu.RLock()
	now := time.Now()
	stuck := a.probed && a.probeErr == nil && !a.informerOKLocked() &&
		now.Sub(a.probeOKAt) >= a.cfg.RestartAfter && now.Sub(a.genStart) >= a.cfg.RestartAfter
	gen := a.gen
	a.mu.RUnlock()
	if !stuck || ctx.Err() != nil {
		return
	}
	a.log.Info("API server answers but the pod informer has not recovered; restarting it",
		zap.Uint64("generation", gen))
	a.startInformer(ctx)
}

// logTransition logs each change between healthy and degraded once.
func (a *apiSource) logTransition() {
	a.mu.Lock()
	up := a.healthyLocked()
	changed := up != a.wasUp
	a.wasUp = up
	probeErr, lwErr, synced := a.probeErr, a.lwLastErr, a.synced
	a.mu.Unlock()
	switch {
	case !changed:
	case up:
		a.log.Info("pod metadata from the API server")
	default:
		a.log.Warn("pod metadata degraded: API server not usable; using kubelet log directories",
			zap.NamedError("probe_error", probeErr), zap.NamedError("list_watch_error", lwErr),
			zap.Bool("informer_synced", synced))
	}
}

// state describes the health inputs, for logs and test failures.
func (a *apiSource) state() string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	now := time.Now()
	return fmt.Sprintf("gen=%d synced=%v probed=%v probeErr=%v lwOK=-%v lwErr=-%v (%v) watches=%d watchEnd=-%v",
		a.gen, a.synced, a.probed, a.probeErr, now.Sub(a.lwOK), now.Sub(a.lwErr), a.lwLastErr, a.watches, now.Sub(a.watchEnd))
}

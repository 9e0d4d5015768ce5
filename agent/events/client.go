package events

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// Poster creates one event in the API.
type Poster interface {
	Post(ctx context.Context, ev *eventsv1.Event) error
}

// restPoster posts events.k8s.io/v1 Events through one REST client whose
// scheme holds events/v1 alone, as podmeta does for core/v1: client-go's
// typed clients and tools/events import k8s.io/client-go/kubernetes/scheme,
// which registers every API group (binary size and RSS in
// docs/performance.md).
type restPoster struct {
	rest    *rest.RESTClient
	timeout time.Duration
}

// NewPoster returns a Poster over the API server of cfg.
func NewPoster(cfg *rest.Config) (Poster, error) {
	scheme := runtime.NewScheme()
	if err := eventsv1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("events/v1 scheme: %w", err)
	}
	c := rest.CopyConfig(cfg)
	c.APIPath = "/apis"
	c.GroupVersion = &eventsv1.SchemeGroupVersion
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("events/v1 client: %w", err)
	}
	return &restPoster{rest: rc, timeout: 10 * time.Second}, nil
}

func (p *restPoster) Post(ctx context.Context, ev *eventsv1.Event) error {
	err := p.rest.Post().Namespace(ev.Namespace).Resource("events").
		Timeout(p.timeout).Body(ev).Do(ctx).Error()
	if err != nil {
		return fmt.Errorf("create event %s/%s: %w", ev.Namespace, ev.Name, err)
	}
	return nil
}

// Reporting controller and action of every event.
const (
	Controller = "shmwatch"
	action     = "Measured"
)

// newEvent is the Event for n, reported by node at now. The name follows
// client-go's recorder: the object's name and the time in hex.
func newEvent(n Notice, node string, now time.Time) *eventsv1.Event {
	return &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%x", n.Pod.Name, now.UnixNano()),
			Namespace: n.Pod.Namespace,
		},
		EventTime:           metav1.NewMicroTime(now),
		ReportingController: Controller,
		ReportingInstance:   Controller + "-" + node,
		Action:              action,
		Reason:              string(n.Reason),
		Regarding: corev1.ObjectReference{
			Kind: "Pod", APIVersion: "v1", Namespace: n.Pod.Namespace, Name: n.Pod.Name, UID: types.UID(n.Pod.UID),
		},
		Note: truncate(n.Note, noteMax),
		Type: corev1.EventTypeWarning,
	}
}

// noteMax is the API's limit on an event's note.
const noteMax = 1024

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

package events

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts what became of the notices. A nil *Metrics counts nothing.
type Metrics struct {
	sentVec, droppedVec, failedVec *prometheus.CounterVec
}

// NewMetrics registers the event counters on reg, every reason (and drop
// cause) at 0 so the series exist before the first event.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sentVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shmwatch_events_sent_total",
			Help: "Kubernetes Events posted on pods, by reason.",
		}, []string{"reason"}),
		droppedVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shmwatch_events_dropped_total",
			Help: "Events not posted, by reason and cause: window (the pod had this reason within --events.window), node_cap (--events.node-cap spent), queue (the API server is slow), api (no API server).",
		}, []string{"reason", "cause"}),
		failedVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shmwatch_events_failed_total",
			Help: "Events the API server did not take (unreachable, forbidden, rejected), by reason; not retried.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.sentVec, m.droppedVec, m.failedVec)
	for _, r := range Reasons {
		m.sentVec.WithLabelValues(string(r))
		m.failedVec.WithLabelValues(string(r))
		for _, c := range []string{causeWindow, causeNodeCap, causeQueue, causeDisabled} {
			m.droppedVec.WithLabelValues(string(r), c)
		}
	}
	return m
}

func (m *Metrics) sent(r Reason) {
	if m != nil {
		m.sentVec.WithLabelValues(string(r)).Inc()
	}
}

func (m *Metrics) dropped(r Reason, cause string) {
	if m != nil {
		m.droppedVec.WithLabelValues(string(r), cause).Inc()
	}
}

func (m *Metrics) failed(r Reason) {
	if m != nil {
		m.failedVec.WithLabelValues(string(r)).Inc()
	}
}

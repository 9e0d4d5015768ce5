package main

import (
	"context"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/shmwatch/shmwatch/agent"
	"github.com/shmwatch/shmwatch/agent/events"
	"github.com/shmwatch/shmwatch/agent/podmeta"
)

// eventFlags switch and tune the Kubernetes Events on pods.
type eventFlags struct {
	enabled     bool
	window      time.Duration
	interval    time.Duration
	rediscover  time.Duration
	trendSpan   time.Duration
	nodeCap     int
	nearlyFull  float64
	oomShmShare float64
}

func (e *eventFlags) register(cmd *kingpin.CmdClause) {
	cmd.Flag("events", "Post Kubernetes Events on pods whose shared memory is full, nearly full, or will OOM-kill them first (--no-events: off).").Default("true").BoolVar(&e.enabled)
	cmd.Flag("events.window", "Least time between two events of one reason on one pod.").Default("10m").DurationVar(&e.window)
	cmd.Flag("events.interval", "How often the pods' tmpfs mounts are statfs'd between scrapes.").Default("10s").DurationVar(&e.interval)
	cmd.Flag("events.rediscover", "Oldest snapshot the checker uses once the host's mount table changed (a pod came or went); without scrapes it then collects to see new pods, and with no change after 10 times this.").Default("1m").DurationVar(&e.rediscover)
	cmd.Flag("events.trend-span", "How far back the growth rate (time-to-full) is fitted, by least squares.").Default("5m").DurationVar(&e.trendSpan)
	cmd.Flag("events.node-cap", "Most events the node posts a minute.").Default("60").IntVar(&e.nodeCap)
	cmd.Flag("events.nearly-full", "Used fraction of a tmpfs (and of the memory limit) from which it is nearly full.").Default("0.9").Float64Var(&e.nearlyFull)
	cmd.Flag("events.oom-shm-share", "Share of the memory cgroup shm must have held at an OOM kill to be named in an event.").Default("0.25").Float64Var(&e.oomShmShare)
}

// sender starts the event sender until ctx ends; nil when events are off.
// Without an API server it counts every event dropped.
func (e *eventFlags) sender(ctx context.Context, f *nodeFlags, reg prometheus.Registerer, log *zap.Logger) *events.Sender {
	if !e.enabled {
		return nil
	}
	var post events.Poster
	if f.apiConfigured() {
		cfg, err := podmeta.RESTConfig(f.kubeconfig)
		if err == nil {
			cfg.UserAgent = "shmwatch"
			post, err = events.NewPoster(cfg)
		}
		if err != nil {
			log.Warn("events: no API client; events are dropped", zap.Error(err))
		}
	}
	sender := events.NewSender(events.Config{Node: f.nodeName, Window: e.window, NodeCap: e.nodeCap, Thresholds: e.thresholds()},
		post, events.NewMetrics(reg), log.Named("events"))
	go sender.Run(ctx)
	return sender
}

// onOOMKill is the collector's OOM kill hook that posts OOMKilledWithShm;
// nil when events are off.
func onOOMKill(sender *events.Sender) func(agent.OOMKill) {
	if sender == nil {
		return nil
	}
	return func(k agent.OOMKill) { sender.OOMKilled(events.KillOf(k)) }
}

// startChecker runs the between-scrape checker until ctx ends; nothing when
// events are off.
func (e *eventFlags) startChecker(ctx context.Context, col *agent.Collector, sender *events.Sender) {
	if sender == nil {
		return
	}
	checker := events.NewChecker(events.CheckerConfig{
		Interval: e.interval, Rediscover: e.rediscover, TrendSpan: e.trendSpan, Thresholds: e.thresholds(),
	}, col, sender.Notify)
	go checker.Run(ctx)
}

func (e *eventFlags) thresholds() events.Thresholds {
	return events.Thresholds{NearlyFull: e.nearlyFull, OOMShmShare: e.oomShmShare}
}

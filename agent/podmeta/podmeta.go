// Package podmeta knows which pods run on this node: names, containers, memory limits and memory
// volumes, from the API server, or from the kubelet's log directories when the API is out of reach.
package podmeta

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Pod is what the agent needs to know about one pod on this node.
type Pod struct {
	UID, Namespace, Name string
	// QOS is status.qosClass lowercased ("guaranteed", "burstable", "besteffort"); "" when unknown.
	QOS string
	// Containers maps container id (runtime prefix such as "containerd://" stripped) to container
	// name, from status.containerStatuses, initContainerStatuses and ephemeralContainerStatuses.
	// From the kubelet's logs it holds what /var/log/containers links say.
	Containers map[string]string
	// MemoryLimit is the limit the kubelet writes on the pod cgroup (kubelet's ResourceConfigForPod
	// rule: set only when every container declares limits.memory, sidecar/init max rule, plus pod
	// overhead; or the pod-level limit). Nil when the pod cgroup has no limit or it is unknown.
	MemoryLimit *uint64
	// MemoryVolumes are the pod's emptyDir volumes with medium: Memory.
	MemoryVolumes []Volume
	HostIPC       bool
	Phase         string
	// OOMKilled lists the containers whose last termination the kubelet
	// reports as OOMKilled (API only).
	OOMKilled []OOMKilled
	// Source says where this record came from. A record with Source "api" may be stale while the
	// provider is degraded (see Provider.Source); it is kept because a pod's spec does not change.
	Source Source
}

// Volume is an emptyDir volume with medium: Memory (a tmpfs the kubelet mounts for the pod).
type Volume struct {
	Name string
	// SizeLimit is emptyDir.sizeLimit in bytes; nil when unset.
	SizeLimit *uint64
	// AtDevShm lists the containers that mount this volume at /dev/shm.
	AtDevShm []string
}

// Node is what the agent needs to know about this node from the API server.
type Node struct {
	// AllocatableMemory is status.allocatable.memory; nil when unknown.
	AllocatableMemory *uint64
	// CapacityMemory is status.capacity.memory; nil when unknown.
	CapacityMemory *uint64
	// ServerVersion is the API server's gitVersion from discovery (e.g. "v1.33.13"); "" when unknown.
	ServerVersion string
}

// Source names where pod metadata comes from right now.
type Source string

// Sources of pod metadata, also the values of the shmwatch_metadata_source state set.
const (
	SourceAPI         Source = "api"
	SourceKubeletLogs Source = "kubelet_logs"
	SourceNone        Source = "none"
)

// Sources lists every Source, in the order metrics should show them.
var Sources = []Source{SourceAPI, SourceKubeletLogs, SourceNone}

// Provider answers questions about the pods on this node. All methods are safe for concurrent use
// and never wait for the API server.
type Provider interface {
	// Pod returns what is known about the pod with this uid.
	Pod(uid string) (Pod, bool)
	// Pods returns all pods known on this node.
	Pods() []Pod
	// Node returns this node's facts from the API server (last known values while degraded).
	Node() Node
	// Source says what answers right now.
	Source() Source
	// Known is true when a uid missing from Pods is authoritatively not on this node: the API
	// informer is synced and its list/watch is healthy.
	Known() bool
	// Stop ends the provider's goroutines and returns once they have ended.
	Stop()
}

// Defaults for the zero values of Config's timing fields.
const (
	DefaultProbeInterval        = 5 * time.Second
	DefaultHealthyProbeInterval = time.Minute
	DefaultProbeTimeout         = 5 * time.Second
	DefaultRestartAfter         = 10 * time.Second
	DefaultLogsCacheTTL         = 5 * time.Second
)

// Config configures Start.
type Config struct {
	// Kubeconfig is a kubeconfig path; "" means in-cluster config, and no API when that fails.
	Kubeconfig string
	// NodeName is this node's name (spec.nodeName of its pods).
	NodeName string
	// LogRoot is the kubelet's pod log directory (/var/log/pods, or /host/var/log/pods); "" for none.
	LogRoot string
	Logger  *zap.Logger
	// Resync is the informer's resync period; 0 means none.
	Resync time.Duration
	// ProbeInterval is how often the API server (pods list for this node from its watch cache,
	// node object, version) is probed while metadata is degraded; it bounds how fast the source
	// flips back after an outage ends.
	ProbeInterval time.Duration
	// HealthyProbeInterval is how often it is probed while healthy, to refresh the node's facts
	// and to notice a stream that went silent without an error.
	HealthyProbeInterval time.Duration
	// ProbeTimeout bounds one probe request.
	ProbeTimeout time.Duration
	// RestartAfter is how long the probe may succeed while the informer's list/watch still fails
	// before the informer is restarted (client-go's reflector backs off up to 30 s, jittered x2).
	RestartAfter time.Duration
	// LogsCacheTTL is how long a read of LogRoot is reused.
	LogsCacheTTL time.Duration
	// OnOOMKilled, when set, is called with a pod's uid as soon as the
	// informer sees a status with an OOMKilled termination the pod's record
	// did not have. It runs on the informer's goroutine: it must not block.
	OnOOMKilled func(uid string)
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.HealthyProbeInterval <= 0 {
		c.HealthyProbeInterval = DefaultHealthyProbeInterval
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = DefaultProbeTimeout
	}
	if c.RestartAfter <= 0 {
		c.RestartAfter = DefaultRestartAfter
	}
	if c.LogsCacheTTL <= 0 {
		c.LogsCacheTTL = DefaultLogsCacheTTL
	}
}

// Start starts watching this node's pods and returns a Provider that is usable at once (degraded
// until the informer has synced). Everything stops with ctx. Start never waits for the API server.
// Without a kubeconfig and outside a cluster, or without a node name in a cluster, the provider
// answers from the kubelet's log directories only. An explicit kubeconfig that cannot be loaded is
// an error.
func Start(ctx context.Context, cfg Config) (Provider, error) {
	cfg.setDefaults()
	logs := newKubeletLogs(cfg.LogRoot, cfg.LogsCacheTTL)
	restCfg, err := restConfig(cfg.Kubeconfig)
	if err != nil {
		if cfg.Kubeconfig != "" {
			return nil, err
		}
		cfg.Logger.Info("no API server configuration; pod metadata from kubelet log directories only",
			zap.Error(err), zap.String("log_root", cfg.LogRoot))
		return &provider{logs: logs}, nil
	}
	if cfg.NodeName == "" {
		if cfg.Kubeconfig != "" {
			return nil, errors.New("podmeta: a node name is needed to watch this node's pods")
		}
		cfg.Logger.Warn("no node name; pod metadata from kubelet log directories only",
			zap.String("log_root", cfg.LogRoot))
		return &provider{logs: logs}, nil
	}
	restCfg.UserAgent = "shmwatch"
	client, err := newRESTClient(restCfg)
	if err != nil {
		return nil, fmt.Errorf("podmeta: build API client: %w", err)
	}
	return startWithClient(ctx, cfg, client, logs), nil
}

func startWithClient(ctx context.Context, cfg Config, client Client, logs *KubeletLogs) *provider {
	api := newAPISource(cfg, client)
	api.start(ctx)
	return &provider{api: api, logs: logs}
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config: %w", err)
		}
		return c, nil
	}
	c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("podmeta: load kubeconfig %s: %w", kubeconfig, err)
	}
	return c, nil
}

// provider answers from the API informer while it is healthy and from the kubelet's log
// directories otherwise.
type provider struct {
	api  *apiSource // nil without API
	logs *KubeletLogs
}

func (p *provider) Stop() {
	if p.api != nil {
		p.api.stop()
	}
}

func (p *provider) apiHealthy() bool { return p.api != nil && p.api.healthy() }

func (p *provider) Pod(uid string) (Pod, bool) {
	if p.api != nil {
		// While degraded, the last record from the API is still the best answer for a pod it
		// knew: names, limits and volumes do not change over a pod's life.
		if pod, ok := p.api.pod(uid); ok {
			return pod, true
		}
	}
	// A pod can have its log directory a moment before the watch event arrives.
	return p.logs.Pod(uid)
}

func (p *provider) Pods() []Pod {
	if p.apiHealthy() {
		return p.api.pods()
	}
	// Degraded: the kubelet's directories say which pods exist now; the API's last records
	// enrich them, and pods only the API knew are kept (they may have gone, Known() is false).
	seen := make(map[string]bool)
	var out []Pod
	if p.api != nil {
		for _, pod := range p.api.pods() {
			seen[pod.UID] = true
			out = append(out, pod)
		}
	}
	for _, pod := range p.logs.Pods() {
		if !seen[pod.UID] {
			out = append(out, pod)
		}
	}
	return out
}

func (p *provider) Node() Node {
	if p.api == nil {
		return Node{}
	}
	return p.api.node()
}

func (p *provider) Source() Source {
	if p.apiHealthy() {
		return SourceAPI
	}
	if p.logs.HasPods() {
		return SourceKubeletLogs
	}
	return SourceNone
}

func (p *provider) Known() bool { return p.apiHealthy() }

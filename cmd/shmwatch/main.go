// Command shmwatch reports how close every pod on a node is to its shared
// memory and memory limits, and whether the node leaks memory cgroups: as a
// Prometheus exporter (serve) or as one-shot reports (scan, audit).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"go.uber.org/zap"

	"github.com/shmwatch/shmwatch/agent"
	"github.com/shmwatch/shmwatch/agent/podmeta"
	"github.com/shmwatch/shmwatch/cgroupfs"
	"github.com/shmwatch/shmwatch/shmscan"
)

// nodeFlags are the flags every command shares: where the host's files are
// and which pods to look at.
type nodeFlags struct {
	hostRoot      string
	procfs        string
	logRoot       string
	cgroupRoot    string
	nodeName      string
	kubeconfig    string
	allCgroups    bool
	hostPID       int
	statfsTimeout time.Duration
	orphanGrace   time.Duration
	metadataWait  time.Duration
	logLevel      string
	logFormat     string
}

func (f *nodeFlags) register(app *kingpin.Application) {
	app.Flag("host-root", "Prefix of the host's /proc and /var/log/pods when running in a container (e.g. /host; the DaemonSet sets it through the environment, so kubectl exec'd scan and audit see the host as serve does). The cgroup hierarchy is found from the mount table; tmpfs mounts are classified by the shape of their host paths, so the kubelet's and the runtime's root dirs need no flag.").Envar("SHMWATCH_HOST_ROOT").Default("").StringVar(&f.hostRoot)
	app.Flag("procfs", "The host's procfs mount point (below --host-root).").Default("/proc").StringVar(&f.procfs)
	app.Flag("log-root", "The kubelet's pod log directory (below --host-root), for names when the API is out of reach.").Default("/var/log/pods").StringVar(&f.logRoot)
	app.Flag("cgroup-root", "The kubelet's --cgroup-root.").Default("/").StringVar(&f.cgroupRoot)
	app.Flag("node-name", "This node's name in the API (default: the lowercased hostname, as the kubelet's).").Envar("NODE_NAME").Default(defaultNodeName()).StringVar(&f.nodeName)
	app.Flag("kubeconfig", "kubeconfig file; empty: in-cluster config when in a pod, else no API.").Envar("KUBECONFIG").StringVar(&f.kubeconfig)
	app.Flag("all-cgroups", "No Kubernetes: report every runtime container cgroup (Docker, containerd, CRI-O) as a unit.").BoolVar(&f.allCgroups)
	app.Flag("host-pid", "A process in the host's mount namespace, whose mount table and root are the host's; 0: pid 1, or this process when pid 1's root is out of reach.").Default("0").IntVar(&f.hostPID)
	app.Flag("statfs-timeout", "How long a statfs may take before its mount is marked stuck and skipped.").Default("2s").DurationVar(&f.statfsTimeout)
	app.Flag("orphan-grace", "How old a pod cgroup with no pod must be to count as orphaned.").Default("60s").DurationVar(&f.orphanGrace)
	app.Flag("metadata-wait", "scan and audit: how long to wait for the API's pod list.").Default("3s").DurationVar(&f.metadataWait)
	app.Flag("log.level", "Log level: debug, info, warn, error (default: info for serve, warn for scan and audit).").StringVar(&f.logLevel)
	app.Flag("log.format", "Log format: json or console.").Default("console").EnumVar(&f.logFormat, "json", "console")
}

func (f *nodeFlags) path(p string) string { return filepath.Join("/", f.hostRoot, p) }

// openNode builds the readers and the collector. The caller stops the
// metadata informer by cancelling ctx.
func (f *nodeFlags) openNode(ctx context.Context, log *zap.Logger, reads agent.Config) (*agent.Collector, podmeta.Provider, error) {
	if err := f.checkRoots(); err != nil {
		return nil, nil, err
	}
	procRoot := f.path(f.procfs)
	cg, err := cgroupfs.NewFS(procRoot)
	if err != nil {
		return nil, nil, fmt.Errorf("find the memory cgroup hierarchy: %w", err)
	}
	if err := f.checkCgroupRoot(cg.Hierarchy); err != nil {
		return nil, nil, err
	}
	scanner := shmscan.NewScanner(shmscan.Config{ProcRoot: procRoot, HostPID: f.resolveHostPID(procRoot, log), StatfsTimeout: f.statfsTimeout})
	var meta podmeta.Provider
	// The informer tells the collector of an OOMKilled status at once; the
	// collector is made after the informer starts.
	var col atomic.Pointer[agent.Collector]
	if !f.allCgroups {
		meta, err = podmeta.Start(ctx, podmeta.Config{
			Kubeconfig: f.kubeconfig, NodeName: f.nodeName, LogRoot: f.path(f.logRoot), Logger: log.Named("podmeta"),
			OnOOMKilled: func(uid string) {
				if c := col.Load(); c != nil {
					go c.KubeletOOMKilled(uid) // reads files: off the informer's goroutine
				}
			},
		})
		if err != nil {
			return nil, nil, fmt.Errorf("start pod metadata: %w", err)
		}
	}
	cfg := reads
	cfg.NodeName, cfg.CgroupRoot, cfg.AllCgroups, cfg.OrphanGrace = f.nodeName, f.cgroupRoot, f.allCgroups, f.orphanGrace
	col.Store(agent.NewCollector(cfg, cg, scanner, meta, log))
	return col.Load(), meta, nil
}

// resolveHostPID picks the process whose mount table and root are the
// host's. pid 1 is the host's init; where its root is out of reach (an init
// holding capabilities we lack, as in some VM sandboxes) kthreadd, pid 2,
// shares the kernel's initial mount namespace; this process stands in last,
// which is right only when shmwatch itself runs in the host mount namespace.
func (f *nodeFlags) resolveHostPID(procRoot string, log *zap.Logger) int {
	if f.hostPID > 0 {
		return f.hostPID
	}
	var firstErr error
	for _, pid := range []int{1, 2} {
		d, err := os.Open(filepath.Join(procRoot, strconv.Itoa(pid), "root"))
		if err == nil {
			_ = d.Close()
			if pid != 1 {
				log.Info("pid 1's root is out of reach; using pid 2's mount table as the host's", zap.Error(firstErr))
			}
			return pid
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	self := os.Getpid()
	log.Info("the roots of pid 1 and 2 are out of reach; using this process's mount table as the host's (set --host-pid to override)",
		zap.Int("pid", self), zap.Error(firstErr))
	return self
}

// apiConfigured says whether there is an API server to wait for.
func (f *nodeFlags) apiConfigured() bool {
	return !f.allCgroups && (f.kubeconfig != "" || os.Getenv("KUBERNETES_SERVICE_HOST") != "")
}

// waitForAPI gives the informer a moment to list pods and the node's facts
// (server version, allocatable) to arrive, so a one-shot report has names and
// can explain tmpfs sizes; it never fails, it only waits.
func (f *nodeFlags) waitForAPI(ctx context.Context, meta podmeta.Provider) {
	if meta == nil || !f.apiConfigured() {
		return
	}
	d := f.metadataWait
	deadline := time.Now().Add(d)
	for (meta.Source() != podmeta.SourceAPI || meta.Node().ServerVersion == "") && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func defaultNodeName() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return strings.ToLower(h)
}

func main() {
	app := kingpin.New("shmwatch", "Shared memory and memory cgroup limits of every pod on this node.")
	app.Version(agent.Version)
	app.HelpFlag.Short('h')
	var flags nodeFlags
	flags.register(app)
	serve := newServeCmd(app, &flags)
	scan := newScanCmd(app, &flags)
	audit := newAuditCmd(app, &flags)

	cmd := kingpin.MustParse(app.Parse(os.Args[1:]))
	if flags.logLevel == "" {
		flags.logLevel = "warn"
		if cmd == serve.cmd.FullCommand() {
			flags.logLevel = "info"
		}
	}
	log, err := newLogger(flags.logLevel, flags.logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shmwatch:", err)
		os.Exit(2)
	}
	defer func() { _ = log.Sync() }()
	routeKlog(log)

	var code int
	switch cmd {
	case serve.cmd.FullCommand():
		code = serve.run(log)
	case scan.cmd.FullCommand():
		code = scan.run(log)
	case audit.cmd.FullCommand():
		code = audit.run(log)
	}
	os.Exit(code)
}

//go:build tools

package tools

import (
	_ "github.com/alecthomas/kingpin/v2"
	_ "github.com/containerd/cgroups/v3"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/moby/sys/mountinfo"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/prometheus/client_golang/prometheus/testutil"
	_ "github.com/prometheus/common/expfmt"
	_ "github.com/prometheus/exporter-toolkit/web"
	_ "github.com/prometheus/procfs"
	_ "github.com/shirou/gopsutil/v4/host"
	_ "go.uber.org/zap"
	_ "golang.org/x/sync/singleflight"
	_ "golang.org/x/sys/unix"
	_ "k8s.io/client-go/informers"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/client-go/kubernetes/fake"
	_ "k8s.io/client-go/tools/clientcmd"
)

package main

import (
	"context"

	"go.uber.org/zap"

	"github.com/shmwatch/shmwatch/agent"
)

// startOOMWatch starts the kernel OOM watch as --oom-watch says: auto runs
// it on cgroup v2 only (v1 needs root and a writable cgroup mount).
func startOOMWatch(ctx context.Context, col *agent.Collector, mode string, log *zap.Logger) {
	if mode == "off" || mode == "auto" && !col.OOMWatchDefault() {
		return
	}
	if _, err := col.StartOOMWatch(ctx, agent.OOMConfig{}); err != nil {
		log.Warn("OOM watch not started: pod OOM kills are not counted", zap.String("oom-watch", mode), zap.Error(err))
	}
}

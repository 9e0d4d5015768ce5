package agent

// The OOM watch's families: the per-pod kill count that outlives container
// restarts, the last kill's shmem and usage (PromQL divides), and the
// watch's own size. Absent when no watch runs.
var (
	podOOMKillsTotal = counterFamily("pod_oom_kills_total", "OOM kills in the pod since the agent first saw it: with the OOM watch from the kernel as it signals them (v2: pod memory.events oom_group_kill, else oom_kill; v1: each container's memory.oom_control oom_kill), else containers the kubelet reports OOMKilled. See docs/oom.md.", podLabels...)
	podOOMShmem      = gaugeFamily("pod_oom_last_kill_shmem_bytes", "memory.stat shmem of the pod cgroup read right after its last OOM kill (v1: total_shmem).", podLabels...)
	podOOMUsage      = gaugeFamily("pod_oom_last_kill_usage_bytes", "Memory charged to the pod cgroup right after its last OOM kill (v1: memory.usage_in_bytes, v2: memory.current).", podLabels...)
	podOOMTime       = gaugeFamily("pod_oom_last_kill_timestamp_seconds", "When the agent recorded the pod's last OOM kill (Unix time).", podLabels...)
	oomWatches       = gaugeFamily("oom_watches", "Kernel OOM watches held: inotify (v2 memory.events) or eventfd (v1 cgroup.event_control).", "kind")
	oomWatchFDs      = gaugeFamily("oom_watch_fds", "File descriptors the OOM watch holds (v1: one eventfd per container cgroup).")
	oomWatchFailures = counterFamily("oom_watch_failures_total", "Cgroups the OOM watch could not watch (limit reached, no permission, gone).")
)

// lastOOM is a pod's latest recorded kill, or nil.
func lastOOM(p *Pod) *OOMKill {
	if p.OOM == nil || len(p.OOM.Last) == 0 {
		return nil
	}
	return &p.OOM.Last[len(p.OOM.Last)-1]
}

func writePodOOMKills(out sink, f *family, s *Snapshot, _ bool) {
	l := make([]string, 3)
	for i := range s.Pods {
		p := &s.Pods[i]
		if p.OOM != nil {
			l[0], l[1], l[2] = p.Namespace, p.Name, p.UID
			out.add(f, float64(p.OOM.Kills), l...)
		}
	}
}

// lastKillValue writes one value of every pod's last kill that has it.
func lastKillValue(value func(k *OOMKill) *uint64) writeFunc {
	return podValue(func(p *Pod) *uint64 {
		if k := lastOOM(p); k != nil {
			return value(k)
		}
		return nil
	})
}

func writePodOOMTime(out sink, f *family, s *Snapshot, _ bool) {
	l := make([]string, 3)
	for i := range s.Pods {
		p := &s.Pods[i]
		if k := lastOOM(p); k != nil {
			l[0], l[1], l[2] = p.Namespace, p.Name, p.UID
			out.add(f, float64(k.Time.UnixNano())/1e9, l...)
		}
	}
}

func writeOOMWatches(out sink, f *family, s *Snapshot, _ bool) {
	if w := s.Node.OOMWatch; w != nil {
		out.add(f, float64(w.Watches), w.Kind)
	}
}

func writeOOMWatchFDs(out sink, f *family, s *Snapshot, _ bool) {
	if w := s.Node.OOMWatch; w != nil {
		out.add(f, float64(w.FDs))
	}
}

func writeOOMWatchFailures(out sink, f *family, s *Snapshot, _ bool) {
	if w := s.Node.OOMWatch; w != nil {
		out.add(f, float64(w.WatchFailures))
	}
}

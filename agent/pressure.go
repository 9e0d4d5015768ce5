package agent

import "github.com/shmwatch/shmwatch/cgroupfs"

// Pressure is a memory pressure (PSI) file in seconds: how long some task
// waited on memory (reclaim, refaults, swap-in), and how long all non-idle
// tasks of the group did at once. Counters since the cgroup (or the boot)
// began; the averages are the kernel's percent of the last 10 seconds.
type Pressure struct {
	SomeSeconds float64  `json:"some_seconds"`
	FullSeconds *float64 `json:"full_seconds"`
	SomeAvg10   float64  `json:"some_avg10_percent"`
	FullAvg10   *float64 `json:"full_avg10_percent"`
}

// pressureOf converts a parsed pressure file; nil stays nil (v1, or a
// kernel without PSI).
func pressureOf(p *cgroupfs.PSI) *Pressure {
	if p == nil {
		return nil
	}
	out := &Pressure{SomeSeconds: microseconds(p.Some.TotalMicroseconds), SomeAvg10: p.Some.Avg10}
	if p.Full != nil {
		full, avg := microseconds(p.Full.TotalMicroseconds), p.Full.Avg10
		out.FullSeconds, out.FullAvg10 = &full, &avg
	}
	return out
}

func microseconds(us uint64) float64 { return float64(us) / 1e6 }

// The metric names and HELP follow cAdvisor's container_pressure_memory_*
// and node_exporter's node_pressure_memory_*: waiting is the "some" line,
// stalled the "full" line.
var (
	podPressureWaiting = counterFamily("pod_pressure_memory_waiting_seconds_total",
		"Total time some task of the pod waited on memory (v2 memory.pressure some total / 1e6); absent on v1 and without PSI.", podLabels...)
	podPressureStalled = counterFamily("pod_pressure_memory_stalled_seconds_total",
		"Total time no task of the pod could make progress for memory (v2 memory.pressure full total / 1e6); absent on v1 and without PSI.", podLabels...)
	nodePressureWaiting = counterFamily("node_pressure_memory_waiting_seconds_total",
		"Total time some task of the node waited on memory (/proc/pressure/memory some total / 1e6); absent without PSI.")
	nodePressureStalled = counterFamily("node_pressure_memory_stalled_seconds_total",
		"Total time no task of the node could make progress for memory (/proc/pressure/memory full total / 1e6); absent without PSI.")
)

func podPressureValue(value func(p *Pressure) *float64) writeFunc {
	return func(out sink, f *family, s *Snapshot, _ bool) {
		l := make([]string, 3)
		for i := range s.Pods {
			p := &s.Pods[i]
			if p.MemoryPressure == nil {
				continue
			}
			if v := value(p.MemoryPressure); v != nil {
				l[0], l[1], l[2] = p.Namespace, p.Name, p.UID
				out.add(f, *v, l...)
			}
		}
	}
}

func nodePressureValue(value func(p *Pressure) *float64) writeFunc {
	return func(out sink, f *family, s *Snapshot, _ bool) {
		if p := s.Node.MemoryPressure; p != nil {
			if v := value(p); v != nil {
				out.add(f, *v)
			}
		}
	}
}

func pressureWaiting(p *Pressure) *float64 { return &p.SomeSeconds }
func pressureStalled(p *Pressure) *float64 { return p.FullSeconds }

package events

import (
	"github.com/shmwatch/shmwatch/agent"
	"github.com/shmwatch/shmwatch/shmscan"
)

// KillOf is the event's view of a kill the agent recorded (agent.Config's
// OnOOMKill hook): the pod, the memcg at the kill, and the pod's tmpfs
// mounts whose use was read. A mount whose statfs failed is left out, so
// the message never counts bytes nobody measured.
func KillOf(k agent.OOMKill) OOMKill {
	out := OOMKill{
		Pod:       PodRef{UID: k.PodUID, Namespace: k.Namespace, Name: k.Pod},
		Container: k.Container,
		Time:      k.Time,
		Limit:     k.Memory.Limit,
		Usage:     k.Memory.Usage,
		Shmem:     k.Memory.Shmem,
	}
	for _, s := range k.Shm {
		if s.Used == nil {
			continue
		}
		m := ShmMount{Volume: s.Volume, Used: *s.Used}
		if s.Source != string(shmscan.SourceEmptyDir) {
			m.Volume = "" // the runtime's /dev/shm has no volume of the pod's
		}
		out.Shm = append(out.Shm, m)
	}
	return out
}

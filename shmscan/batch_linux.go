package shmscan

import (
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// StatHosts is StatHost for many mounts: the same checks, errors and
// timeout, but one worker goroutine measures them in order through one open
// host root, where StatHost hands each mount to a goroutine of its own and
// opens the root each time: 3.4 us a mount against 9.7-12.4 us
// (BenchmarkStatHosts, BenchmarkStatHost); at 1000 pods, 12 ms less CPU
// per scrape, most of it the scheduler's wakeups for each hand-off.
//
// A statfs that outlives the timeout marks its mount stuck, as in
// StatHost; the worker is left to it and a new one takes the mounts after
// it. The caller waits at most the timeout for each mount.
func (s *Scanner) StatHosts(ms []Mount) []HostStat {
	out := make([]HostStat, len(ms))
	todo := make([]hostJob, 0, len(ms))
	for i, m := range ms {
		job, err := s.hostJob(i, m)
		if err != nil {
			out[i].Err = err
			continue
		}
		todo = append(todo, job)
	}
	for len(todo) > 0 {
		todo = s.runHostJobs(todo, out)
	}
	return out
}

// hostJob is one mount of StatHosts to measure.
type hostJob struct {
	index int // in StatHosts' ms and out
	mount Mount
	key   string // see measure
	rel   string // the mount point relative to the host root
}

func (s *Scanner) hostJob(i int, m Mount) (hostJob, error) {
	rel, err := hostRel(m.HostPath)
	if err != nil {
		return hostJob{}, err
	}
	key := m.Device
	if key == "" {
		key = m.HostPath
	}
	return hostJob{index: i, mount: m, key: key, rel: rel}, nil
}

// hostBatch is what the caller of runHostJobs and its worker share. The
// worker writes a job's result, then counts it in finished; the caller
// reads only the results finished counts.
type hostBatch struct {
	jobs      []hostJob
	res       []HostStat // by position in jobs
	finished  atomic.Int64
	started   atomic.Int64 // UnixNano when the job at finished began
	abandoned atomic.Bool  // the caller gave up on this worker
	done      chan struct{}
}

// runHostJobs measures jobs with one worker and returns the jobs left
// when one of them got stuck (those after it), or nil.
func (s *Scanner) runHostJobs(jobs []hostJob, out []HostStat) []hostJob {
	b := &hostBatch{jobs: jobs, res: make([]HostStat, len(jobs)), done: make(chan struct{})}
	b.started.Store(time.Now().UnixNano())
	go s.hostWorker(b)
	timer := time.NewTimer(s.cfg.StatfsTimeout)
	defer timer.Stop()
	for {
		select {
		case <-b.done:
			for j, job := range jobs {
				out[job.index] = b.res[j]
			}
			return nil
		case <-timer.C:
		}
		j := int(b.finished.Load())
		if j == len(jobs) { // finished just now; done is about to close
			<-b.done
			continue
		}
		if wait := s.cfg.StatfsTimeout - time.Since(time.Unix(0, b.started.Load())); wait > 0 {
			timer.Reset(wait) // the job in progress began after the timer
			continue
		}
		b.abandoned.Store(true)
		for k := 0; k < j; k++ {
			out[jobs[k].index] = b.res[k]
		}
		out[jobs[j].index].Err = s.markStuck(jobs[j].key, jobs[j].mount.HostPath)
		return jobs[j+1:]
	}
}

// hostWorker measures the batch's jobs in order through one open host
// root. A job whose key is stuck or being measured elsewhere goes through
// measure, which answers at once for a stuck key and shares a flight.
func (s *Scanner) hostWorker(b *hostBatch) {
	defer close(b.done)
	root := s.procPath(s.cfg.HostPID, "root")
	rootFD, rootErr := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if rootErr == nil {
		defer unix.Close(rootFD)
	}
	for j, job := range b.jobs {
		var r fsResult
		switch f := s.claim(job.key); {
		case f == nil:
			r = s.measure(job.key, root, job.rel)
		case rootErr != nil:
			r = fsResult{err: fmt.Errorf("open %s: %w", root, rootErr)}
			s.land(job.key, f, r)
		default:
			r = measureIn(rootFD, root, job.rel)
			s.land(job.key, f, r)
		}
		if b.abandoned.Load() {
			return // the caller marked this job stuck and went on
		}
		b.res[j] = hostStat(job.mount, r)
		b.finished.Store(int64(j + 1))
		b.started.Store(time.Now().UnixNano())
	}
}

// claim registers a flight for key so that measure calls on it wait for
// this one, or returns nil when key is stuck or already in flight.
func (s *Scanner) claim(key string) *flight {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, stuck := s.stuck[key]; stuck {
		return nil
	}
	if s.inflight[key] != nil {
		return nil
	}
	f := &flight{done: make(chan struct{})}
	s.inflight[key] = f
	return f
}

// hostStat checks a measurement of m as StatHost does.
func hostStat(m Mount, r fsResult) HostStat {
	if r.err != nil {
		return HostStat{Err: r.err}
	}
	if m.Device != "" && r.device != m.Device {
		return HostStat{Err: fmt.Errorf("%s: device %s, expected %s: %w", m.HostPath, r.device, m.Device, ErrMountChanged)}
	}
	return HostStat{Usage: r.usage}
}

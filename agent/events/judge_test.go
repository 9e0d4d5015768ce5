package events

import (
	"strings"
	"testing"
	"time"
)

const mi = 1 << 20

func u64(v uint64) *uint64 { return &v }

func dur(d time.Duration) *time.Duration { return &d }

var pod = PodRef{UID: "u1", Namespace: "ml", Name: "trainer-0"}

func reasons(ns []Notice) []Reason {
	var rs []Reason
	for _, n := range ns {
		rs = append(rs, n.Reason)
	}
	return rs
}

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state ShmState
		want  []Reason
		notes []string // substrings of the notes, in order
	}{{
		name:  "runtime shm full",
		state: ShmState{Pod: pod, Size: 64 * mi, Used: 64 * mi, Available: 0},
		want:  []Reason{ShmFull},
		notes: []string{"/dev/shm is full (64Mi used of 64Mi): writers get ENOSPC", "emptyDir{medium: Memory}"},
	}, {
		name:  "nearly full with a rate",
		state: ShmState{Pod: pod, Size: 64 * mi, Used: 60 * mi, Available: 4 * mi, ShmFullIn: dur(170 * time.Second)},
		want:  []Reason{ShmNearlyFull},
		notes: []string{"/dev/shm is 94% full (60Mi used of 64Mi, 4Mi free); at the current rate /dev/shm is full in ~3m"},
	}, {
		name:  "below the threshold",
		state: ShmState{Pod: pod, Size: 64 * mi, Used: 57 * mi, Available: 7 * mi},
	}, {
		name: "memcg binds first",
		state: ShmState{Pod: pod, Volume: "dshm", MountPoint: "/dev/shm", Size: 512 * mi, Used: 100 * mi, Available: 412 * mi,
			MemcgLimit: u64(128 * mi), MemcgWorkingSet: u64(120 * mi)},
		want:  []Reason{ShmWillOOMBeforeFull},
		notes: []string{"8Mi more written to /dev/shm OOM-kills the pod while the tmpfs still has 412Mi free"},
	}, {
		name: "memcg binds first but far from its limit",
		state: ShmState{Pod: pod, Volume: "dshm", Size: 512 * mi, Used: 10 * mi, Available: 502 * mi,
			MemcgLimit: u64(128 * mi), MemcgWorkingSet: u64(60 * mi)},
	}, {
		name: "memcg near its limit but the tmpfs fills first",
		state: ShmState{Pod: pod, Size: 64 * mi, Used: 62 * mi, Available: 2 * mi,
			MemcgLimit: u64(1024 * mi), MemcgWorkingSet: u64(1000 * mi)},
		want: []Reason{ShmNearlyFull},
	}, {
		name: "memcg near its limit, shm empty: not shm's doing",
		state: ShmState{Pod: pod, Size: 64 * mi, Used: 0, Available: 64 * mi,
			MemcgLimit: u64(128 * mi), MemcgWorkingSet: u64(127 * mi)},
	}, {
		name:  "unknown size says nothing",
		state: ShmState{Pod: pod},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := Judge(tc.state, DefaultThresholds)
			if g := reasons(got); !equalReasons(g, tc.want) {
				t.Fatalf("reasons %v, want %v", g, tc.want)
			}
			for i, sub := range tc.notes {
				if !strings.Contains(got[min(i, len(got)-1)].Note, sub) {
					t.Errorf("note %q lacks %q", got[min(i, len(got)-1)].Note, sub)
				}
			}
			for _, n := range got {
				if n.Pod != tc.state.Pod || len(n.Note) > noteMax {
					t.Errorf("notice %+v: wrong pod or note too long", n)
				}
			}
		})
	}
}

func equalReasons(a, b []Reason) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestJudgeOOMKill(t *testing.T) {
	kill := OOMKill{Pod: pod, Container: "trainer", Time: time.Unix(1e9, 0),
		Limit: u64(128 * mi), Usage: u64(128 * mi), Shmem: u64(96 * mi),
		Shm: []ShmMount{{Volume: "dshm", MountPoint: "/dev/shm", Used: 96 * mi}}}
	n, ok := JudgeOOMKill(kill, DefaultThresholds)
	want := "container trainer OOM-killed at 128Mi: 96Mi of it was shared memory (/dev/shm (emptyDir dshm) 96Mi)"
	if !ok || n.Reason != OOMKilledWithShm || !strings.HasPrefix(n.Note, want) {
		t.Fatalf("got %v %+v, want a notice starting %q", ok, n, want)
	}

	small := kill
	small.Shmem, small.Shm = u64(31*mi), nil // 24 % of the usage
	if _, ok := JudgeOOMKill(small, DefaultThresholds); ok {
		t.Error("a kill with shm under the share was blamed on shm")
	}
	unknown := kill
	unknown.Shmem, unknown.Shm = nil, nil
	if _, ok := JudgeOOMKill(unknown, DefaultThresholds); ok {
		t.Error("a kill with no known shm was blamed on shm")
	}
	fromMounts := kill
	fromMounts.Shmem, fromMounts.Usage = nil, nil // shm from statfs, share of the limit
	if n, ok := JudgeOOMKill(fromMounts, DefaultThresholds); !ok || !strings.Contains(n.Note, "96Mi of it") {
		t.Errorf("kill judged from the mounts: %v %q", ok, n.Note)
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0B", 1023: "1023B", 1024: "1Ki", 1536: "1.5Ki", 64 * mi: "64Mi", 3 << 30: "3Gi"} {
		if got := bytes(n); got != want {
			t.Errorf("bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestApprox(t *testing.T) {
	for d, want := range map[time.Duration]string{42 * time.Second: "42s", 170 * time.Second: "3m", 5 * time.Hour: "5h"} {
		if got := approx(d); got != want {
			t.Errorf("approx(%v) = %q, want %q", d, got, want)
		}
	}
}

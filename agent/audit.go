package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
)

// Severity ranks an audit finding.
type Severity int

const (
	SeverityOK Severity = iota
	SeverityInfo
	SeverityWarning
	SeverityCritical
)

func (s Severity) String() string {
	return [...]string{"ok", "info", "warning", "critical"}[s]
}

// MarshalText makes severities read as words in JSON.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Finding is one line of the node audit.
type Finding struct {
	Severity Severity `json:"severity"`
	Check    string   `json:"check"`
	Message  string   `json:"message"`
	Action   string   `json:"action,omitempty"` // what to do, one line
}

// Audit is the node kmem-leak audit: findings from two snapshots taken an
// interval apart, so dying memcgs show their trend.
type Audit struct {
	Node     NodeReport `json:"node"`
	Findings []Finding  `json:"findings"`
	Worst    Severity   `json:"worst"`
}

// Thresholds of the audit, named so the docs and the code agree.
const (
	dyingWarning     = 1000
	dyingCritical    = 10000
	dyingGrowingWarn = 100 // growing between the samples and at least this many
	idHeadroomWarn   = 20000
	idHeadroomCrit   = 5000
	shmLargeFraction = 4 // shm above 1/4 of the pod limit counts as large
)

// NewAudit judges the node from a first and a second snapshot.
func NewAudit(first, second *Snapshot) Audit {
	a := Audit{Node: second.Node}
	a.add(kernelFinding(second))
	a.add(dyingFinding(first, second))
	a.add(idHeadroomFinding(second))
	a.add(kmemLimitFinding(second))
	a.add(orphanFindings(second)...)
	a.add(shmBindsAtMemcg(second)...)
	a.add(tmpfsSizeFindings(second)...)
	a.add(kmemLayerFinding(second))
	a.add(slabCachesFinding(second))
	a.add(metadataFinding(second))
	a.add(readErrorFinding(second))
	sort.SliceStable(a.Findings, func(i, j int) bool { return a.Findings[i].Severity > a.Findings[j].Severity })
	return a
}

func (a *Audit) add(fs ...Finding) {
	for _, f := range fs {
		if f.Check == "" {
			continue
		}
		a.Findings = append(a.Findings, f)
		if f.Severity > a.Worst {
			a.Worst = f.Severity
		}
	}
}

// ExitCode is 0 when all is well, 1 with warnings, 2 with critical findings.
func (a Audit) ExitCode() int {
	switch a.Worst {
	case SeverityCritical:
		return 2
	case SeverityWarning:
		return 1
	default:
		return 0
	}
}

func kernelFinding(s *Snapshot) Finding {
	n := s.Node
	f := Finding{Check: "kernel", Severity: SeverityOK,
		Message: fmt.Sprintf("kernel %s, cgroup %s, kmem accounting %s", n.Kernel, n.CgroupMode, n.KmemAccounting)}
	if oldKernel(n.Kernel, 4, 6) && n.KmemAccounting == "on" {
		f.Severity = SeverityCritical
		f.Action = "kernels before 4.6 with kmem accounting leak memory cgroups: upgrade the kernel, or boot with cgroup.memory=nokmem and use a runc/kubelet built with nokmem"
	}
	return f
}

func dyingFinding(first, second *Snapshot) Finding {
	d1, d2 := first.Node.Memcg.Dying, second.Node.Memcg.Dying
	if d2 == nil {
		return Finding{Check: "dying-memcgs", Severity: SeverityInfo, Message: "dying memory cgroups: the kernel does not say"}
	}
	trend := "steady"
	if d1 != nil && *d2 > *d1 {
		trend = fmt.Sprintf("growing (+%d in %s)", *d2-*d1, second.Time.Sub(first.Time).Round(1e6))
	} else if d1 != nil && *d2 < *d1 {
		trend = fmt.Sprintf("shrinking (-%d)", *d1-*d2)
	}
	f := Finding{Check: "dying-memcgs", Severity: SeverityOK, Message: fmt.Sprintf("%d dying memory cgroups, %s", *d2, trend)}
	growing := d1 != nil && *d2 > *d1
	switch {
	case *d2 >= dyingCritical:
		f.Severity = SeverityCritical
	case *d2 >= dyingWarning, growing && *d2 >= dyingGrowingWarn:
		f.Severity = SeverityWarning
	}
	if f.Severity > SeverityOK {
		f.Action = "dying memcgs are held by page cache and kmem charged to deleted cgroups: find what keeps them (tmpfs files, page cache), drop caches as a stopgap, upgrade the kernel or boot with cgroup.memory=nokmem"
	}
	return f
}

func idHeadroomFinding(s *Snapshot) Finding {
	h := s.Node.Memcg.IDHeadroom
	if h == nil {
		return Finding{}
	}
	f := Finding{Check: "memcg-ids", Severity: SeverityOK, Message: fmt.Sprintf("%d memory cgroup ids left of 65535", *h)}
	switch {
	case *h < idHeadroomCrit:
		f.Severity = SeverityCritical
	case *h < idHeadroomWarn:
		f.Severity = SeverityWarning
	}
	if f.Severity > SeverityOK {
		f.Action = "new pods will fail with 'no space left on device' when ids run out: drain and reboot the node, then upgrade the kernel (>= 4.7 recycles ids) or boot with cgroup.memory=nokmem"
	}
	return f
}

func kmemLimitFinding(s *Snapshot) Finding {
	n := s.Node
	if n.CgroupMode == "v2" {
		return Finding{}
	}
	if !kmemLimitsSettable(n.Kernel) {
		return Finding{Check: "kmem-limits", Severity: SeverityOK,
			Message: "kernel " + n.Kernel + " keeps no kmem limit: from 5.16 a write to memory.kmem.limit_in_bytes fails or does nothing"}
	}
	f := Finding{Check: "kmem-limits", Severity: SeverityOK, Message: fmt.Sprintf("%d pod or container cgroups have a kmem limit set", n.KmemLimitedCgroups)}
	if n.KmemLimitedCgroups > 0 {
		f.Severity = SeverityWarning
		if oldKernel(n.Kernel, 4, 6) {
			f.Severity = SeverityCritical
		}
		f.Action = "a runc or kubelet built without nokmem sets memory.kmem.limit_in_bytes: rebuild them with the nokmem tag, or boot with cgroup.memory=nokmem"
	}
	return f
}

func orphanFindings(s *Snapshot) []Finding {
	out := make([]Finding, 0, len(s.Orphans))
	for _, o := range s.Orphans {
		out = append(out, Finding{Check: "orphaned-pod-cgroup", Severity: SeverityWarning,
			Message: fmt.Sprintf("pod cgroup %s has no pod on this node, %s old", o.Cgroup, humanSeconds(o.Age)),
			Action:  "check the kubelet log for cgroup cleanup errors; processes left in it keep its memory charged"})
	}
	return out
}

// shmBindsAtMemcg finds pods whose large shm will hit the memcg (an OOM
// kill) before the tmpfs fills (a clean ENOSPC).
func shmBindsAtMemcg(s *Snapshot) []Finding {
	var out []Finding
	for i := range s.Pods {
		p := &s.Pods[i]
		for _, sh := range p.Shm {
			if sh.Binding != "memcg" || sh.Size == nil || p.Memory.Limit == nil {
				continue
			}
			if *sh.Size < *p.Memory.Limit/shmLargeFraction {
				continue
			}
			out = append(out, Finding{Check: "shm-binds-at-memcg", Severity: SeverityWarning,
				Message: fmt.Sprintf("pod %s: %s shm (%s) can grow %s more but the pod memcg only %s: a writer will be OOM-killed, not get ENOSPC",
					podName(p), sh.Source, humanBytes(*sh.Size), signedBytes(ptr(sh.Headroom["tmpfs"])), signedBytes(ptr(sh.Headroom["memcg"]))),
				Action: "set the emptyDir sizeLimit below the pod memory limit minus its other memory, or raise the pod memory limit"})
		}
	}
	return out
}

func metadataFinding(s *Snapshot) Finding {
	if s.Node.MetadataSource == "api" {
		return Finding{}
	}
	return Finding{Check: "metadata", Severity: SeverityInfo,
		Message: fmt.Sprintf("pod names from %s, not the API server", s.Node.MetadataSource),
		Action:  "pass --kubeconfig or run in-cluster with RBAC to get names, limits and sizeLimits"}
}

func readErrorFinding(s *Snapshot) Finding {
	total := 0
	for _, n := range s.ReadErrors {
		total += n
	}
	if total == 0 {
		return Finding{}
	}
	return Finding{Check: "read-errors", Severity: SeverityWarning,
		Message: fmt.Sprintf("%d fields could not be read (%v)", total, s.ReadErrors),
		Action:  "run as root with CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (see docs/security.md); details with -o json"}
}

func ptr(v int64) *int64 { return &v }

// WriteText writes the audit for a person.
func (a Audit) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "shmwatch audit of node %s: %s\n", dash(a.Node.Name), a.Worst)
	for _, f := range a.Findings {
		if _, err := fmt.Fprintf(w, "%-8s %-20s %s\n", f.Severity, f.Check, f.Message); err != nil {
			return fmt.Errorf("write audit: %w", err)
		}
		if f.Action != "" {
			fmt.Fprintf(w, "%-8s %-20s → %s\n", "", "", f.Action)
		}
	}
	return nil
}

// WriteJSON writes the audit as JSON.
func (a Audit) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(a); err != nil {
		return fmt.Errorf("encode audit json: %w", err)
	}
	return nil
}

package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes the snapshot as the stable scan JSON (docs/json.md).
func WriteJSON(w io.Writer, s *Snapshot) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return fmt.Errorf("encode scan json: %w", err)
	}
	return nil
}

// WriteTable writes the snapshot for a person in an incident: the node
// line, then one row per pod (and per container with containers), least
// headroom first.
func WriteTable(w io.Writer, s *Snapshot, containers bool) error {
	writeNodeLine(w, s)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	growth := s.GrowthWindow > 0
	header := "POD\tQOS\tSHM USED/SIZE\tSOURCE\tBINDS\tHEADROOM\tWORKING SET/LIMIT\tSHMEM\tKERNEL\tOOM KILLS"
	if growth {
		header += "\tFULL IN"
	}
	fmt.Fprintln(tw, header)
	for i := range s.Pods {
		p := &s.Pods[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s/%s\t%s\t%s\t%s",
			podName(p), dash(p.QOS), shmUsedSize(p), shmSources(p), dash(p.Binding), signedBytes(p.Headroom),
			bytesOrDash(p.Memory.WorkingSet), limitOrNone(p.Memory.Limit),
			bytesOrDash(p.Memory.Shmem), bytesOrDash(p.Memory.Kernel), podOOMKills(p))
		if growth {
			fmt.Fprintf(tw, "\t%s", fullIn(p))
		}
		fmt.Fprintln(tw)
		if containers {
			writeContainerRows(tw, p)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write scan table: %w", err)
	}
	if len(s.Pods) == 0 {
		fmt.Fprintln(w, "no pod cgroups found (check --cgroup-root; on a host without Kubernetes use --all-cgroups)")
	}
	for _, o := range s.Orphans {
		fmt.Fprintf(w, "orphaned pod cgroup %s (uid %s), %s old\n", o.Cgroup, o.UID, humanSeconds(o.Age))
	}
	for _, m := range s.StuckMounts {
		fmt.Fprintf(w, "stuck mount skipped: %s\n", m)
	}
	return nil
}

func writeNodeLine(w io.Writer, s *Snapshot) {
	n := &s.Node
	fmt.Fprintf(w, "node %s  kernel %s  cgroup %s  kmem %s  memcgs live %s dying %s  metadata %s  pods %d\n",
		dash(n.Name), dash(n.Kernel), dash(n.CgroupMode), dash(n.KmemAccounting),
		countOrDash(n.Memcg.Live), countOrDash(n.Memcg.Dying), dash(n.MetadataSource), len(s.Pods))
}

func writeContainerRows(tw io.Writer, p *Pod) {
	for _, ct := range p.Containers {
		name := "  └ " + ct.Name
		if ct.Sandbox {
			name += " (sandbox)"
		}
		fmt.Fprintf(tw, "%s\t\t\t\t\t\t%s/%s\t%s\t%s\t%s\n", name,
			bytesOrDash(ct.Memory.WorkingSet), limitOrNone(ct.Memory.Limit),
			bytesOrDash(ct.Memory.Shmem), bytesOrDash(ct.Memory.Kernel), countOrDash(ct.OOMKills))
	}
}

func podName(p *Pod) string {
	if p.Name == "" {
		return p.UID
	}
	if p.Namespace == "" {
		return p.Name
	}
	return p.Namespace + "/" + p.Name
}

func shmUsedSize(p *Pod) string {
	var parts []string
	for _, s := range p.Shm {
		if s.Size == nil {
			parts = append(parts, "error")
			continue
		}
		part := humanBytes(*s.Used) + "/" + humanBytes(*s.Size)
		if note := sizeNote(&s); note != "" {
			part += " (" + note + ")"
		}
		parts = append(parts, part)
	}
	return dash(strings.Join(parts, ","))
}

func shmSources(p *Pod) string {
	var parts []string
	for _, s := range p.Shm {
		if s.Volume != "" {
			parts = append(parts, s.Source+":"+s.Volume)
		} else {
			parts = append(parts, s.Source)
		}
	}
	return dash(strings.Join(parts, ","))
}

func podOOMKills(p *Pod) string {
	if p.OOM != nil {
		return oomMarker(p.OOM)
	}
	var total uint64
	known := false
	for _, ct := range p.Containers {
		if ct.OOMKills != nil {
			total += *ct.OOMKills
			known = true
		}
	}
	if !known {
		return "-"
	}
	return fmt.Sprint(total)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func bytesOrDash(v *uint64) string {
	if v == nil {
		return "-"
	}
	return humanBytes(*v)
}

func limitOrNone(v *uint64) string {
	if v == nil {
		return "none"
	}
	return humanBytes(*v)
}

func countOrDash(v *uint64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprint(*v)
}

func signedBytes(v *int64) string {
	switch {
	case v == nil:
		return "-"
	case *v < 0:
		return "-" + humanBytes(uint64(-*v))
	default:
		return humanBytes(uint64(*v))
	}
}

// humanBytes prints binary units, as kubectl and df -h do.
func humanBytes(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%dB", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit && exp < 4; n /= unit {
		div *= unit
		exp++
	}
	v := float64(b) / float64(div)
	suffix := []string{"Ki", "Mi", "Gi", "Ti", "Pi"}[exp]
	if v >= 100 || v == float64(uint64(v)) {
		return fmt.Sprintf("%.0f%s", v, suffix)
	}
	return fmt.Sprintf("%.1f%s", v, suffix)
}

// fullIn is the sooner of the pod's tmpfs and memcg times to full, with
// which one it is: "shm 3m", "memory 40s", or "-" when nothing grows.
func fullIn(p *Pod) string {
	what, soonest := "", 0.0
	for i := range p.Shm {
		if f := p.Shm[i].FullIn; f != nil && (what == "" || *f < soonest) {
			what, soonest = "shm", *f
		}
	}
	if f := p.MemoryFullIn; f != nil && (what == "" || *f < soonest) {
		what, soonest = "memory", *f
	}
	if what == "" {
		return "-"
	}
	return what + " " + humanSeconds(soonest)
}

func humanSeconds(s float64) string {
	switch {
	case s < 120:
		return fmt.Sprintf("%.0fs", s)
	case s < 7200:
		return fmt.Sprintf("%.0fm", s/60)
	case s < 172800:
		return fmt.Sprintf("%.0fh", s/3600)
	default:
		return fmt.Sprintf("%.0fd", s/86400)
	}
}

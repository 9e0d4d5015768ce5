//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Scenario 10: why each memory emptyDir has its size. On this rig (v1.33, SizeMemoryBackedVolumes
// GA) an emptyDir with sizeLimit 256Mi under limits.memory 128Mi is a 128Mi tmpfs "by
// limits.memory", and the audit says the sizeLimit was cut; one without sizeLimit is sized by the
// memory limit too. Each is checked against the kernel's statfs of the host tmpfs.

type sizeExplained struct {
	Expected  *uint64 `json:"expected_bytes"`
	DecidedBy string  `json:"decided_by"`
	Sized     bool    `json:"sized"`
	Unknown   string  `json:"unknown"`
}

type sizeScan struct {
	Pods []struct {
		UID string `json:"uid"`
		Shm []struct {
			Source    string         `json:"source"`
			Volume    string         `json:"volume"`
			Size      *uint64        `json:"size_bytes"`
			SizeLimit *uint64        `json:"size_limit_bytes"`
			Explained *sizeExplained `json:"size_explained"`
		} `json:"shm"`
	} `json:"pods"`
}

// explainedSize is the size_explained of a pod's emptyDir "shm" in scan -o json.
func explainedSize(t *testing.T, uid string) (size *uint64, e *sizeExplained, err error) {
	t.Helper()
	out, stderr, code := agentExec(t, "scan", "-o", "json")
	if code != 0 {
		t.Fatalf("scan -o json exited %d: %s", code, stderr)
	}
	var r sizeScan
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("decode scan JSON: %v", err)
	}
	for _, p := range r.Pods {
		for _, s := range p.Shm {
			if p.UID == uid && s.Source == "emptydir" && s.Volume == "shm" {
				if s.Explained == nil {
					return s.Size, nil, fmt.Errorf("emptyDir shm has no size_explained")
				}
				return s.Size, s.Explained, nil
			}
		}
	}
	return nil, nil, fmt.Errorf("pod %s has no emptydir shm in scan", uid)
}

func emptyDirPod(t *testing.T, name, sizeLimit string) *corev1.Pod {
	t.Helper()
	spec := podSpec(name, corev1.Container{Name: "c", Resources: memLimit("128Mi"),
		VolumeMounts: []corev1.VolumeMount{{Name: "shm", MountPath: "/dev/shm"}}})
	spec.Spec.Volumes = []corev1.Volume{memoryEmptyDir("shm", sizeLimit)}
	return startPod(t, spec)
}

func TestS10TmpfsSizeExplained(t *testing.T) {
	// The pods live until the table and the audit below have read them.
	pods := map[string]*corev1.Pod{
		"s10-sizelimit-256": emptyDirPod(t, "s10-sizelimit-256", "256Mi"),
		"s10-no-sizelimit":  emptyDirPod(t, "s10-no-sizelimit", ""),
	}
	for _, name := range []string{"s10-sizelimit-256", "s10-no-sizelimit"} {
		t.Run(name, func(t *testing.T) {
			p := pods[name]
			k := statfs(t, hostShmPath(t, firstPID(t, containerCgroupDir(t, p, "c"))))
			if k.size != 128*mib {
				t.Fatalf("kernel: the emptyDir tmpfs is %d bytes, want 128 MiB", k.size)
			}
			var e *sizeExplained
			eventually(t, 45*time.Second, "size_explained of "+name, func() error {
				size, got, err := explainedSize(t, string(p.UID))
				if err != nil {
					return err
				}
				e = got
				if size == nil || *size != k.size {
					return fmt.Errorf("scan size_bytes %s, statfs %d", fmtPtr(size), k.size)
				}
				return nil
			})
			t.Logf("kernel statfs size %d; scan size_explained %+v (expected %s)", k.size, *e, fmtPtr(e.Expected))
			if e.Expected == nil || *e.Expected != 128*mib || e.DecidedBy != "limits.memory" || !e.Sized || e.Unknown != "" {
				t.Errorf("size_explained %+v (expected %s): want 128Mi, sized, decided by limits.memory", *e, fmtPtr(e.Expected))
			}
		})
	}

	table, _, _ := agentExec(t, "scan")
	if !strings.Contains(table, "/128Mi (limits.memory; sizeLimit 256Mi)") {
		t.Errorf("scan table has no row explaining the 128Mi tmpfs:\n%s", table)
	}
	for _, line := range strings.Split(table, "\n") {
		if strings.Contains(line, "s10-") {
			t.Logf("scan row: %s", line)
		}
	}
	out, _, code := agentExec(t, "audit", "-o", "json")
	var a struct {
		Findings []struct{ Severity, Check, Message string } `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("audit -o json (exit %d): %v", code, err)
	}
	var found bool
	for _, f := range a.Findings {
		if f.Check == "tmpfs-size" && strings.Contains(f.Message, "s10-sizelimit-256") {
			found = f.Severity == "warning" && strings.Contains(f.Message, "sizeLimit 256Mi is cut to 128Mi by limits.memory")
			t.Logf("audit exit %d: %s %s %s", code, f.Severity, f.Check, f.Message)
		}
		if f.Check == "tmpfs-size" && strings.Contains(f.Message, "s10-no-sizelimit") {
			t.Errorf("a tmpfs sized by limits.memory without a sizeLimit is no finding: %s", f.Message)
		}
	}
	if !found || code < 1 {
		t.Errorf("audit (exit %d) has no tmpfs-size warning for the cut sizeLimit: %+v", code, a.Findings)
	}
}

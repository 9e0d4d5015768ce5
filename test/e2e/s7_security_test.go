//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// capBits maps the capability names a manifest may use to their bit numbers.
var capBits = map[string]uint{
	"CHOWN": unix.CAP_CHOWN, "DAC_OVERRIDE": unix.CAP_DAC_OVERRIDE, "DAC_READ_SEARCH": unix.CAP_DAC_READ_SEARCH,
	"FOWNER": unix.CAP_FOWNER, "FSETID": unix.CAP_FSETID, "KILL": unix.CAP_KILL, "SETGID": unix.CAP_SETGID,
	"SETUID": unix.CAP_SETUID, "SETPCAP": unix.CAP_SETPCAP, "NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE,
	"NET_ADMIN": unix.CAP_NET_ADMIN, "NET_RAW": unix.CAP_NET_RAW, "IPC_LOCK": unix.CAP_IPC_LOCK,
	"SYS_CHROOT": unix.CAP_SYS_CHROOT, "SYS_PTRACE": unix.CAP_SYS_PTRACE, "SYS_ADMIN": unix.CAP_SYS_ADMIN,
	"SYS_RESOURCE": unix.CAP_SYS_RESOURCE, "MKNOD": unix.CAP_MKNOD, "AUDIT_WRITE": unix.CAP_AUDIT_WRITE,
	"SETFCAP": unix.CAP_SETFCAP, "SYSLOG": unix.CAP_SYSLOG, "PERFMON": unix.CAP_PERFMON, "BPF": unix.CAP_BPF,
	"CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE, "SYS_NICE": unix.CAP_SYS_NICE,
}

// Scenario 7: the agent runs with the manifest's security context (not privileged; the
// kernel shows exactly the capabilities the manifest adds, no_new_privs, seccomp), and
// `shmwatch audit` in the pod prints the node report.
func TestS7SecurityContextAndAudit(t *testing.T) {
	ctx := context.Background()
	agent, err := agentPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := agent.Spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil {
		t.Fatalf("agent container %s has no securityContext", c.Name)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("agent container is privileged")
	}
	pid := firstPID(t, containerCgroupDir(t, agent, c.Name))
	st := procStatus(t, pid)
	t.Logf("agent pid %d: CapEff %s CapBnd %s NoNewPrivs %s Seccomp %s Uid %s", pid, st["CapEff"], st["CapBnd"], st["NoNewPrivs"], st["Seccomp"], st["Uid"])

	if sc.Capabilities != nil && hasAll(sc.Capabilities.Drop) {
		var want uint64
		for _, a := range sc.Capabilities.Add {
			bit, ok := capBits[strings.TrimPrefix(string(a), "CAP_")]
			if !ok {
				t.Fatalf("unknown capability %q in the manifest", a)
			}
			want |= 1 << bit
		}
		for _, set := range []string{"CapEff", "CapBnd"} {
			got, err := strconv.ParseUint(st[set], 16, 64)
			if err != nil || got != want {
				t.Errorf("%s = %s (%v), manifest drop ALL + add %v = %016x", set, st[set], err, sc.Capabilities.Add, want)
			}
		}
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation && st["NoNewPrivs"] != "1" {
		t.Errorf("allowPrivilegeEscalation false but NoNewPrivs %s", st["NoNewPrivs"])
	}
	if ps := agent.Spec.SecurityContext; ps != nil && ps.SeccompProfile != nil &&
		ps.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault && st["Seccomp"] != "2" {
		t.Errorf("seccomp RuntimeDefault but Seccomp %s (want 2, filter)", st["Seccomp"])
	}
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		var rootOpts string
		for _, m := range mountinfo(t, strconv.Itoa(pid)) {
			if m.point == "/" {
				rootOpts = m.opts // the last mount at / is the visible one
			}
		}
		if !strings.HasPrefix(rootOpts, "ro") {
			t.Errorf("readOnlyRootFilesystem but the agent's / is mounted %q", rootOpts)
		}
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	out, stderr, code := agentExec(t, "audit")
	t.Logf("shmwatch audit exit %d:\n%s\nstderr:\n%s", code, out, stderr)
	if code < 0 || code > 2 {
		t.Errorf("audit exit %d, want 0 (ok), 1 (warning) or 2 (critical)", code)
	}
	if !strings.Contains(out, release) {
		t.Errorf("audit report does not name the node's kernel %s", release)
	}
	jout, _, jcode := agentExec(t, "audit", "-o", "json")
	if jcode != code {
		t.Errorf("audit -o json exit %d, text exit %d", jcode, code)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(jout), &doc); err != nil {
		t.Errorf("audit -o json is not a JSON object (%v): %s", err, jout)
	}
}

func hasAll(caps []corev1.Capability) bool {
	for _, c := range caps {
		if strings.EqualFold(string(c), "ALL") {
			return true
		}
	}
	return false
}

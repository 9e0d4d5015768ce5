package cgroupfs

import (
	"sort"
	"strings"
)

// ParsePodCgroupName recognises one pod cgroup directory name and returns the
// pod UID with dashes. cgroupfs driver: "pod<uid>"; systemd driver:
// "kubepods-pod<uid_>.slice" (Guaranteed) or "kubepods-<qos>-pod<uid_>.slice",
// where the systemd name also carries the QoS class (qos is "" for cgroupfs
// names, whose QoS is their parent directory).
func ParsePodCgroupName(name string) (uid string, qos QOS, driver Driver, ok bool) {
	if rest, found := strings.CutPrefix(name, "pod"); found {
		if validUID(rest) {
			return rest, "", DriverCgroupfs, true
		}
		return "", "", "", false
	}
	rest, found := strings.CutPrefix(name, "kubepods-")
	if !found {
		return "", "", "", false
	}
	rest, found = strings.CutSuffix(rest, ".slice")
	if !found {
		return "", "", "", false
	}
	qos = QOSGuaranteed
	for _, q := range []QOS{QOSBurstable, QOSBestEffort} {
		if r, cut := strings.CutPrefix(rest, string(q)+"-"); cut {
			qos, rest = q, r
			break
		}
	}
	rest, found = strings.CutPrefix(rest, "pod")
	if !found || strings.Contains(rest, "-") {
		return "", "", "", false
	}
	uid = strings.ReplaceAll(rest, "_", "-")
	if !validUID(uid) {
		return "", "", "", false
	}
	return uid, qos, DriverSystemd, true
}

// validUID accepts API UIDs (36-char UUIDs) and static-pod UIDs (32 hex
// chars, a hash of the manifest): lowercase hex and dashes only.
func validUID(s string) bool {
	if len(s) != 32 && len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isHex(c) && c != '-' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

// isContainerID reports whether s is a 64-hex container id.
func isContainerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// containerPrefixes are the runtime prefixes of container cgroup names, longest
// first so "crio-conmon-" is never taken for a "crio-" container.
var containerPrefixes = []struct {
	prefix string
	rt     Runtime
}{
	{"cri-containerd-", RuntimeContainerd},
	{"crio-conmon-", ""}, // CRI-O's monitor process, not a container
	{"docker-", RuntimeDocker},
	{"crio-", RuntimeCRIO},
}

// ParseContainerCgroupName recognises one container cgroup directory name:
// a bare 64-hex id (cgroupfs driver; runtime unknown from the name),
// "cri-containerd-<id>.scope", "crio-<id>.scope" or "crio-<id>" (CRI-O with the
// cgroupfs manager), "docker-<id>.scope". "crio-conmon-<id>[.scope]" is not a
// container.
func ParseContainerCgroupName(name string) (id string, rt Runtime, ok bool) {
	if isContainerID(name) {
		return name, RuntimeUnknown, true
	}
	for _, p := range containerPrefixes {
		rest, found := strings.CutPrefix(name, p.prefix)
		if !found {
			continue
		}
		if p.rt == "" {
			return "", "", false
		}
		if r, scope := strings.CutSuffix(rest, ".scope"); scope {
			rest = r
		} else if p.rt != RuntimeCRIO {
			return "", "", false
		}
		if !isContainerID(rest) {
			return "", "", false
		}
		return rest, p.rt, true
	}
	return "", "", false
}

func sortStrings(s []string) { sort.Strings(s) }

package podmeta

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// ErrLogName is wrapped by errors for names that are not the kubelet's log names.
var ErrLogName = errors.New("not a kubelet log name")

// KubeletLogs finds this node's pods in the kubelet's log directories: <root>/<namespace>_<name>_<uid>
// (/var/log/pods), and container ids in the kubelet's links in the sibling "containers" directory
// (/var/log/containers/<pod>_<namespace>_<container>-<id>.log -> /var/log/pods/<pod dir>/...).
// A read is reused for a few seconds so that scrapes do not each list the directory.
type KubeletLogs struct {
	root          string
	containersDir string
	ttl           time.Duration

	mu     sync.Mutex
	readAt time.Time
	byUID  map[string]Pod
	err    error
}

// NewKubeletLogs reads pods from logRoot (e.g. /var/log/pods or /host/var/log/pods). When the base
// of logRoot is "pods", the sibling "containers" directory supplies container ids. An empty
// logRoot knows no pods.
func NewKubeletLogs(logRoot string) *KubeletLogs {
	return newKubeletLogs(logRoot, DefaultLogsCacheTTL)
}

func newKubeletLogs(logRoot string, ttl time.Duration) *KubeletLogs {
	k := &KubeletLogs{root: logRoot, ttl: ttl}
	if logRoot != "" && filepath.Base(logRoot) == "pods" {
		k.containersDir = filepath.Join(filepath.Dir(logRoot), "containers")
	}
	return k
}

// Pod returns the pod with this uid, if it has a log directory.
func (k *KubeletLogs) Pod(uid string) (Pod, bool) {
	byUID, _ := k.snapshot()
	p, ok := byUID[uid]
	return p, ok
}

// Pods returns every pod with a log directory.
func (k *KubeletLogs) Pods() []Pod {
	byUID, _ := k.snapshot()
	out := make([]Pod, 0, len(byUID))
	for _, p := range byUID {
		out = append(out, p)
	}
	return out
}

// HasPods is true when at least one pod log directory exists.
func (k *KubeletLogs) HasPods() bool {
	byUID, _ := k.snapshot()
	return len(byUID) > 0
}

// Err returns the error of the last read of the log root, nil when it succeeded.
func (k *KubeletLogs) Err() error {
	_, err := k.snapshot()
	return err
}

func (k *KubeletLogs) snapshot() (map[string]Pod, error) {
	if k.root == "" {
		return nil, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.byUID == nil || time.Since(k.readAt) >= k.ttl {
		k.byUID, k.err = k.read()
		k.readAt = time.Now()
	}
	return k.byUID, k.err
}

// read lists the log root. Entries that are not pod directories are skipped: the kubelet owns
// this directory, and a stray file must not hide the pods.
func (k *KubeletLogs) read() (map[string]Pod, error) {
	entries, err := os.ReadDir(k.root)
	if err != nil {
		return map[string]Pod{}, fmt.Errorf("read kubelet log root %s: %w", k.root, err)
	}
	byUID := make(map[string]Pod, len(entries))
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		ns, name, uid, err := ParsePodLogDir(e.Name())
		if err != nil {
			continue
		}
		byUID[uid] = Pod{UID: uid, Namespace: ns, Name: name, Containers: map[string]string{}, Source: SourceKubeletLogs}
	}
	k.addContainers(byUID)
	return byUID, nil
}

// addContainers fills container ids from the kubelet's /var/log/containers links. The link's
// target names the pod directory, so a pod recreated under the same name is not confused with
// its predecessor. A missing directory only means no container ids.
func (k *KubeletLogs) addContainers(byUID map[string]Pod) {
	if k.containersDir == "" {
		return
	}
	entries, err := os.ReadDir(k.containersDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		_, _, container, id, err := ParseContainerLogLink(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(filepath.Join(k.containersDir, e.Name()))
		if err != nil {
			continue
		}
		// <log root>/<pod dir>/<container>/<restart>.log; the root may differ from ours when
		// the host's /var/log is mounted elsewhere, so only the names are used.
		_, _, uid, err := ParsePodLogDir(filepath.Base(filepath.Dir(filepath.Dir(target))))
		if err != nil {
			continue
		}
		if p, ok := byUID[uid]; ok {
			p.Containers[id] = container
		}
	}
}

// ParsePodLogDir splits a kubelet pod log directory name, <namespace>_<name>_<uid>. Namespaces and
// pod names cannot contain "_" (DNS labels and subdomains), so there are exactly three fields.
func ParsePodLogDir(dir string) (namespace, name, uid string, err error) {
	parts := strings.Split(dir, "_")
	if len(parts) != 3 {
		return "", "", "", fmt.Errorf("pod log dir %q: want <namespace>_<name>_<uid>: %w", dir, ErrLogName)
	}
	namespace, name, uid = parts[0], parts[1], parts[2]
	if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
		return "", "", "", fmt.Errorf("pod log dir %q: namespace: %s: %w", dir, errs[0], ErrLogName)
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", "", "", fmt.Errorf("pod log dir %q: pod name: %s: %w", dir, errs[0], ErrLogName)
	}
	if !validUID(uid) {
		return "", "", "", fmt.Errorf("pod log dir %q: uid %q: %w", dir, uid, ErrLogName)
	}
	return namespace, name, uid, nil
}

// validUID accepts API UUIDs and static pods' hex hashes, nothing that could be a path.
func validUID(uid string) bool {
	if uid == "" || len(uid) > 64 {
		return false
	}
	for _, r := range uid {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-') {
			return false
		}
	}
	return true
}

// ParseContainerLogLink splits a kubelet container log link name,
// <pod>_<namespace>_<container>-<container id>.log. Container names are DNS labels and ids are
// 64 hex digits, so the id follows the last "-".
func ParseContainerLogLink(link string) (pod, namespace, container, id string, err error) {
	base, ok := strings.CutSuffix(link, ".log")
	parts := strings.Split(base, "_")
	if !ok || len(parts) != 3 {
		return "", "", "", "", fmt.Errorf("container log link %q: want <pod>_<namespace>_<container>-<id>.log: %w", link, ErrLogName)
	}
	i := strings.LastIndexByte(parts[2], '-')
	if i < 0 {
		return "", "", "", "", fmt.Errorf("container log link %q: no container id: %w", link, ErrLogName)
	}
	pod, namespace, container, id = parts[0], parts[1], parts[2][:i], parts[2][i+1:]
	if !isHex64(id) {
		return "", "", "", "", fmt.Errorf("container log link %q: container id %q is not 64 hex digits: %w", link, id, ErrLogName)
	}
	if len(validation.IsDNS1123Subdomain(pod)) > 0 || len(validation.IsDNS1123Label(namespace)) > 0 ||
		len(validation.IsDNS1123Label(container)) > 0 {
		return "", "", "", "", fmt.Errorf("container log link %q: bad pod, namespace or container name: %w", link, ErrLogName)
	}
	return pod, namespace, container, id, nil
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

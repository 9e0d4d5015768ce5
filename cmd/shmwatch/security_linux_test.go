package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/shmwatch/shmwatch/internal/podtree"
	"github.com/shmwatch/shmwatch/internal/realkernel"
)

// writeSelfSigned writes a fresh P-256 certificate for 127.0.0.1 and its key.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "shmwatch-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// /metrics behind exporter-toolkit's TLS and basic auth (--web.config.file):
// no credentials and wrong credentials get 401, plain HTTP gets no metrics,
// the right user and password get the metrics.
func TestSecurityTLSBasicAuth(t *testing.T) {
	requireBinary(t)
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	const user, password = "prometheus", "s3cret-for-test"
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webCfg := fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  %s: %s\n", cert, key, user, hash)
	cfgPath := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(cfgPath, []byte(webCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, serveOpts{tls: true, args: []string{"--web.config.file=" + cfgPath, "--all-cgroups"}})
	auth := func(r *http.Request) { r.SetBasicAuth(user, password) }
	srv.waitReady(t, "/readyz", auth)

	get := func(scheme string, mod func(*http.Request)) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, scheme+"://"+srv.Addr+"/metrics", nil)
		if mod != nil {
			mod(req)
		}
		resp, err := srv.client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("https", nil); code != http.StatusUnauthorized {
		t.Errorf("unauthenticated https GET /metrics: %d, want 401", code)
	}
	if code, _ := get("https", func(r *http.Request) { r.SetBasicAuth(user, "wrong") }); code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d, want 401", code)
	}
	if code, body := get("http", auth); code == http.StatusOK || strings.Contains(body, "shmwatch_build_info") {
		t.Errorf("plain http got metrics: %d", code)
	}
	code, body := get("https", auth)
	if code != http.StatusOK || !strings.Contains(body, "shmwatch_build_info") {
		t.Fatalf("authenticated https GET /metrics: %d, body %.200q", code, body)
	}
	if _, err := parseExposition([]byte(body)); err != nil {
		t.Error(err)
	}
	t.Logf("TLS+basic auth: no auth 401, wrong password 401, plain http refused, authenticated 200 (%d bytes)", len(body))
}

// straceOpen matches one traced syscall that names a path, with strace -y
// showing the directory of a dirfd: openat(3</sys/...>, "memory.stat", O_RDONLY|...)
// or openat(AT_FDCWD</cwd>, "/proc/cgroups", ...).
var straceOpen = regexp.MustCompile(`(openat2?|open|creat|mkdir|mkdirat|unlink|unlinkat|rename|renameat2?)\((?:(AT_FDCWD|-?\d+)(?:<([^>]*)>)?, )?"([^"]*)"(.*)$`)
var straceWrite = regexp.MustCompile(`write\(\d+<([^>]*)>`)

// shmwatch scan never writes to /sys or /proc: every open there is read-only,
// nothing there is created, removed or renamed, and no write(2) goes to an fd
// open there. Traced with strace -f -y over a real pod tree.
func TestSecurityNoWritesToSysProc(t *testing.T) {
	requireBinary(t)
	strace, err := exec.LookPath("strace")
	if err != nil {
		realkernel.Skip(t, "needs strace (apt-get install -y strace)")
	}
	tree := podtree.New(t)
	p, _ := runtimeShmPod(t, tree)
	trace := filepath.Join(t.TempDir(), "trace")
	cmd := exec.Command(strace, "-f", "-y", "-qq", "-s", "256", "-o", trace,
		"-e", "trace=openat,openat2,open,creat,mkdir,mkdirat,unlink,unlinkat,rename,renameat,renameat2,write",
		binPath, "scan", "-o", "json", "--cgroup-root="+tree.CgroupRoot, "--kubeconfig=", "--log-root="+t.TempDir())
	cmd.Env = append(os.Environ(), "KUBECONFIG=", "KUBERNETES_SERVICE_HOST=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("strace shmwatch scan: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), p.UID) {
		t.Fatalf("scan did not report the test pod %s:\n%.2000s", p.UID, out)
	}
	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	var opens, sysproc int
	for _, line := range strings.Split(string(data), "\n") {
		if m := straceWrite.FindStringSubmatch(line); m != nil && underSysProc(m[1]) {
			t.Errorf("write to /sys or /proc: %s", line)
		}
		m := straceOpen.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		call, dir, name, rest := m[1], m[3], m[4], m[5]
		full := name
		if !strings.HasPrefix(name, "/") && dir != "" {
			full = dir + "/" + name
		}
		if !underSysProc(full) {
			continue
		}
		sysproc++
		if strings.HasPrefix(call, "open") {
			opens++
		}
		switch {
		case !strings.HasPrefix(call, "open"):
			t.Errorf("%s under /sys or /proc: %s", call, line)
		case strings.Contains(rest, "O_WRONLY") || strings.Contains(rest, "O_RDWR") || strings.Contains(rest, "O_CREAT") || strings.Contains(rest, "O_TRUNC"):
			t.Errorf("open for writing under /sys or /proc: %s", line)
		}
	}
	t.Logf("strace: %d opens under /sys and /proc, all read-only (%d syscalls there traced)", opens, sysproc)
	if opens < 5 {
		t.Errorf("only %d opens under /sys and /proc traced: the trace did not see the scan's reads", opens)
	}
}

func underSysProc(p string) bool {
	return p == "/sys" || p == "/proc" || strings.HasPrefix(p, "/sys/") || strings.HasPrefix(p, "/proc/")
}

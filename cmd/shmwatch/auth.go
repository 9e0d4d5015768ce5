package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/exporter-toolkit/web"
	"go.uber.org/zap"

	"github.com/shmwatch/shmwatch/agent/metricsauth"
	"github.com/shmwatch/shmwatch/agent/podmeta"
)

// Values of --web.auth.
const (
	authAuto       = "auto"
	authKubernetes = "kubernetes"
	authNone       = "none"
)

// metricsAuth is the serve command's RBAC guard of /metrics.
type metricsAuth struct {
	mode   string
	filter *metricsauth.Filter // nil: /metrics is open
}

func addAuthFlags(cmd *kingpin.CmdClause) *metricsAuth {
	a := &metricsAuth{}
	cmd.Flag("web.auth", "Guard the metrics path with Kubernetes RBAC (TokenReview + SubjectAccessReview for get on the path): kubernetes, none, or auto = kubernetes when the agent shares the node's network namespace and has an API server. With it on and no --web.config.file, a self-signed TLS certificate is made at start.").
		Envar("SHMWATCH_WEB_AUTH").Default(authAuto).EnumVar(&a.mode, authAuto, authKubernetes, authNone)
	return a
}

// setup decides whether the filter is on and builds it.
func (a *metricsAuth) setup(f *nodeFlags, path string, log *zap.Logger) error {
	on, why := a.enabled(f)
	log.Info("metrics auth", zap.Bool("kubernetes_rbac", on), zap.String("why", why))
	if !on {
		return nil
	}
	if !f.apiConfigured() {
		return errors.New("--web.auth=kubernetes needs an API server (in-cluster config or --kubeconfig)")
	}
	rc, err := podmeta.RESTConfig(f.kubeconfig)
	if err != nil {
		return fmt.Errorf("metrics auth: %w", err)
	}
	cfg := metricsauth.DefaultConfig()
	cfg.Path = path
	a.filter, err = metricsauth.New(rc, cfg)
	return err
}

func (a *metricsAuth) enabled(f *nodeFlags) (bool, string) {
	switch a.mode {
	case authKubernetes:
		return true, "--web.auth=kubernetes"
	case authNone:
		return false, "--web.auth=none"
	}
	if !f.apiConfigured() {
		return false, "auto: no API server to review tokens"
	}
	hostNet, err := sharesHostNetwork(f.path(f.procfs))
	if err != nil {
		return true, fmt.Sprintf("auto: network namespace unknown (%v), failing safe", err)
	}
	if hostNet {
		return true, "auto: in the node's network namespace"
	}
	return false, "auto: in a pod network namespace"
}

// sharesHostNetwork compares this process's network namespace with pid 1's,
// the host's init (hostPID).
func sharesHostNetwork(procRoot string) (bool, error) {
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return false, fmt.Errorf("read own network namespace: %w", err)
	}
	host, err := os.Readlink(filepath.Join(procRoot, "1", "ns", "net"))
	if err != nil {
		return false, fmt.Errorf("read pid 1's network namespace: %w", err)
	}
	return self == host, nil
}

// guard wraps the metrics handler and registers the failures counter.
func (a *metricsAuth) guard(h http.Handler, reg prometheus.Registerer) http.Handler {
	if a.filter == nil {
		return h
	}
	reg.MustRegister(a.filter.Collector())
	return a.filter.Wrap(h)
}

// listenAndServe serves through exporter-toolkit; with auth on and no web
// config file, over TLS with a self-signed certificate, so bearer tokens
// never cross the network in clear.
func (a *metricsAuth) listenAndServe(server *http.Server, flags *web.FlagConfig, logger *slog.Logger) error {
	if a.filter == nil || (flags.WebConfigFile != nil && *flags.WebConfigFile != "") {
		return web.ListenAndServe(server, flags, logger)
	}
	cert, err := selfSignedCert(time.Now())
	if err != nil {
		return err
	}
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	var listeners []net.Listener
	for _, addr := range *flags.WebListenAddresses {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, prev := range listeners {
				_ = prev.Close()
			}
			return fmt.Errorf("listen %s: %w", addr, err)
		}
		listeners = append(listeners, tls.NewListener(l, tlsConfig))
	}
	logger.Info("TLS with a self-signed certificate made at start (no --web.config.file)")
	return web.ServeMultiple(listeners, server, flags, logger)
}

// selfSignedCert makes a P-256 serving certificate for this node's names,
// valid for a year. Scrapers skip its verification; a certificate they can
// verify comes through --web.config.file (docs/install.md).
func selfSignedCert(now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "shmwatch"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if h, err := os.Hostname(); err == nil {
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	if n := os.Getenv("NODE_NAME"); n != "" {
		tmpl.DNSNames = append(tmpl.DNSNames, n)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

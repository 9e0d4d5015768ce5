//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// agentNamespace and agentPort are the DaemonSet's, as deploy/kubernetes ships them.
const (
	agentNamespace = "shmwatch"
	agentPort      = 9850
	busybox        = "localhost/rig-busybox:1"
	mib            = 1 << 20
)

// suite is what every scenario shares: one client, the node under test, a namespace
// for the scenario pods, and the orphan pod cgroup made at the start (it must age
// past the agent's orphan grace before scenario 5 can see it).
var suite struct {
	rest   *rest.Config
	kube   *kubernetes.Clientset
	node   string
	ns     string
	orphan *orphanCgroup
	table  []shmRow
}

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	if err := setup(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup: %v\n", err)
		teardown()
		return 1
	}
	code := m.Run()
	printShmTable(os.Stdout, suite.table)
	teardown()
	return code
}

func setup() error {
	kc := os.Getenv("KUBECONFIG")
	if kc == "" {
		return fmt.Errorf("KUBECONFIG is unset: run test/e2e.sh, or export the rig's (source /var/lib/k8s-rig/env.sh)")
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("must run as root on the node: the tests read the pods' cgroups and mounts")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		return fmt.Errorf("load %s: %w", kc, err)
	}
	suite.rest = cfg
	if suite.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	agent, err := waitAgentReady(ctx)
	if err != nil {
		return err
	}
	suite.node = agent.Spec.NodeName
	if host, _ := os.Hostname(); !strings.EqualFold(host, suite.node) && os.Getenv("K8S_RIG_NODE_NAME") != suite.node {
		fmt.Fprintf(os.Stderr, "e2e: warning: agent runs on node %q, this host is %q: kernel reads need the same node\n", suite.node, host)
	}
	suite.ns = "shmwatch-e2e-" + randHex(4)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: suite.ns, Labels: map[string]string{"app.kubernetes.io/part-of": "shmwatch-e2e"}}}
	if _, err := suite.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace %s: %w", suite.ns, err)
	}
	if err := waitDefaultServiceAccount(ctx, suite.ns); err != nil {
		return err
	}
	// Made first so that it is old enough (agent OrphanGrace, 2 min) when scenario 5 looks.
	if suite.orphan, err = makeOrphanCgroup(); err != nil {
		return err
	}
	fmt.Printf("e2e: node %s, agent pod %s, test namespace %s, orphan pod cgroup %s\n",
		suite.node, agent.Name, suite.ns, suite.orphan.cgroupDir)
	return nil
}

func teardown() {
	if suite.orphan != nil {
		if err := suite.orphan.remove(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e teardown: %v\n", err)
		}
	}
	if suite.kube == nil || suite.ns == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	zero := int64(0)
	_ = suite.kube.CoreV1().Namespaces().Delete(ctx, suite.ns, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	for ctx.Err() == nil {
		if _, err := suite.kube.CoreV1().Namespaces().Get(ctx, suite.ns, metav1.GetOptions{}); err != nil {
			return
		}
		time.Sleep(time.Second)
	}
	fmt.Fprintf(os.Stderr, "e2e teardown: namespace %s still terminating\n", suite.ns)
}

func waitDefaultServiceAccount(ctx context.Context, ns string) error {
	for {
		if _, err := suite.kube.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace %s: no default serviceaccount: %w", ns, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

package podmeta

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// typedClient is Client over a client-go clientset, for tests with the
// fake clientset (the agent itself uses restClient).
type typedClient struct{ kubernetes.Interface }

func (c typedClient) ListPods(ctx context.Context, opts metav1.ListOptions) (*v1.PodList, error) {
	return c.CoreV1().Pods(metav1.NamespaceAll).List(ctx, opts)
}

func (c typedClient) WatchPods(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return c.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, opts)
}

func (c typedClient) GetNode(ctx context.Context, name string, opts metav1.GetOptions) (*v1.Node, error) {
	return c.CoreV1().Nodes().Get(ctx, name, opts)
}

func (c typedClient) ServerVersion(context.Context) (string, error) {
	info, err := c.Discovery().ServerVersion()
	if err != nil {
		return "", fmt.Errorf("server version: %w", err)
	}
	return info.GitVersion, nil
}

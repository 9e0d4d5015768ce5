package podmeta

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// Client is all the agent asks of the API server: this node's pods (list
// and watch), its node object, and the server version.
type Client interface {
	ListPods(ctx context.Context, opts metav1.ListOptions) (*v1.PodList, error)
	WatchPods(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	GetNode(ctx context.Context, name string, opts metav1.GetOptions) (*v1.Node, error)
	ServerVersion(ctx context.Context) (string, error)
}

// restClient is Client over one core/v1 REST client whose scheme holds
// core/v1 alone. client-go's typed clientsets and its discovery client
// import k8s.io/client-go/kubernetes/scheme, which registers all ~57 API
// groups at init: measured on this machine, a binary importing the core/v1
// typed client idles at 22.6 MB RSS, one with core/v1 types, rest and
// cache at 8.5 MB.
type restClient struct {
	rest   *rest.RESTClient
	params runtime.ParameterCodec
}

func newRESTClient(cfg *rest.Config) (*restClient, error) {
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil { // also metav1's list, watch and status types
		return nil, fmt.Errorf("core/v1 scheme: %w", err)
	}
	c := rest.CopyConfig(cfg)
	c.APIPath = "/api"
	c.GroupVersion = &v1.SchemeGroupVersion
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, err
	}
	return &restClient{rest: rc, params: runtime.NewParameterCodec(scheme)}, nil
}

func (c *restClient) ListPods(ctx context.Context, opts metav1.ListOptions) (*v1.PodList, error) {
	out := &v1.PodList{}
	err := c.rest.Get().Resource("pods").VersionedParams(&opts, c.params).
		Timeout(timeoutOf(opts)).Do(ctx).Into(out)
	return out, err
}

func (c *restClient) WatchPods(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return c.rest.Get().Resource("pods").VersionedParams(&opts, c.params).
		Timeout(timeoutOf(opts)).Watch(ctx)
}

func (c *restClient) GetNode(ctx context.Context, name string, opts metav1.GetOptions) (*v1.Node, error) {
	out := &v1.Node{}
	err := c.rest.Get().Resource("nodes").Name(name).VersionedParams(&opts, c.params).Do(ctx).Into(out)
	return out, err
}

// ServerVersion reads /version with ctx's deadline (discovery's
// ServerVersion takes no context).
func (c *restClient) ServerVersion(ctx context.Context) (string, error) {
	raw, err := c.rest.Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return "", fmt.Errorf("get /version: %w", err)
	}
	var info version.Info
	if err := json.Unmarshal(raw, &info); err != nil {
		return "", fmt.Errorf("decode /version: %w", err)
	}
	return info.GitVersion, nil
}

// timeoutOf is the request timeout a typed client derives from the
// options: the server-side timeout, else none.
func timeoutOf(opts metav1.ListOptions) time.Duration {
	if opts.TimeoutSeconds != nil {
		return time.Duration(*opts.TimeoutSeconds) * time.Second
	}
	return 0
}

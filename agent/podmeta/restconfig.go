package podmeta

import "k8s.io/client-go/rest"

// RESTConfig is the API server configuration the pod informer uses: the
// kubeconfig file, or the in-cluster config when it is "". Other API
// clients of the agent (events) share it.
func RESTConfig(kubeconfig string) (*rest.Config, error) { return restConfig(kubeconfig) }

package podmeta

import "k8s.io/client-go/rest"

// RESTConfig is the API client configuration the informer uses: the
// kubeconfig file when one is named, else the pod's in-cluster config. Other
// API clients of the agent (the /metrics auth filter, events) share it.
func RESTConfig(kubeconfig string) (*rest.Config, error) { return restConfig(kubeconfig) }

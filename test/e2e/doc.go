// Package e2e runs shmwatch's DaemonSet against a real Kubernetes node and checks what it
// reports against the pods' own view and the kernel's files. The tests carry the `e2e` build
// tag and need KUBECONFIG, root on the node and the agent deployed: test/e2e.sh does all that.
package e2e

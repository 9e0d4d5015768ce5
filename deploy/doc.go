// Package deploy holds no code: its tests check the shipped deployment files
// (Kubernetes manifests, Prometheus rules, Grafana dashboard, docs) against
// the security properties and the metric names shmwatch promises.
package deploy

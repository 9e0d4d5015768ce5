// Package metricsauth guards an HTTP handler with Kubernetes RBAC, the way
// kube-rbac-proxy and controller-runtime's metrics filters do: the request's
// bearer token goes through a TokenReview, its user through a
// SubjectAccessReview for a verb on a non-resource URL (get /metrics).
//
// Decisions are cached by a hash of the token (allowed for AllowTTL, denied
// for DenyTTL), so a scraper costs two API round trips every AllowTTL and
// nothing in between. When the API server cannot answer, cached decisions
// hold and unknown tokens are refused: the filter fails closed.
package metricsauth

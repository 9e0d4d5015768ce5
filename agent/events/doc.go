// Package events tells a pod's owner, on the pod, when its shared memory is
// about to fail it: Kubernetes Events (events.k8s.io/v1) with the numbers
// and what to change. A Checker notices fullness between scrapes, Judge and
// JudgeOOMKill decide what to say, and a Sender posts the events without
// ever blocking the caller, at most one per pod and reason per window and a
// node-wide number per minute.
package events

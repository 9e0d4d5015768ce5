// Package agent joins cgroupfs, shmscan and pod metadata into one immutable
// Snapshot of the node per collection, works out which limit binds each
// pod's shared memory first, and renders that snapshot three ways: Prometheus
// metrics, the scan report and the audit findings. The views only format; they
// never read the kernel themselves, so the three always agree.
package agent

package engine

import (
	"net/netip"
	"sync/atomic"
)

// Host is one upstream endpoint of a cluster. A Host keeps its identity across host-set
// updates (a DNS refresh that returns the same address keeps the same Host), so what
// workers keep for it — active connections, an HTTP filter's connection pool — survives
// them. It is shared by all workers: its health is atomic, its per-worker state is in
// Local.
type Host struct {
	addr     netip.AddrPort
	weight   uint32
	hostname string
	health   atomic.Uint32 // HealthFlag bits; 0 is healthy
	removed  atomic.Bool   // no longer in its cluster's host set
	local    []HostLocal
	out      hostOutlier // outlier detection's per-host state (outlier_linux.go)
}

// HealthFlag is a reason for a host to be out of load balancing.
type HealthFlag uint32

// Health flags (Envoy's Host::HealthFlag subset).
const (
	// FailedActiveHealthCheck: the active health checker saw it fail.
	FailedActiveHealthCheck HealthFlag = 1 << iota
	// FailedOutlierCheck: outlier detection ejected it.
	FailedOutlierCheck
	// PendingActiveHealthCheck: a new host waits for its first check (only with
	// a health checker's "pending" behaviour).
	PendingActiveHealthCheck
)

// HostLocal is what one worker keeps for one host. Only that worker touches it.
type HostLocal struct {
	// Active counts the worker's open connections to the host (least request).
	Active int
	// Ext is a filter's state for the host on this worker (the router keeps its
	// connection pool here); nil until a filter sets it.
	Ext any
	// OnRemoved, if set, runs on the worker when the host leaves its cluster's host set
	// (the router closes its idle connections to it).
	OnRemoved func()
}

// NewHost makes a host for a cluster served by the given number of workers. A weight of
// 0 is taken as 1.
func NewHost(addr netip.AddrPort, weight uint32, hostname string, workers int) *Host {
	if weight == 0 {
		weight = 1
	}
	return &Host{addr: addr, weight: weight, hostname: hostname, local: make([]HostLocal, workers)}
}

// Address is the host's address.
func (h *Host) Address() netip.AddrPort { return h.addr }

// Weight is the host's load-balancing weight.
func (h *Host) Weight() uint32 { return h.weight }

// Hostname is the name the host was resolved from (DNS clusters), or "".
func (h *Host) Hostname() string { return h.hostname }

// Healthy reports whether no health flag is set.
func (h *Host) Healthy() bool { return h.health.Load() == 0 }

// HealthFlags returns the flags set.
func (h *Host) HealthFlags() HealthFlag { return HealthFlag(h.health.Load()) }

// SetHealthFlag sets or clears a flag; safe from any goroutine (health checkers run off
// the workers). Workers see the change on their next pick.
func (h *Host) SetHealthFlag(f HealthFlag, on bool) {
	for {
		old := h.health.Load()
		n := old &^ uint32(f)
		if on {
			n = old | uint32(f)
		}
		if h.health.CompareAndSwap(old, n) {
			return
		}
	}
}

// Removed reports whether the host left its cluster's host set.
func (h *Host) Removed() bool { return h.removed.Load() }

// Local is worker w's state for the host; only w may use it.
func (h *Host) Local(w *Worker) *HostLocal { return &h.local[w.ID] }

// hostSet is an immutable list of a cluster's hosts, as one worker sees it.
type hostSet struct {
	hosts       []*Host
	totalWeight uint64
}

func newHostSet(hosts []*Host) *hostSet {
	hs := &hostSet{hosts: hosts}
	for _, h := range hosts {
		hs.totalWeight += uint64(h.weight)
	}
	return hs
}

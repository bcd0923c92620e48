package engine

import "sync/atomic"

// Thresholds are a cluster's circuit-breaker limits (Envoy's
// CircuitBreakers.Thresholds for the default priority). The zero Thresholds takes Envoy's
// defaults; otherwise every field is taken as it is, so a configuration can say
// "max_retries: 0" (the config reader fills in the defaults of the fields it was not given).
type Thresholds struct {
	MaxConnections     uint32
	MaxPendingRequests uint32
	MaxRequests        uint32
	MaxRetries         uint32
}

// Envoy's circuit-breaker defaults.
const (
	DefaultMaxConnections     = 1024
	DefaultMaxPendingRequests = 1024
	DefaultMaxRequests        = 1024
	DefaultMaxRetries         = 3
)

// Resource is one circuit-breaker resource: a count shared by every worker and its limit.
// Envoy counts these cluster-wide with atomics too, while everything else stays per
// worker: a limit per worker would let N workers open N times the connections a backend
// was sized for.
type Resource struct {
	n     atomic.Int64
	limit int64
}

// TryAcquire takes one unit if the count is below the limit and reports whether it did.
func (r *Resource) TryAcquire() bool {
	if r.n.Add(1) > r.limit {
		r.n.Add(-1)
		return false
	}
	return true
}

// Acquire takes one unit whatever the limit (for work already admitted).
func (r *Resource) Acquire() { r.n.Add(1) }

// Release returns one unit.
func (r *Resource) Release() { r.n.Add(-1) }

// Count is the units in use.
func (r *Resource) Count() int64 { return r.n.Load() }

// Limit is the threshold.
func (r *Resource) Limit() int64 { return r.limit }

// Open reports whether the breaker is open (the count reached the limit): Envoy's
// circuit_breakers.default.*_open gauges.
func (r *Resource) Open() bool { return r.n.Load() >= r.limit }

// Breakers are a cluster's circuit breakers.
type Breakers struct {
	Connections     Resource
	PendingRequests Resource
	Requests        Resource
	Retries         Resource
}

// DefaultThresholds are Envoy's.
func DefaultThresholds() Thresholds {
	return Thresholds{DefaultMaxConnections, DefaultMaxPendingRequests, DefaultMaxRequests, DefaultMaxRetries}
}

func (b *Breakers) init(t Thresholds) {
	if t == (Thresholds{}) {
		t = DefaultThresholds()
	}
	b.Connections.limit = int64(t.MaxConnections)
	b.PendingRequests.limit = int64(t.MaxPendingRequests)
	b.Requests.limit = int64(t.MaxRequests)
	b.Retries.limit = int64(t.MaxRetries)
}

package httpconnmgr

import (
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/http/route"
)

// RDS: a connection manager configured with rds reads its route table from a
// RouteProvider, which the manager fills from the management server's
// RouteConfiguration of that name. A provider lives as long as some listener (static or
// from LDS, in any version) names its route configuration, so that a new listener
// version finds the routes its predecessor had; every connection manager that names the
// same route configuration shares it (Envoy's RouteConfigProviderManager).

// RouteProvider holds the current route table of one route_config_name. Requests read it
// with one atomic load; the manager replaces it whole.
type RouteProvider struct {
	name       string
	table      atomic.Pointer[route.Table]
	statPrefix string // the first connection manager's stat_prefix, as in Envoy
	// InitialFetchTimeout is the rds config_source's initial_fetch_timeout (0: wait as
	// long as it takes), from the first connection manager that named it.
	InitialFetchTimeout time.Duration
	// Stats are Envoy's http.<stat_prefix>.rds.<route_config_name>.* (the manager counts).
	Stats RDSStats
}

// RDSStats are one route configuration subscription's stats (Envoy's RDS statistics and
// the subscription statistics under the same prefix).
type RDSStats struct {
	UpdateAttempt, UpdateSuccess, UpdateRejected, UpdateFailure, UpdateEmpty, ConfigReload engine.Counter
	Version, UpdateTime, ConfigReloadTimeMs                                                engine.Gauge
}

// Name is the route_config_name.
func (p *RouteProvider) Name() string { return p.name }

// Table is the current route table; nil until the first version arrives (requests then
// get Envoy's answer for no route: 404, response flag NR).
func (p *RouteProvider) Table() *route.Table { return p.table.Load() }

// Set publishes a new table: requests that start from now on use it (those in flight
// keep the one they selected their route from).
func (p *RouteProvider) Set(t *route.Table) { p.table.Store(t) }

// StatsFamily implements engine.StatsSource: http.<stat_prefix>.rds.<name>.*.
func (p *RouteProvider) StatsFamily() string { return "http" }

// StatsProcessWide implements admin.ProcessStats: a subscription is the process's.
func (p *RouteProvider) StatsProcessWide() bool { return true }

// StatsLabels implements engine.StatsSource.
func (p *RouteProvider) StatsLabels() [][2]string {
	return [][2]string{{"stat_prefix", p.statPrefix}}
}

// VisitStats implements engine.StatsSource.
func (p *RouteProvider) VisitStats(_ int, v engine.StatVisitor) {
	// Envoy replaces ':' in the name with '_' in the stats tree.
	prefix := "rds." + strings.ReplaceAll(p.name, ":", "_") + "."
	s := &p.Stats
	c := func(n string, x *engine.Counter) { v(prefix+n, engine.KindCounter, float64(x.Value())) }
	g := func(n string, x *engine.Gauge) { v(prefix+n, engine.KindGauge, float64(x.Value())) }
	c("config_reload", &s.ConfigReload)
	g("config_reload_time_ms", &s.ConfigReloadTimeMs)
	c("update_attempt", &s.UpdateAttempt)
	c("update_empty", &s.UpdateEmpty)
	c("update_failure", &s.UpdateFailure)
	c("update_rejected", &s.UpdateRejected)
	c("update_success", &s.UpdateSuccess)
	g("update_time", &s.UpdateTime)
	g("version", &s.Version)
}

// RouteProviders are the process's route providers by route_config_name. Safe for
// concurrent use.
type RouteProviders struct {
	mu sync.Mutex
	m  map[string]*RouteProvider
}

// NewRouteProviders makes an empty set.
func NewRouteProviders() *RouteProviders {
	return &RouteProviders{m: map[string]*RouteProvider{}}
}

// Get returns the provider of name, making it (with the connection manager's stat_prefix
// and the subscription's initial fetch timeout) if there is none.
func (r *RouteProviders) Get(name, statPrefix string, initialFetchTimeout time.Duration) *RouteProvider {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.m[name]; p != nil {
		return p
	}
	p := &RouteProvider{name: name, statPrefix: statPrefix, InitialFetchTimeout: initialFetchTimeout}
	r.m[name] = p
	return p
}

// Lookup returns the provider of name, or nil.
func (r *RouteProviders) Lookup(name string) *RouteProvider {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[name]
}

// Drop forgets the provider of name once nothing names it: a later Get makes a new one,
// empty. Connection managers still holding the old one (a draining listener) keep its
// last table.
func (r *RouteProviders) Drop(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, name)
}

// Names are the providers' names, sorted.
func (r *RouteProviders) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.m))
	for n := range r.m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

package manager

import (
	"errors"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-proxy/portico/config"
	"github.com/portico-proxy/portico/config/xds"
	"github.com/portico-proxy/portico/filters/network/httpconnmgr"
)

// RDS: the route configurations of HTTP connection managers configured with rds, on the
// ADS stream. Each route_config_name that a listener (static, active, or warming) names
// has an entry here, with the process's RouteProvider of that name (shared by every
// connection manager naming it, across listener versions): a good RouteConfiguration
// replaces the provider's table, a rejected one keeps the last good table and is NACKed.
// A name no listener names any more loses its entry (and the subscription its name).
//
// Listener warming (Envoy): an LDS listener whose route configurations have not all
// arrived is warming: it is not put into the server until they have, or their
// initial_fetch_timeout has passed (it then starts without routes: 404 NR), and the
// version it replaces keeps serving meanwhile.

// rdsState is the manager's RDS side; it is changed on the manager's goroutine, under
// m.mu for the admin's reads.
type rdsState struct {
	routes  map[string]*rdsEntry        // by route_config_name
	warming map[string]*warmingListener // LDS listeners waiting for their routes
}

// warmingListener is a listener version waiting for its route configurations.
type warmingListener struct {
	r     *config.ListenerResource
	since time.Time
}

// rdsEntry is one route configuration subscription.
type rdsEntry struct {
	p       *httpconnmgr.RouteProvider
	r       *config.RouteResource // the last good version; nil before the first
	updated time.Time
	failed  *failure
	// ready: the first version arrived (or was rejected), or initial_fetch_timeout passed.
	ready bool
	timer *time.Timer
}

// staticRouteNames are the route configs the bootstrap's static listeners name.
func (m *Manager) staticRouteNames() []string {
	var names []string
	for _, r := range m.cfg.StaticListeners {
		for _, n := range r.RouteConfigNames() {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	return names
}

// routeNames are the route configuration names the current listeners need, sorted; the
// ADS stream requests exactly these. It also makes the entries of new names and drops
// those of names nothing refers to any more.
func (m *Manager) routeNames() []string {
	var names []string
	if !m.do(func() { names = m.syncRoutes() }) {
		return nil
	}
	return names
}

// syncRoutes (manager's goroutine) makes the set of entries that of the names the
// static, active and warming listeners refer to, and returns those names, sorted.
func (m *Manager) syncRoutes() []string {
	want := map[string]bool{}
	add := func(r *config.ListenerResource) {
		for _, n := range r.RouteConfigNames() {
			want[n] = true
		}
	}
	for _, r := range m.cfg.StaticListeners {
		add(r)
	}
	for _, r := range m.listeners {
		add(r)
	}
	for _, w := range m.rds.warming {
		add(w.r)
	}
	for n := range want {
		m.ensureRoute(n)
	}
	for n, e := range m.rds.routes {
		if want[n] {
			continue
		}
		// Nothing refers to it: the subscription drops the name and the provider goes
		// (connections of draining listeners keep the table they hold).
		if e.timer != nil {
			e.timer.Stop()
		}
		m.srv.RemoveStatsSource(e.p)
		m.cfg.RouteProviders.Drop(n)
		m.mu.Lock()
		delete(m.rds.routes, n)
		m.mu.Unlock()
		m.log.Info("rds: route configuration no longer referenced; removed", "route_config", n)
	}
	return sortedKeys(want)
}

// ensureRoute (manager's goroutine) makes the entry of name if there is none, with its
// initial fetch timer.
func (m *Manager) ensureRoute(name string) *rdsEntry {
	if e := m.rds.routes[name]; e != nil {
		return e
	}
	p := m.cfg.RouteProviders.Get(name, "", 0)
	e := &rdsEntry{p: p}
	if d := p.InitialFetchTimeout; d > 0 {
		e.timer = time.AfterFunc(d, func() {
			select {
			case m.ops <- func() { m.routeTimedOut(name, e) }:
			case <-m.ctx.Done():
			}
		})
	}
	m.srv.AddStatsSource(p)
	m.mu.Lock()
	if m.rds.routes == nil {
		m.rds.routes = map[string]*rdsEntry{}
	}
	m.rds.routes[name] = e
	m.mu.Unlock()
	return e
}

// routeTimedOut ends the initial fetch of a route configuration that has not come: the
// listeners waiting for it start without it (404 NR until it arrives).
func (m *Manager) routeTimedOut(name string, e *rdsEntry) {
	if m.rds.routes[name] != e || e.ready {
		return
	}
	m.log.Warn("rds: initial fetch timed out; the listeners naming it start without routes (404)", "route_config", name, "initial_fetch_timeout", e.p.InitialFetchTimeout.String())
	e.ready = true
	m.promoteWarming()
}

// startRoutes subscribes to the route configurations the listeners there are at
// StartXDS name (static ones, and those of an LDS file); WaitInitial then waits for them
// before the workers start.
func (m *Manager) startRoutes() error {
	if m.cfg.ADS == nil {
		return nil
	}
	names := m.routeNames()
	if len(names) == 0 {
		return nil
	}
	if _, err := m.xdsClientFor(m.cfg.ADS, xds.RouteType); err != nil {
		return err
	}
	m.resubscribe(xds.RouteType, names)
	return nil
}

// resubscribeRoutes (manager's goroutine) is routeNames and the resubscription, after
// each LDS version (a file's or a server's).
func (m *Manager) resubscribeRoutes() { m.resubscribe(xds.RouteType, m.syncRoutes()) }

// routeFetchTimeout is the longest initial_fetch_timeout of the route configurations
// subscribed to (0: one waits as long as it takes).
func (m *Manager) routeFetchTimeout() time.Duration {
	var d time.Duration
	for _, n := range m.cfg.RouteProviders.Names() {
		p := m.cfg.RouteProviders.Lookup(n)
		if p == nil {
			continue
		}
		if p.InitialFetchTimeout == 0 {
			return 0
		}
		d = max(d, p.InitialFetchTimeout)
	}
	return d
}

// applyRoutes applies an RDS response; it returns the NACK's error, or nil.
func (m *Manager) applyRoutes(version string, res []*anypb.Any) error {
	var err error
	if !m.do(func() { err = m.applyRoutesNow(version, res) }) {
		return errStopped
	}
	return err
}

// applyRoutesNow (manager's goroutine) applies each good RouteConfiguration of a
// response to its provider; the rejected ones keep their last good version and make the
// response's NACK, their errors one per line.
func (m *Manager) applyRoutesNow(version string, res []*anypb.Any) error {
	now := time.Now()
	wanted := map[string]bool{}
	prev := map[string]*config.RouteResource{}
	for n, e := range m.rds.routes {
		wanted[n] = true
		if e.r != nil {
			prev[n] = e.r
		}
	}
	u, err := config.ParseRouteResources("rds", version, res, m.opts, wanted, prev)
	if err != nil {
		for _, e := range m.rds.routes {
			e.p.Stats.UpdateAttempt.Inc()
			e.p.Stats.UpdateRejected.Inc()
			e.ready = true
		}
		m.promoteWarming()
		m.log.Warn("rds: response rejected", "version", version, "err", err.Error())
		return err
	}
	for _, w := range u.Warnings {
		m.log.Warn("rds: " + w)
	}
	if len(u.Ignored) > 0 {
		m.log.Debug("rds: route configurations nobody requested are ignored", "names", strings.Join(u.Ignored, ","))
	}
	for _, r := range u.Routes {
		e := m.rds.routes[r.Name]
		if e == nil {
			continue
		}
		st := &e.p.Stats
		st.UpdateAttempt.Inc()
		st.UpdateSuccess.Inc()
		st.UpdateTime.Set(now.UnixMilli())
		st.Version.Set(versionHash(r.Version))
		if r.Change != config.Unchanged || e.r == nil {
			e.p.Set(r.Table)
			st.ConfigReload.Inc()
			st.ConfigReloadTimeMs.Set(now.UnixMilli())
			m.log.Info("rds: route configuration applied", "route_config", r.Name, "version", r.Version)
		}
		m.mu.Lock()
		if r.Change != config.Unchanged || e.r == nil {
			e.updated = now
		}
		e.r, e.failed = r, nil
		m.mu.Unlock()
		e.ready = true
	}
	var errs []string
	for i := range u.Errors {
		re := &u.Errors[i]
		errs = append(errs, re.Error())
		e := m.rds.routes[re.Name]
		if e == nil {
			continue
		}
		e.p.Stats.UpdateAttempt.Inc()
		e.p.Stats.UpdateRejected.Inc()
		m.mu.Lock()
		e.failed = &failure{err: re, when: now}
		m.mu.Unlock()
		e.ready = true // Envoy: a rejected update ends the initial fetch too
	}
	if len(u.Routes)+len(u.Errors) == 0 && len(m.rds.routes) == 1 {
		// Envoy's update_empty: a response without the one route configuration asked
		// for (with more names, a response lacking one is not an update of it).
		for _, e := range m.rds.routes {
			e.p.Stats.UpdateAttempt.Inc()
			e.p.Stats.UpdateSuccess.Inc()
			e.p.Stats.UpdateEmpty.Inc()
			e.ready = true
		}
	}
	m.promoteWarming()
	if len(errs) > 0 {
		msg := strings.Join(errs, "\n")
		m.log.Warn("rds: " + msg)
		return errors.New(msg)
	}
	return nil
}

// warmListener (manager's goroutine, from applyListeners) decides whether a good new
// version r of an LDS listener must warm: some route configuration it names has not had
// its initial fetch yet. It then holds r (replacing a warming version of the same name,
// whose files it closes) and reports true; the version prev stays in the server until r
// is put in by promoteWarming. An older warming version is let go in any case.
func (m *Manager) warmListener(prev, r *config.ListenerResource) bool {
	m.dropWarming(r.Name, prev)
	if r.Change == config.Unchanged && prev != nil {
		return false
	}
	warm := false
	for _, n := range r.RouteConfigNames() {
		if !m.ensureRoute(n).ready {
			warm = true
		}
	}
	if !warm {
		return false
	}
	m.mu.Lock()
	if m.rds.warming == nil {
		m.rds.warming = map[string]*warmingListener{}
	}
	m.rds.warming[r.Name] = &warmingListener{r: r, since: time.Now()}
	m.mu.Unlock()
	m.log.Info("lds: listener warming until its route configurations arrive", "listener", r.Name, "route_configs", strings.Join(r.RouteConfigNames(), ","))
	return true
}

// dropWarming lets go of the warming version of name (never put into the server): what
// it opened beyond prev (the active version, or nil) is closed.
func (m *Manager) dropWarming(name string, prev *config.ListenerResource) {
	w := m.rds.warming[name]
	if w == nil {
		return
	}
	closers, _ := w.r.Released(prev)
	for _, c := range closers {
		c.Close()
	}
	m.mu.Lock()
	delete(m.rds.warming, name)
	m.mu.Unlock()
}

// dropRemovedWarming (from applyListeners, after a version is applied) lets go of the
// warming listeners the version no longer has (state of the world).
func (m *Manager) dropRemovedWarming(u *config.ListenerUpdate) {
	if len(m.rds.warming) == 0 {
		return
	}
	present := map[string]bool{}
	for _, r := range u.Listeners {
		present[r.Name] = true
	}
	for _, e := range u.Errors {
		if e.Name == "" {
			return // a resource without a readable name: nothing is removed (as Removed)
		}
		present[e.Name] = true
	}
	for name := range m.rds.warming {
		if !present[name] || slices.Contains(u.Removed, name) {
			m.dropWarming(name, m.listeners[name])
			m.log.Info("lds: warming listener removed", "listener", name)
		}
	}
}

// promoteWarming puts into the server each warming listener whose route configurations
// are all ready.
func (m *Manager) promoteWarming() {
	for _, name := range sortedKeys(m.rds.warming) {
		w := m.rds.warming[name].r
		ready := true
		for _, n := range w.RouteConfigNames() {
			if e := m.rds.routes[n]; e == nil || !e.ready {
				ready = false
			}
		}
		if !ready {
			continue
		}
		m.mu.Lock()
		delete(m.rds.warming, name)
		m.mu.Unlock()
		prev := m.listeners[name]
		if err := m.applyListener(prev, w); err != nil {
			m.lm.createFailure.Inc()
			m.log.Error("lds: a warmed listener could not be added", "listener", name, "err", err)
			closers, _ := w.Released(prev)
			for _, c := range closers {
				c.Close()
			}
			m.mu.Lock()
			m.lFailed[name] = failure{err: w.Rejected(err), when: time.Now()}
			m.mu.Unlock()
			continue
		}
		m.mu.Lock()
		m.listeners[name] = w
		m.lUpdated[name] = time.Now()
		delete(m.lFailed, name)
		m.mu.Unlock()
		m.log.Info("lds: listener warmed", "listener", name)
	}
}

// routeStreamFailure counts a failed stream in every route configuration's
// update_failure (Envoy counts it per subscription). Any goroutine.
func (m *Manager) routeStreamFailure() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.rds.routes {
		e.p.Stats.UpdateFailure.Inc()
	}
}

// warmingCount is listener_manager.total_listeners_warming.
func (m *Manager) warmingCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.rds.warming)
}

// routesDumpState adds the route configurations and warming listeners to st (under
// m.mu).
func (m *Manager) routesDumpState(st *config.DumpState) {
	for _, name := range sortedKeys(m.rds.warming) {
		w := m.rds.warming[name]
		st.WarmingListeners = append(st.WarmingListeners, config.DumpEntry{Name: name, Version: w.r.Version, LastUpdated: w.since, Resource: w.r.Message()})
	}
	st.HasRDS = len(m.rds.routes) > 0
	if !st.HasRDS {
		return
	}
	for _, r := range m.cfg.StaticListeners {
		st.RouteListeners = append(st.RouteListeners, config.DumpEntry{Name: r.Name, LastUpdated: m.cfg.LoadedAt(), Resource: r.Message()})
	}
	for _, name := range sortedKeys(m.listeners) {
		st.RouteListeners = append(st.RouteListeners, config.DumpEntry{Name: name, LastUpdated: m.lUpdated[name], Resource: m.listeners[name].Message()})
	}
	for _, name := range sortedKeys(m.rds.routes) {
		e := m.rds.routes[name]
		d := config.RouteDumpEntry{Name: name, LastUpdated: e.updated}
		if e.r != nil {
			d.Version, d.Resource = e.r.Version, e.r.Message()
		}
		if f := e.failed; f != nil {
			d.Failure = &config.DumpFailure{Name: name, Details: f.err.Error(), Failed: f.err.Failed, LastUpdateAttempt: f.when}
		}
		st.DynamicRoutes = append(st.DynamicRoutes, d)
	}
}

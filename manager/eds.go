package manager

import (
	"net/netip"
	"slices"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-proxy/portico/config"
	"github.com/portico-proxy/portico/config/xds"
	"github.com/portico-proxy/portico/engine"
)

// EDS: the endpoints of clusters of type EDS (ClusterLoadAssignment resources over the
// ADS stream, or a stream of their own to the server an api_config_source names), as
// Envoy's EDS clusters and cluster manager handle them:
//
//   - Each stream requests exactly the service names of the current EDS clusters,
//     static and CDS, that take their endpoints from it (syncEDS after each CDS update;
//     endpointNames for the ADS stream).
//   - An assignment applies to every cluster with its service name (whichever server it
//     came from: names are the control planes' to keep apart), through
//     engine.Cluster.UpdateHosts (hosts that stay keep their *Host, so their
//     connections, pools, health-check and outlier state live on). A rejected one
//     keeps the clusters' last good hosts; the response is NACKed naming it while the
//     good ones apply.
//   - EDS is not state of the world for removal: a service name a response lacks keeps
//     its hosts. An assignment goes when no cluster needs its name any more.
//   - The last good assignment of each name is kept, so that a new version of a CDS
//     cluster gets its hosts at once: a server does not resend an unchanged assignment.
//   - A CDS cluster without a kept assignment warms (Envoy's warming_clusters): it is
//     published once its first assignment arrives, or without hosts once its
//     initial_fetch_timeout passes; meanwhile the version it replaces serves.

// edsState is the manager's EDS side, guarded by Manager.mu.
type edsState struct {
	cache   map[string]*config.EndpointResource // last good assignment, by service name
	updated map[string]time.Time                // when each cached assignment came
	stats   map[string]*edsStats                // by cluster name
	warming map[string]*warmingCluster          // by cluster name
	servers map[string]*config.XDSServer        // api_config_source servers asked for names, by serverKey
}

// warmingCluster is a CDS cluster version waiting for its first assignment.
type warmingCluster struct {
	r     *config.ClusterResource
	timer *time.Timer // initial_fetch_timeout; nil when it waits as long as it takes
}

// edsStats are Envoy's per-cluster EDS subscription stats (cluster.<name>.update_*).
type edsStats struct {
	name                                       string
	attempt, success, rejected, empty, failure engine.Counter
	version                                    engine.Gauge
}

func (*edsStats) StatsFamily() string        { return "cluster" }
func (*edsStats) StatsProcessWide() bool     { return true }
func (s *edsStats) StatsLabels() [][2]string { return [][2]string{{"cluster", s.name}} }

func (s *edsStats) VisitStats(_ int, v engine.StatVisitor) {
	c := func(n string, x *engine.Counter) { v(n, engine.KindCounter, float64(x.Value())) }
	c("update_attempt", &s.attempt)
	c("update_empty", &s.empty)
	c("update_failure", &s.failure)
	c("update_rejected", &s.rejected)
	c("update_success", &s.success)
	v("version", engine.KindGauge, float64(s.version.Value()))
}

// edsStatsLocked returns the EDS stats of a cluster, registering them at first use.
func (m *Manager) edsStatsLocked(name string) *edsStats {
	if m.eds.stats == nil {
		m.eds.stats = map[string]*edsStats{}
	}
	st := m.eds.stats[name]
	if st == nil {
		st = &edsStats{name: name}
		m.eds.stats[name] = st
		m.srv.AddStatsSource(st)
	}
	return st
}

// edsSource is the eds_config of the first EDS cluster there is before any xDS
// response (static, or from a CDS file); nil without one.
func (m *Manager) edsSource() *config.XDSSubscription {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ts := range m.edsTargetsLocked() {
		for _, t := range ts {
			if t.src != nil {
				return t.src
			}
		}
	}
	return nil
}

// startEDS subscribes to the assignments of the EDS clusters there are before any xDS
// response: static ones, and those of a CDS file (CDS over xDS brings its own: applyClusters
// resubscribes).
func (m *Manager) startEDS() error {
	m.mu.Lock()
	for _, r := range m.cfg.StaticClusters {
		if r.EDS != nil {
			m.edsStatsLocked(r.Name)
		}
	}
	m.mu.Unlock()
	return m.syncEDS()
}

// syncEDS makes the ADS stream request the service names the EDS clusters need now,
// starting the stream if nothing else did (EDS clusters of a CDS file, with LDS and CDS
// not over xDS).
func (m *Manager) syncEDS() error {
	names := m.endpointNames()
	if len(names) > 0 && m.cfg.ADS != nil && m.xds.clients != nil {
		if _, err := m.xdsClientFor(m.cfg.ADS, xds.EndpointType); err != nil {
			return err
		}
	}
	m.resubscribe(xds.EndpointType, names)
	return m.syncOwnEDS()
}

// syncOwnEDS does what syncEDS does for the EDS clusters whose eds_config names a server
// of its own (api_config_source): a stream for EDS alone to each, asking for the names of
// its clusters; a server no cluster names any more is asked for none.
func (m *Manager) syncOwnEDS() error {
	if m.xds.clients == nil {
		return nil // before StartXDS: it calls again
	}
	m.mu.Lock()
	want := map[string]*config.XDSServer{}
	names := map[string][]string{}
	for name, ts := range m.edsTargetsLocked() {
		for _, t := range ts {
			if t.src == nil || t.src.Server.Aggregated {
				continue
			}
			key := serverKey(t.src.Server, xds.EndpointType)
			want[key] = t.src.Server
			if !slices.Contains(names[key], name) {
				names[key] = append(names[key], name)
			}
		}
	}
	for key, srv := range m.eds.servers {
		if want[key] == nil {
			want[key], names[key] = srv, nil // subscribed before: now asked for nothing
		}
	}
	m.eds.servers = map[string]*config.XDSServer{}
	for key, srv := range want {
		if names[key] != nil {
			m.eds.servers[key] = srv
		}
	}
	m.mu.Unlock()
	for key, srv := range want {
		c, err := m.xdsClientFor(srv, xds.EndpointType)
		if err != nil {
			return err
		}
		if len(names[key]) > 0 {
			m.xds.subscribed[xds.EndpointType].Store(true)
		}
		c.c.Subscribe(xds.EndpointType, names[key]) // sorted by Subscribe
	}
	return nil
}

// edsTarget is a cluster that takes a service name's assignment.
type edsTarget struct {
	name    string
	c       *engine.Cluster
	warming *warmingCluster // set when it is a warming CDS version
	src     *config.XDSSubscription
}

// edsTargetsLocked lists the EDS clusters by service name: static, CDS, warming.
func (m *Manager) edsTargetsLocked() map[string][]edsTarget {
	out := map[string][]edsTarget{}
	add := func(r *config.ClusterResource, w *warmingCluster) {
		if r.EDS != nil {
			out[r.EDS.ServiceName] = append(out[r.EDS.ServiceName], edsTarget{name: r.Name, c: r.Cluster, warming: w, src: r.EDS.Source})
		}
	}
	for _, r := range m.cfg.StaticClusters {
		add(r, nil)
	}
	for _, r := range m.clusters {
		add(r, nil)
	}
	for _, w := range m.eds.warming {
		add(w.r, w)
	}
	return out
}

// endpointNames are the EDS service names the current clusters need of the ADS stream
// (eds_config `ads: {}`), sorted; the ADS stream requests exactly these.
func (m *Manager) endpointNames() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	targets := m.edsTargetsLocked()
	names := make([]string, 0, len(targets))
	for n, ts := range targets {
		for _, t := range ts {
			if t.src == nil || t.src.Server.Aggregated {
				names = append(names, n)
				break
			}
		}
	}
	sort.Strings(names)
	return names
}

// overlay puts the warming cluster versions in a copy of the current clusters, so that
// CDS compares the next version with the one that waits (under Manager.mu).
func (e *edsState) overlay(out map[string]*config.ClusterResource) {
	for name, w := range e.warming {
		out[name] = w.r
	}
}

// dumpWarming lists the warming clusters for /config_dump's dynamic_warming_clusters
// (under Manager.mu).
func (e *edsState) dumpWarming() []config.DumpEntry {
	var out []config.DumpEntry
	for _, name := range sortedKeys(e.warming) {
		r := e.warming[name].r
		out = append(out, config.DumpEntry{Name: name, Version: r.Version, Resource: r.Message()})
	}
	return out
}

// dumpEndpoints lists the assignments in use for /config_dump?include_eds (under
// Manager.mu).
func (e *edsState) dumpEndpoints() []config.DumpEntry {
	var out []config.DumpEntry
	for _, name := range sortedKeys(e.cache) {
		r := e.cache[name]
		out = append(out, config.DumpEntry{Name: name, Version: r.Version, LastUpdated: e.updated[name], Resource: r.Message()})
	}
	return out
}

// warmingClusters is cluster_manager.warming_clusters.
func (m *Manager) warmingClusters() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.eds.warming)
}

// edsWarm decides, on the manager's goroutine, what a CDS cluster version r needs
// before it is published. It reports true when r waits (warms) instead: an EDS cluster
// with no kept assignment, or the same version as one already warming. An EDS cluster
// whose assignment is kept gets its hosts now and is published at once.
func (m *Manager) edsWarm(r *config.ClusterResource) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.eds.warming[r.Name]
	if r.Change == config.Unchanged {
		return w != nil // the version that warms, again: it goes on waiting
	}
	if w != nil {
		// Replaced while it warmed: that version never ran, so nothing of it to retire
		// but what it opened.
		m.dropWarmingLocked(r.Name, w)
	}
	if r.EDS == nil {
		return false
	}
	m.edsStatsLocked(r.Name)
	if cla := m.eds.cache[r.EDS.ServiceName]; cla != nil {
		setEndpoints(r.Cluster, cla.Endpoints)
		return false
	}
	w = &warmingCluster{r: r}
	if src := r.EDS.Source; src != nil && src.InitialFetchTimeout > 0 {
		w.timer = time.AfterFunc(src.InitialFetchTimeout, func() {
			m.post(func() { m.warmTimeout(w) })
		})
	}
	if m.eds.warming == nil {
		m.eds.warming = map[string]*warmingCluster{}
	}
	m.eds.warming[r.Name] = w
	m.log.Info("cds: cluster warming; it is published with its first endpoints", "cluster", r.Name, "service_name", r.EDS.ServiceName)
	return true
}

// dropWarmingLocked forgets a warming version that will not be published.
func (m *Manager) dropWarmingLocked(name string, w *warmingCluster) {
	if w.timer != nil {
		w.timer.Stop()
	}
	delete(m.eds.warming, name)
	for _, c := range w.r.Closers {
		c.Close()
	}
}

// edsUnwarm drops the warming version of a cluster CDS removed; true if there was one.
func (m *Manager) edsUnwarm(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.eds.warming[name]
	if w == nil {
		return false
	}
	m.dropWarmingLocked(name, w)
	m.log.Info("cds: warming cluster removed", "cluster", name)
	return true
}

// warmTimeout publishes a cluster whose first assignment did not come within its
// initial_fetch_timeout, without hosts, as Envoy does.
func (m *Manager) warmTimeout(w *warmingCluster) {
	m.mu.Lock()
	still := m.eds.warming[w.r.Name] == w
	if still {
		delete(m.eds.warming, w.r.Name)
	}
	prev := m.clusters[w.r.Name]
	m.mu.Unlock()
	if !still {
		return
	}
	m.log.Warn("cds: cluster warmed without endpoints: its initial_fetch_timeout passed", "cluster", w.r.Name,
		"service_name", w.r.EDS.ServiceName, "initial_fetch_timeout", w.r.EDS.Source.InitialFetchTimeout.String())
	m.publishWarmed(prev, w.r)
	m.warmedOut()
}

// warmedOut follows the publication of warmed versions: the versions they replaced may
// have been the last to need a service name, whose kept assignment and request go.
func (m *Manager) warmedOut() { m.edsClustersChanged() }

// publishWarmed publishes a cluster version that warmed.
func (m *Manager) publishWarmed(prev, r *config.ClusterResource) {
	now := time.Now()
	if err := m.publishCluster(prev, r, now); err != nil {
		m.mu.Lock()
		m.cFailed[r.Name] = failure{err: r.Rejected(err), when: now}
		m.mu.Unlock()
		m.log.Error("cds: publishing a warmed cluster", "cluster", r.Name, "err", err)
	}
}

// endpointStreamFailure counts a failed stream to s in the update_failure of every EDS
// cluster that takes its endpoints from s (Envoy counts it per subscription). Any
// goroutine.
func (m *Manager) endpointStreamFailure(s *config.XDSServer) {
	key := serverKey(s, xds.EndpointType)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ts := range m.edsTargetsLocked() {
		for _, t := range ts {
			if t.src != nil && serverKey(t.src.Server, xds.EndpointType) == key {
				m.edsStatsLocked(t.name).failure.Inc()
			}
		}
	}
}

// post runs fn on the manager's goroutine without waiting for it (not at all once the
// manager stopped).
func (m *Manager) post(fn func()) {
	select {
	case m.ops <- fn:
	case <-m.ctx.Done():
	}
}

// edsClustersChanged, after a CDS update, drops the EDS stats of the clusters gone and
// the kept assignments no cluster needs any more, and requests what the clusters need
// now (after every CDS version, a file's or a server's).
func (m *Manager) edsClustersChanged() {
	m.edsPrune()
	if err := m.syncEDS(); err != nil {
		m.log.Error("eds: cannot subscribe to the EDS clusters' endpoints", "err", err)
	}
}

func (m *Manager) edsPrune() {
	m.mu.Lock()
	defer m.mu.Unlock()
	targets := m.edsTargetsLocked()
	clusters := map[string]bool{}
	for _, ts := range targets {
		for _, t := range ts {
			clusters[t.name] = true
		}
	}
	for name, st := range m.eds.stats {
		if !clusters[name] {
			m.srv.RemoveStatsSource(st)
			delete(m.eds.stats, name)
		}
	}
	for name := range m.eds.cache {
		if _, ok := targets[name]; !ok {
			delete(m.eds.cache, name)
			delete(m.eds.updated, name)
		}
	}
}

// applyEndpoints applies an EDS response; it returns the NACK's error, or nil.
func (m *Manager) applyEndpoints(version string, res []*anypb.Any) error {
	u, err := config.ParseEndpointResources("eds", version, res)
	if err != nil {
		m.log.Warn("eds: update rejected", "err", err.Error())
		return err
	}
	var nack error
	if !m.do(func() { nack = m.applyEndpointUpdate(u) }) {
		return errStopped
	}
	return nack
}

// applyEndpointUpdate applies the good assignments of an EDS response to the clusters
// that take them, on the manager's goroutine, and returns the rejection of the others.
func (m *Manager) applyEndpointUpdate(u *config.EndpointUpdate) error {
	for _, w := range u.Warnings {
		m.log.Warn("eds: " + w)
	}
	m.mu.Lock()
	targets := m.edsTargetsLocked()
	var warmed []*config.ClusterResource
	for _, r := range u.Endpoints {
		ts := targets[r.Name]
		if len(ts) == 0 {
			continue // not requested (any more): Envoy ignores it too
		}
		if m.eds.cache == nil {
			m.eds.cache, m.eds.updated = map[string]*config.EndpointResource{}, map[string]time.Time{}
		}
		// A state-of-the-world server resends every assignment asked for with each
		// version; one that did not change leaves the host sets alone (Envoy:
		// update_no_rebuild), though it counts as a success.
		same := m.eds.cache[r.Name] != nil && proto.Equal(m.eds.cache[r.Name].Message(), r.Message())
		m.eds.cache[r.Name] = r
		m.eds.updated[r.Name] = time.Now()
		for _, t := range ts {
			st := m.edsStatsLocked(t.name)
			st.attempt.Inc()
			st.success.Inc()
			if len(r.Endpoints) == 0 {
				st.empty.Inc()
			}
			st.version.Set(versionHash(r.Version))
			if !same || t.warming != nil {
				setEndpoints(t.c, r.Endpoints)
			}
			if t.warming != nil && m.eds.warming[t.name] == t.warming {
				if t.warming.timer != nil {
					t.warming.timer.Stop()
				}
				delete(m.eds.warming, t.name)
				warmed = append(warmed, t.warming.r)
			}
		}
	}
	for _, e := range u.Errors {
		for _, t := range targets[e.Name] {
			st := m.edsStatsLocked(t.name)
			st.attempt.Inc()
			st.rejected.Inc()
		}
	}
	m.mu.Unlock()
	for _, r := range warmed {
		m.log.Info("cds: cluster warmed", "cluster", r.Name, "hosts", len(r.Cluster.Hosts()))
		m.mu.Lock()
		prev := m.clusters[r.Name]
		m.mu.Unlock()
		m.publishWarmed(prev, r)
	}
	if len(warmed) > 0 {
		m.warmedOut()
	}
	if err := config.EndpointsError(u.Errors); err != nil {
		m.log.Warn("eds: update rejected in part; the rejected assignments keep their last good endpoints", "err", err.Error())
		return err
	}
	return nil
}

// hostKey is what makes two endpoints the same host.
type hostKey struct {
	addr     netip.AddrPort
	weight   uint32
	hostname string
}

// setEndpoints gives a cluster an assignment's endpoints, keeping the *Host of those it
// already has (their connections, pools and health state stay).
func setEndpoints(c *engine.Cluster, eps []engine.Endpoint) {
	old := map[hostKey]*engine.Host{}
	for _, h := range c.Hosts() {
		old[hostKey{h.Address(), h.Weight(), h.Hostname()}] = h
	}
	hosts := make([]*engine.Host, 0, len(eps))
	for _, e := range eps {
		if h := old[hostKey{e.Address, e.Weight, e.Hostname}]; h != nil {
			hosts = append(hosts, h)
			continue
		}
		hosts = append(hosts, engine.NewHost(e.Address, e.Weight, e.Hostname, c.Workers()))
	}
	c.UpdateHosts(hosts)
}

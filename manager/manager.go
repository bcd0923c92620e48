// Package manager is Envoy's listener manager and cluster manager for dynamic resources:
// it applies new versions of LDS and CDS resources (today from files, through config's
// per-resource parsing and watcher) to a running engine.Server, resource by resource,
// keeps the last good version of each, counts what it did with Envoy's stat names
// (listener_manager.*, cluster_manager.*), and answers the admin's /config_dump,
// /drain_listeners and /healthcheck hooks (Control).
package manager

import (
	"context"
	"errors"
	"hash/fnv"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/portico-proxy/portico/config"
	"github.com/portico-proxy/portico/engine"
)

// Manager is Envoy's listener manager and cluster manager for resources from files
// (dynamic_resources lds_config / cds_config with path_config_source): it applies each
// new version of a file to the engine resource by resource, keeps the last good version
// of every resource that a later version gets wrong, and counts what it did with Envoy's
// stat names. Every change to the server runs on the manager's own goroutine (run), one at
// a time; the admin reads its state under mu.
type Manager struct {
	srv       *engine.Server
	cfg       *config.Config
	log       *slog.Logger
	workers   int
	drainTime time.Duration
	opts      config.Options

	// ops are changes to apply, in order, on the manager's goroutine.
	ops  chan func()
	ctx  context.Context // the runners' (DNS, health checks) parent context
	quit context.CancelFunc
	done chan struct{}
	wg   sync.WaitGroup // runners and watchers

	mu        sync.Mutex // guards what follows against the admin's reads
	listeners map[string]*config.ListenerResource
	clusters  map[string]*config.ClusterResource
	lUpdated  map[string]time.Time
	cUpdated  map[string]time.Time
	lFailed   map[string]failure
	cFailed   map[string]failure
	draining  []drainingListener
	ldsVer    string
	cdsVer    string
	cancels   map[*config.ClusterResource]context.CancelFunc

	lm listenerManagerStats
	cm clusterManagerStats

	// retiring, while a CDS version is applied, collects the stats sources of the
	// versions it retires, removed in one pass at its end (manager goroutine only).
	retiring *[]engine.StatsSource

	xds      xdsState  // xds.go
	eds      edsState  // eds.go: under mu
	rds      rdsState  // rds.go
	loopOnce sync.Once // the goroutine starts with StartXDS or Start, whichever is first
}

// failure is the last rejected version of a resource (/config_dump's error_state).
type failure struct {
	err  *config.ResourceError
	when time.Time
}

// drainingListener is a listener version that was replaced or removed and still drains
// (/config_dump's draining_state).
type drainingListener struct {
	r     *config.ListenerResource
	until time.Time
}

// subscriptionStats are Envoy's per-subscription stats (lds.*, cds.*).
type subscriptionStats struct {
	updateAttempt, updateSuccess, updateFailure, updateRejected, configReload engine.Counter
	version, updateTime                                                       engine.Gauge
}

func (s *subscriptionStats) visit(prefix string, v engine.StatVisitor) {
	c := func(n string, x *engine.Counter) { v(prefix+n, engine.KindCounter, float64(x.Value())) }
	g := func(n string, x *engine.Gauge) { v(prefix+n, engine.KindGauge, float64(x.Value())) }
	c("config_reload", &s.configReload)
	c("update_attempt", &s.updateAttempt)
	c("update_failure", &s.updateFailure)
	c("update_rejected", &s.updateRejected)
	c("update_success", &s.updateSuccess)
	g("update_time", &s.updateTime)
	g("version", &s.version)
}

// listenerManagerStats are Envoy's listener_manager.* stats.
type listenerManagerStats struct {
	m                                                               *Manager
	added, modified, removed, inPlace, createSuccess, createFailure engine.Counter
	lds                                                             subscriptionStats
	hasLDS                                                          bool
}

func (*listenerManagerStats) StatsFamily() string      { return "listener_manager" }
func (*listenerManagerStats) StatsProcessWide() bool   { return true }
func (*listenerManagerStats) StatsLabels() [][2]string { return nil }

// VisitStats reports the stats (process-wide: the admin visits them once).
func (s *listenerManagerStats) VisitStats(_ int, v engine.StatVisitor) {
	c := func(n string, x *engine.Counter) { v(n, engine.KindCounter, float64(x.Value())) }
	c("listener_added", &s.added)
	c("listener_create_failure", &s.createFailure)
	c("listener_create_success", &s.createSuccess)
	c("listener_in_place_updated", &s.inPlace)
	c("listener_modified", &s.modified)
	c("listener_removed", &s.removed)
	drainingListeners, drainingChains := s.m.srv.DrainingCounts()
	v("total_filter_chains_draining", engine.KindGauge, float64(drainingChains))
	v("total_listeners_active", engine.KindGauge, float64(len(s.m.srv.Listeners())))
	v("total_listeners_draining", engine.KindGauge, float64(drainingListeners))
	v("total_listeners_warming", engine.KindGauge, float64(s.m.warmingCount())) // rds.go
	v("workers_started", engine.KindGauge, 1)
	if s.hasLDS {
		s.lds.visit("lds.", v)
	}
}

// clusterManagerStats are Envoy's cluster_manager.* stats.
type clusterManagerStats struct {
	m                        *Manager
	added, modified, removed engine.Counter
	cds                      subscriptionStats
	hasCDS                   bool
}

func (*clusterManagerStats) StatsFamily() string      { return "cluster_manager" }
func (*clusterManagerStats) StatsProcessWide() bool   { return true }
func (*clusterManagerStats) StatsLabels() [][2]string { return nil }

func (s *clusterManagerStats) VisitStats(_ int, v engine.StatVisitor) {
	c := func(n string, x *engine.Counter) { v(n, engine.KindCounter, float64(x.Value())) }
	v("active_clusters", engine.KindGauge, float64(len(s.m.srv.Clusters())))
	c("cluster_added", &s.added)
	c("cluster_modified", &s.modified)
	c("cluster_removed", &s.removed)
	v("warming_clusters", engine.KindGauge, float64(s.m.warmingClusters())) // eds.go
	if s.hasCDS {
		s.cds.visit("cds.", v)
	}
}

// versionHash is what Envoy's lds.version / cds.version gauges hold: a hash of the
// version_info (Envoy uses xxHash64; this is FNV-1a, shortened to fit a float exactly).
func versionHash(v string) int64 {
	h := fnv.New64a()
	io.WriteString(h, v)
	return int64(h.Sum64() >> 11)
}

// New prepares the manager for cfg on srv; the static resources count as added
// (Envoy counts them in listener_added / cluster_added too).
func New(srv *engine.Server, cfg *config.Config, log *slog.Logger, drainTime time.Duration) *Manager {
	ctx, quit := context.WithCancel(context.Background())
	m := &Manager{
		srv: srv, cfg: cfg, log: log, workers: srv.Concurrency(), drainTime: drainTime,
		opts: config.Options{Clusters: srv.ClusterRegistry(), Static: cfg},
		ops:  make(chan func(), 16), ctx: ctx, quit: quit, done: make(chan struct{}),
		listeners: map[string]*config.ListenerResource{}, clusters: map[string]*config.ClusterResource{},
		lUpdated: map[string]time.Time{}, cUpdated: map[string]time.Time{},
		lFailed: map[string]failure{}, cFailed: map[string]failure{},
		cancels: map[*config.ClusterResource]context.CancelFunc{},
	}
	m.lm.m, m.cm.m = m, m
	m.lm.hasLDS, m.cm.hasCDS = cfg.LDS != nil || cfg.LDSXDS != nil, cfg.CDS != nil || cfg.CDSXDS != nil
	m.lm.added.Add(uint64(len(cfg.Listeners)))
	m.lm.createSuccess.Add(uint64(len(cfg.Listeners) * m.workers))
	m.cm.added.Add(uint64(len(cfg.Clusters)))
	srv.AddStatsSource(&m.lm)
	srv.AddStatsSource(&m.cm)
	return m
}

// ApplyInitial applies the files' contents read with the bootstrap, before the server
// starts: CDS first, so that the listeners find their clusters.
func (m *Manager) ApplyInitial() {
	if u := m.cfg.InitialCDS; u != nil {
		m.applyClusters(u)
	}
	if u := m.cfg.InitialLDS; u != nil {
		m.applyListeners(u)
	}
}

// Start watches the files and runs the manager's goroutine. The watches are in place when
// it returns, so a file replaced from then on is seen.
func (m *Manager) Start() {
	for _, src := range []*config.FileSource{m.cfg.CDS, m.cfg.LDS} {
		if src == nil {
			continue
		}
		reload := m.reloadClusters
		if src == m.cfg.LDS {
			reload = m.reloadListeners
		}
		w, err := config.NewWatcher(src)
		if err != nil {
			m.log.Error("cannot watch a dynamic resource file; its updates will not be applied",
				"field", src.Field, "path", src.Path, "err", err)
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			defer w.Close()
			err := w.Run(m.ctx, func() {
				select {
				case m.ops <- reload:
				case <-m.ctx.Done():
				}
			})
			if err != nil && m.ctx.Err() == nil {
				m.log.Error("watching a dynamic resource file failed; its updates are no longer applied",
					"field", src.Field, "path", src.Path, "err", err)
			}
		}()
	}
	m.startLoop()
}

// startLoop starts the manager's goroutine, once.
func (m *Manager) startLoop() { m.loopOnce.Do(func() { go m.run() }) }

func (m *Manager) run() {
	defer close(m.done)
	for {
		select {
		case op := <-m.ops:
			op()
		case <-m.ctx.Done():
			return
		}
	}
}

// ApplyListeners applies a version of the dynamic listeners that arrived another way than
// a file (xDS: config.ParseListenerResources), on the manager's goroutine, and returns
// the rejection of any of its resources in Envoy's words (for a NACK), or nil. It
// reports errStopped once the manager has stopped.
func (m *Manager) ApplyListeners(u *config.ListenerUpdate) error {
	var err error
	if !m.do(func() { err = m.applyListeners(u) }) {
		return errStopped
	}
	return err
}

// ApplyClusters is ApplyListeners for clusters.
func (m *Manager) ApplyClusters(u *config.ClusterUpdate) error {
	var err error
	if !m.do(func() { err = m.applyClusters(u) }) {
		return errStopped
	}
	return err
}

// errStopped is what updates get once the process is shutting down.
var errStopped = errors.New("manager: stopped")

// do runs fn on the manager's goroutine and waits for it; false if the manager stopped.
func (m *Manager) do(fn func()) bool {
	ran := make(chan struct{})
	select {
	case m.ops <- func() { fn(); close(ran) }:
	case <-m.ctx.Done():
		return false
	}
	select {
	case <-ran:
		return true
	case <-m.done:
		return false
	}
}

// Stop ends the watchers and the manager's goroutine (an update in progress finishes
// first), then the runners of the dynamic clusters.
func (m *Manager) Stop() {
	m.quit()
	<-m.done
	m.wg.Wait()
}

// reloadListeners reads the LDS file again and applies it.
func (m *Manager) reloadListeners() {
	start := time.Now()
	u, err := config.ParseListeners(m.cfg.LDS.Path, m.workers, m.opts, m.currentListeners())
	if err != nil {
		m.lm.lds.updateAttempt.Inc()
		m.lm.lds.updateFailure.Inc()
		m.log.Warn("lds: update failed; the listeners stay as they are", "err", err.Error())
		return
	}
	m.applyListeners(u)
	m.log.Info("lds: update applied", "version", u.Version, "listeners", len(u.Listeners),
		"rejected", len(u.Errors), "removed", len(u.Removed), "took", time.Since(start).Round(time.Microsecond).String())
}

// reloadClusters reads the CDS file again and applies it.
func (m *Manager) reloadClusters() {
	u, err := config.ParseClusters(m.cfg.CDS.Path, m.workers, m.opts, m.currentClusters())
	if err != nil {
		m.cm.cds.updateAttempt.Inc()
		m.cm.cds.updateFailure.Inc()
		m.log.Warn("cds: update failed; the clusters stay as they are", "err", err.Error())
		return
	}
	m.applyClusters(u)
	m.log.Info("cds: update applied", "version", u.Version, "clusters", len(u.Clusters),
		"rejected", len(u.Errors), "removed", len(u.Removed))
}

func (m *Manager) currentListeners() map[string]*config.ListenerResource {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]*config.ListenerResource, len(m.listeners))
	for k, v := range m.listeners {
		out[k] = v
	}
	return out
}

func (m *Manager) currentClusters() map[string]*config.ClusterResource {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]*config.ClusterResource, len(m.clusters))
	for k, v := range m.clusters {
		out[k] = v
	}
	m.eds.overlay(out) // eds.go: a warming version is the one the next is compared with
	return out
}

// applyListeners applies an LDS version resource by resource, as Envoy does: the good
// ones are added, updated (in place when only their filter chains changed) or left alone,
// the names the file no longer has are removed, and the rejected ones keep their last good
// version. An error from the engine (an address already in use) rejects that listener
// alone.
func (m *Manager) applyListeners(u *config.ListenerUpdate) error {
	rd := m.begin(&m.lm.lds, "listener", m.lFailed, u.Errors, u.Warnings)
	now := rd.now
	// Removals first: a listener of this version may take the address of one it removes.
	for _, name := range u.Removed {
		prev := m.listeners[name]
		if prev == nil {
			continue
		}
		old := m.srv.Listener(name)
		if err := m.srv.RemoveListener(name); err != nil {
			m.log.Error("lds: removing a listener", "listener", name, "err", err)
			continue
		}
		rd.changed = true
		m.lm.removed.Inc()
		m.retireListener(prev, nil, old)
		m.mu.Lock()
		delete(m.listeners, name)
		delete(m.lUpdated, name)
		delete(m.lFailed, name)
		m.mu.Unlock()
		m.log.Info("lds: listener removed; its connections drain", "listener", name, "drain_time", m.drainTime.String())
	}
	for _, r := range u.Listeners {
		prev := m.listeners[r.Name]
		if m.warmListener(prev, r) { // rds.go: held until its route configs arrive
			rd.changed = true
			continue
		}
		if r.Change == config.Unchanged && prev != nil {
			m.mu.Lock()
			delete(m.lFailed, r.Name)
			m.mu.Unlock()
			continue
		}
		if err := m.applyListener(prev, r); err != nil {
			m.lm.createFailure.Inc()
			rd.reject(r.Rejected(err))
			// What r opened beyond prev (whose kept chains it shares) is not used.
			closers, _ := r.Released(prev)
			for _, c := range closers {
				c.Close()
			}
			continue
		}
		rd.changed = true
		m.mu.Lock()
		m.listeners[r.Name] = r
		m.lUpdated[r.Name] = now
		delete(m.lFailed, r.Name)
		m.mu.Unlock()
	}
	m.dropRemovedWarming(u) // rds.go
	m.resubscribeRoutes()   // rds.go: the route configs the listeners name now
	return rd.finish(u.Version, &m.ldsVer)
}

// applyListener puts one good listener version into the server.
func (m *Manager) applyListener(prev, r *config.ListenerResource) error {
	var draining []any // what the engine drains of prev (retireListener)
	switch {
	case prev == nil:
		if _, err := m.srv.AddListener(r.Config); err != nil {
			return err
		}
		m.lm.added.Inc()
		m.lm.createSuccess.Add(uint64(m.workers))
		m.log.Info("lds: listener added", "listener", r.Name, "address", r.Config.Address.String())
	case r.Change == config.ChainsOnly:
		dropped := r.Drained(prev)
		if err := m.srv.UpdateListenerChains(r.Name, r.Config.FilterChains, dropped); err != nil {
			return err
		}
		for _, c := range dropped {
			draining = append(draining, c)
		}
		m.lm.modified.Inc()
		m.lm.inPlace.Inc()
		m.log.Info("lds: listener filter chains updated in place", "listener", r.Name,
			"kept", len(r.Kept), "draining", len(dropped))
	default:
		old := m.srv.Listener(r.Name)
		if _, err := m.srv.UpdateListener(r.Config); err != nil {
			return err
		}
		draining = append(draining, old)
		m.lm.modified.Inc()
		m.lm.createSuccess.Add(uint64(m.workers))
		m.log.Info("lds: listener updated; the old version drains", "listener", r.Name)
	}
	// Only what prev does not have already: the chains r kept bring theirs along.
	_, added := r.Released(prev)
	for _, src := range added {
		m.srv.AddStatsSource(src)
	}
	for _, run := range r.Runners {
		m.runRunner(m.ctx, run)
	}
	if prev != nil {
		m.retireListener(prev, r, draining...)
	}
	return nil
}

// retireListener lets go of what prev holds that next (nil: prev was removed) does not,
// once prev's connections have had the drain time: its stats sources and its files.
//
// That is when the engine's drain of what prev had there is over (draining: the replaced
// or removed listener version, or the filter chains an in-place update dropped), checked
// once a second: at the drain deadline, or as soon as their last connection is gone. A
// control plane that pushes often would otherwise keep every replaced version for the
// whole drain time (600 s by default), as Envoy does.
func (m *Manager) retireListener(prev, next *config.ListenerResource, draining ...any) {
	closers, sources := prev.Released(next)
	start := time.Now()
	until := start.Add(m.drainTime)
	m.mu.Lock()
	m.draining = append(m.draining, drainingListener{r: prev, until: until})
	m.mu.Unlock()
	// A source shared with next was added again by next; a released one goes with the
	// drain, as the connections that count in it do.
	var check func()
	check = func() {
		if m.srv.Draining(draining...) && time.Since(start) < m.drainTime+time.Second {
			time.AfterFunc(time.Second, check)
			return
		}
		m.releaseListener(prev, closers, sources)
	}
	time.AfterFunc(time.Second, check)
}

// releaseListener lets go of a retired listener version's stats sources and files.
func (m *Manager) releaseListener(prev *config.ListenerResource, closers []io.Closer, sources []engine.StatsSource) {
	m.srv.RemoveStatsSources(sources)
	for _, c := range closers {
		if err := c.Close(); err != nil {
			m.log.Warn("closing a replaced listener's file", "listener", prev.Name, "err", err)
		}
	}
	m.mu.Lock()
	for i, d := range m.draining {
		if d.r == prev {
			m.draining = append(m.draining[:i], m.draining[i+1:]...)
			break
		}
	}
	m.mu.Unlock()
}

// applyClusters applies a CDS version resource by resource (see applyListeners).
func (m *Manager) applyClusters(u *config.ClusterUpdate) error {
	rd := m.begin(&m.cm.cds, "cluster", m.cFailed, u.Errors, u.Warnings)
	now := rd.now
	// The version's clusters reach new connections together, and the registry and the
	// stats list are rewritten once for it, not once per cluster (quadratic at 1,000).
	var gone []engine.StatsSource
	m.srv.ClusterBatch(func() {
		m.applyClusterSet(u, rd, now, &gone)
	})
	m.srv.RemoveStatsSources(gone)
	m.edsClustersChanged() // eds.go: stats and cached endpoints of EDS clusters gone
	return rd.finish(u.Version, &m.cdsVer)
}

// applyClusterSet is applyClusters' work inside the batch; the stats sources of the
// versions it retires are added to gone.
func (m *Manager) applyClusterSet(u *config.ClusterUpdate, rd *round, now time.Time, gone *[]engine.StatsSource) {
	m.retiring = gone
	defer func() { m.retiring = nil }()
	for _, r := range u.Clusters {
		prev := m.clusters[r.Name]
		if m.edsWarm(r) { // eds.go: an EDS cluster waits for its endpoints; prev serves on
			rd.changed = true
			continue
		}
		if r.Change == config.Unchanged && prev != nil {
			continue
		}
		if err := m.publishCluster(prev, r, now); err != nil {
			rd.reject(r.Rejected(err))
			continue
		}
		rd.changed = true
	}
	for _, name := range u.Removed {
		if m.edsUnwarm(name) { // eds.go
			rd.changed = true
		}
		prev := m.clusters[name]
		if prev == nil {
			continue
		}
		if err := m.srv.RemoveCluster(name); err != nil {
			m.log.Error("cds: removing a cluster", "cluster", name, "err", err)
			continue
		}
		rd.changed = true
		m.cm.removed.Inc()
		m.retireCluster(prev)
		m.mu.Lock()
		delete(m.clusters, name)
		delete(m.cUpdated, name)
		delete(m.cFailed, name)
		m.mu.Unlock()
		m.log.Info("cds: cluster removed", "cluster", name)
	}
}

// publishCluster puts a good cluster version into the server (replacing prev, if any),
// registers its stats and starts its runners.
func (m *Manager) publishCluster(prev, r *config.ClusterResource, now time.Time) error {
	var err error
	if prev == nil {
		err = m.srv.AddCluster(r.Cluster)
	} else {
		err = m.srv.UpdateCluster(r.Cluster)
	}
	if err != nil {
		return err
	}
	if prev == nil {
		m.cm.added.Inc()
		m.log.Info("cds: cluster added", "cluster", r.Name)
	} else {
		m.cm.modified.Inc()
		m.retireCluster(prev)
		m.log.Info("cds: cluster updated", "cluster", r.Name)
	}
	m.startCluster(r)
	m.mu.Lock()
	m.clusters[r.Name] = r
	m.cUpdated[r.Name] = now
	delete(m.cFailed, r.Name)
	m.mu.Unlock()
	return nil
}

// round is one file version being applied: it records the rejected resources (Envoy's
// "Error adding/updating ..." list) and, at the end, the subscription's stats.
type round struct {
	m       *Manager
	st      *subscriptionStats
	kind    string // "listener", "cluster"
	failed  map[string]failure
	now     time.Time
	errs    []string
	changed bool
}

// begin starts applying a version whose parse rejected errs, with warnings warns.
func (m *Manager) begin(st *subscriptionStats, kind string, failed map[string]failure, errs []config.ResourceError, warns []string) *round {
	r := &round{m: m, st: st, kind: kind, failed: failed, now: time.Now()}
	st.updateAttempt.Inc()
	for i := range errs {
		r.reject(&errs[i])
	}
	for _, w := range warns {
		m.log.Warn(r.prefix() + w)
	}
	return r
}

func (r *round) prefix() string {
	if r.kind == "listener" {
		return "lds: "
	}
	return "cds: "
}

// reject keeps e as the resource's last failure (its last good version stays).
func (r *round) reject(e *config.ResourceError) {
	r.m.mu.Lock()
	r.failed[e.Name] = failure{err: e, when: r.now}
	r.m.mu.Unlock()
	r.errs = append(r.errs, e.Error())
}

// finish counts the version: rejected if any resource was, else a success whose
// version_info becomes the subscription's (*version, under the manager's lock).
// It returns the rejection in Envoy's words (an xDS NACK's error_detail), or nil.
func (r *round) finish(versionInfo string, version *string) error {
	if r.changed {
		r.st.configReload.Inc()
	}
	r.st.updateTime.Set(r.now.UnixMilli())
	if len(r.errs) > 0 {
		// Logged before it is counted: whoever sees the count can read why.
		msg := "Error adding/updating " + r.kind + "(s) " + strings.Join(r.errs, "\n")
		r.m.log.Warn(r.prefix() + msg)
		r.st.updateRejected.Inc()
		return errors.New(msg)
	}
	r.st.updateSuccess.Inc()
	r.st.version.Set(versionHash(versionInfo))
	r.m.mu.Lock()
	*version = versionInfo
	r.m.mu.Unlock()
	return nil
}

// startCluster registers a cluster version's stats and starts its runners (DNS
// resolution, health checks) under a context of its own, cancelled when it is replaced.
func (m *Manager) startCluster(r *config.ClusterResource) {
	for _, src := range r.StatsSources {
		m.srv.AddStatsSource(src)
	}
	ctx, cancel := context.WithCancel(m.ctx)
	m.mu.Lock()
	m.cancels[r] = cancel
	m.mu.Unlock()
	for _, run := range r.Runners {
		m.runRunner(ctx, run)
	}
}

// retireCluster stops an old cluster version's runners and drops its stats; its live
// connections finish on their own.
func (m *Manager) retireCluster(r *config.ClusterResource) {
	m.mu.Lock()
	cancel := m.cancels[r]
	delete(m.cancels, r)
	m.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if m.retiring != nil {
		*m.retiring = append(*m.retiring, r.StatsSources...)
	} else {
		m.srv.RemoveStatsSources(r.StatsSources)
	}
	for _, c := range r.Closers {
		c.Close()
	}
}

func (m *Manager) runRunner(ctx context.Context, r config.Runner) {
	if l, ok := r.(interface{ SetLogger(*slog.Logger) }); ok {
		l.SetLogger(m.log)
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		r.Run(ctx)
	}()
}

// Closers are what the dynamic resources opened (their access logs), to close at exit.
func (m *Manager) Closers() []io.Closer {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []io.Closer
	seen := map[io.Closer]bool{}
	add := func(cs []io.Closer) {
		for _, c := range cs {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	for _, r := range m.listeners {
		add(r.Closers)
	}
	for _, d := range m.draining {
		add(d.r.Closers)
	}
	for _, r := range m.clusters {
		add(r.Closers)
	}
	return out
}

// dumpState is what runs, for /config_dump.
func (m *Manager) dumpState() *config.DumpState {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := &config.DumpState{LDSVersion: m.ldsVer, CDSVersion: m.cdsVer}
	for _, r := range m.cfg.StaticListeners {
		st.StaticListeners = append(st.StaticListeners, config.DumpEntry{Name: r.Name, Resource: r.Message()})
	}
	for _, r := range m.cfg.StaticClusters {
		st.StaticClusters = append(st.StaticClusters, config.DumpEntry{Name: r.Name, Resource: r.Message()})
	}
	for _, name := range sortedKeys(m.listeners) {
		r := m.listeners[name]
		st.ActiveListeners = append(st.ActiveListeners, config.DumpEntry{Name: name, Version: r.Version, LastUpdated: m.lUpdated[name], Resource: r.Message()})
	}
	for _, d := range m.draining {
		st.DrainingListeners = append(st.DrainingListeners, config.DumpEntry{Name: d.r.Name, Version: d.r.Version, Resource: d.r.Message()})
	}
	for _, name := range sortedKeys(m.lFailed) {
		f := m.lFailed[name]
		st.ListenerFailures = append(st.ListenerFailures, config.DumpFailure{Name: name, Details: f.err.Error(), Failed: f.err.Failed, LastUpdateAttempt: f.when})
	}
	for _, name := range sortedKeys(m.clusters) {
		r := m.clusters[name]
		st.ActiveClusters = append(st.ActiveClusters, config.DumpEntry{Name: name, Version: r.Version, LastUpdated: m.cUpdated[name], Resource: r.Message()})
	}
	st.WarmingClusters = m.eds.dumpWarming() // eds.go
	st.Endpoints = m.eds.dumpEndpoints()
	for _, name := range sortedKeys(m.cFailed) {
		f := m.cFailed[name]
		st.ClusterFailures = append(st.ClusterFailures, config.DumpFailure{Name: name, Details: f.err.Error(), Failed: f.err.Failed, LastUpdateAttempt: f.when})
	}
	m.routesDumpState(st) // rds.go
	return st
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

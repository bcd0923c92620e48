package engine

import (
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ServerOptions configure a Server.
type ServerOptions struct {
	// Concurrency is the number of workers; 0 means the CPU count.
	Concurrency int
	Logger      *slog.Logger
	// DisableSplice keeps bulk transfers on read/write instead of splice(2) (see
	// SpliceSource), for comparisons.
	DisableSplice bool
	// DelayedCloseTimeout bounds how long a connection closed with CloseFlushWrite may
	// take to flush (0: DefaultDelayedCloseTimeout).
	DelayedCloseTimeout time.Duration
	// Clock, if set, replaces the workers' monotonic clock (time since some origin); for
	// tests that drive timers by hand.
	Clock func() time.Duration
	// Clusters is the registry the server publishes its clusters in, shared with the
	// filters that look them up by name; nil makes a new one (see Server.ClusterRegistry).
	Clusters *ClusterRegistry
	// DrainTime is how long a listener that is updated or removed while the server runs,
	// and the filter chains an in-place update drops, drain before their connections are
	// closed (Envoy's --drain-time-s; 0: DefaultDrainTime).
	DrainTime time.Duration
	// DrainStrategy is how draining HTTP connections are asked to close (Envoy's
	// --drain-strategy): Gradual (the default) or Immediate.
	DrainStrategy DrainStrategy
	// InheritSocket, if set, is asked for each listen socket before one is bound: a hot
	// restart's child takes its parent's sockets through it (see InheritFunc).
	InheritSocket InheritFunc
	// KernelPairs, if set, lets filters that forward every byte unchanged (tcp_proxy alone
	// in its chain) hand a connection pair to the kernel (Connection.PairInKernel);
	// engine/sockmap provides one. nil keeps every byte in userspace.
	KernelPairs KernelPairs
}

// DefaultDrainTime is Envoy's --drain-time-s default.
const DefaultDrainTime = 600 * time.Second

// Server owns the workers, listeners and clusters (Envoy's ListenerManager plus the
// worker set). Its methods run on the main goroutine.
type Server struct {
	log     *slog.Logger
	workers []*Worker
	reg     *ClusterRegistry
	drain   drainPolicy

	// mu guards what the admin server reads from its own goroutines while the main
	// goroutine changes it: the listener, cluster and stats-source lists.
	mu        sync.Mutex
	listeners []*Listener
	// retired are listeners removed while running whose connections still drain; their
	// stats stay visible until they are gone.
	retired  []*Listener
	clusters []*Cluster
	byAddr   map[netip.AddrPort]int // bound addresses of the live listeners (main goroutine)
	sources  []StatsSource
	nextID   int // listener ids are never reused: they index each worker's active slice
	// drainingListeners and drainingChains count the drains under way (DrainingCounts).
	drainingListeners, drainingChains atomic.Int64
	// drainingSet holds the listener versions and filter chains being drained (under mu),
	// each with the number of drains under way for it (Draining).
	drainingSet map[any]int
	drainSeq    atomic.Bool // StartDrainSequence ran
	hcFailed    atomic.Bool // SetHealthCheckFailed
	started     bool
	closed      bool
	fatal       chan error
	inherit     InheritFunc
}

// NewServer creates the workers (not yet running).
func NewServer(o ServerOptions) (*Server, error) {
	n := o.Concurrency
	if n <= 0 {
		n = runtime.NumCPU()
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{log: log, reg: o.Clusters, byAddr: map[netip.AddrPort]int{},
		fatal: make(chan error, n), inherit: o.InheritSocket, drain: drainPolicy{time: o.DrainTime, strategy: o.DrainStrategy}}
	if s.reg == nil {
		s.reg = NewClusterRegistry()
	}
	if s.drain.time <= 0 {
		s.drain.time = DefaultDrainTime
	}
	for i := 0; i < n; i++ {
		w, err := newWorker(i, log)
		if err != nil {
			for _, w := range s.workers {
				w.poller.Close()
			}
			return nil, err
		}
		w.spliceOff = o.DisableSplice
		w.kpairs = o.KernelPairs
		w.closeTimeout = o.DelayedCloseTimeout
		if o.Clock != nil {
			clock := o.Clock
			w.clock = func() int64 { return int64(clock()) }
			w.now = w.clock()
		}
		w.onFatal = func(err error) { s.fatal <- err } // buffered: one per worker
		s.workers = append(s.workers, w)
	}
	for _, w := range s.workers {
		w.peers = s.workers
		w.drain = &s.drain
		w.srvHCFailed = &s.hcFailed
	}
	if o.KernelPairs != nil {
		// The kernel's events (a paired socket started holding bytes) go to the worker
		// that owns the pair, as a task.
		ws := s.workers
		base, err := o.KernelPairs.Notify(func(tag uint64) {
			if n := kernelTagWorker(tag); n < len(ws) {
				w := ws[n]
				w.Post(func() { w.onKernelHold(tag) })
			}
		})
		for _, w := range ws {
			w.kpBase = base
		}
		if err != nil {
			log.Warn("sockmap: no events from the kernel: tcp_proxy stays on the userspace path", "error", err)
			for _, w := range ws {
				w.kpairs = nil
			}
		}
	}
	s.sources = []StatsSource{&serverStatsSource{s.workers}}
	return s, nil
}

// Fatal delivers an error when a worker's event loop fails and the worker stops (its
// listen sockets and connections are closed; the other workers go on). The process should
// treat it as fatal: drain and exit non-zero, so a supervisor restarts it whole.
func (s *Server) Fatal() <-chan error { return s.fatal }

// Concurrency is the number of workers.
func (s *Server) Concurrency() int { return len(s.workers) }

// Workers lists the workers.
func (s *Server) Workers() []*Worker { return s.workers }

// ClusterRegistry is where the server publishes its clusters by name, for filters that
// look clusters up per connection.
func (s *Server) ClusterRegistry() *ClusterRegistry { return s.reg }

// AddCluster registers a cluster (built by NewCluster for Concurrency workers), before
// Start or while running (CDS: new connections can use it at once).
func (s *Server) AddCluster(c *Cluster) error {
	if err := s.checkCluster(c); err != nil {
		return err
	}
	// The same cluster may be in the registry already: a configuration publishes its
	// static clusters when it is loaded.
	if x := s.reg.lookup(c.cfg.Name); x != nil && x != c {
		return fmt.Errorf("cluster %q: defined twice", c.cfg.Name)
	}
	s.publish(c, nil)
	return nil
}

func (s *Server) checkCluster(c *Cluster) error {
	if c.workers != len(s.workers) {
		return fmt.Errorf("cluster %q: built for %d workers, server has %d", c.cfg.Name, c.workers, len(s.workers))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.srv != nil {
		return fmt.Errorf("cluster %q: already added to a server", c.cfg.Name)
	}
	return nil
}

// publish makes c the version of its name that new connections get; old (the version it
// replaces, or nil) leaves the cluster list.
func (s *Server) publish(c *Cluster, old *Cluster) {
	c.mu.Lock()
	c.srv = s
	c.mu.Unlock()
	if s.started {
		c.goLive()
	}
	s.mu.Lock()
	if old != nil {
		s.clusters = without(s.clusters, old)
	}
	s.clusters = append(s.clusters, c)
	s.mu.Unlock()
	s.reg.put(c)
}

// ClusterBatch runs fn, whose AddCluster, UpdateCluster and RemoveCluster calls take
// effect for new connections together, when fn returns (a CDS version): the registry's
// map is copied once, not once per cluster. Calls from other goroutines during fn join
// the batch; a nested ClusterBatch joins the outer one.
func (s *Server) ClusterBatch(fn func()) {
	if !s.reg.begin() {
		fn()
		return
	}
	defer s.reg.end()
	fn()
}

// UpdateCluster replaces the cluster of the same name (Envoy's CDS update): new
// connections use c from now on; connections of the old version go on until they end, its
// idle pooled connections are closed, and none is pooled again.
func (s *Server) UpdateCluster(c *Cluster) error {
	old := s.reg.lookup(c.cfg.Name)
	if old == nil {
		return fmt.Errorf("cluster %q: not defined", c.cfg.Name)
	}
	if old == c {
		return nil
	}
	if err := s.checkCluster(c); err != nil {
		return err
	}
	c.carryStats(old)
	s.publish(c, old)
	old.retire()
	return nil
}

// StatsCarrier is implemented by a cluster attachment (SetAttachment) whose stats carry
// over to the next version of its cluster, as the cluster's own counters do.
type StatsCarrier interface {
	// CarryStats is called on the new version's attachment with the old one's, before
	// the new version is published.
	CarryStats(old any)
}

// carryStats starts c's counters (and its attachment's) from old's: Envoy's counters of
// a cluster go on across CDS versions.
func (c *Cluster) carryStats(old *Cluster) {
	if c.workers == old.workers {
		for i := range c.perWorker {
			AddCounters(&c.perWorker[i].stats, &old.perWorker[i].stats)
		}
	}
	if sc, ok := c.attachment.(StatsCarrier); ok && old.attachment != nil {
		sc.CarryStats(old.attachment)
	}
}

// RemoveCluster removes the named cluster: new connections naming it fail as "no
// cluster" (counted by their filter); live ones go on until they end.
func (s *Server) RemoveCluster(name string) error {
	old := s.reg.remove(name)
	if old == nil {
		return fmt.Errorf("cluster %q: not defined", name)
	}
	s.mu.Lock()
	s.clusters = without(s.clusters, old)
	s.mu.Unlock()
	old.retire()
	return nil
}

func without[T comparable](xs []T, x T) []T {
	out := make([]T, 0, len(xs))
	for _, y := range xs {
		if y != x {
			out = append(out, y)
		}
	}
	return out
}

// AddStatsSource registers extra stats (a filter's own) for the admin scrape. The server's
// own (family "server") are registered from the start.
func (s *Server) AddStatsSource(src StatsSource) {
	s.mu.Lock()
	s.sources = append(s.sources, src)
	s.mu.Unlock()
}

// RemoveStatsSource unregisters stats added with AddStatsSource (those of a listener or
// cluster version that is gone).
func (s *Server) RemoveStatsSource(src StatsSource) {
	if !reflect.TypeOf(src).Comparable() {
		return // a value that cannot be compared cannot be found either
	}
	s.mu.Lock()
	s.sources = without(s.sources, src)
	s.mu.Unlock()
}

// RemoveStatsSources is RemoveStatsSource for many at once, in one pass over the list (a
// CDS version that replaces 1,000 clusters removes thousands).
func (s *Server) RemoveStatsSources(srcs []StatsSource) {
	gone := make(map[StatsSource]bool, len(srcs))
	for _, src := range srcs {
		if reflect.TypeOf(src).Comparable() {
			gone[src] = true
		}
	}
	if len(gone) == 0 {
		return
	}
	s.mu.Lock()
	kept := s.sources[:0:0]
	for _, src := range s.sources {
		if !reflect.TypeOf(src).Comparable() || !gone[src] {
			kept = append(kept, src)
		}
	}
	s.sources = kept
	s.mu.Unlock()
}

// StatsSources lists the registered extra stats (a copy: safe from any goroutine).
func (s *Server) StatsSources() []StatsSource {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]StatsSource(nil), s.sources...)
}

// Cluster finds the current version of a cluster by name.
func (s *Server) Cluster(name string) *Cluster { return s.reg.Get(name) }

// Clusters lists the clusters (a copy: safe from any goroutine).
func (s *Server) Clusters() []*Cluster {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Cluster(nil), s.clusters...)
}

// Listeners lists the live listeners (a copy: safe from any goroutine). Listeners that
// were removed and still drain are in DrainingListeners.
func (s *Server) Listeners() []*Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Listener(nil), s.listeners...)
}

// Listener finds a live listener by name.
func (s *Server) Listener(name string) *Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		if l.cfg.Name == name {
			return l
		}
	}
	return nil
}

// DrainingListeners lists the listeners removed while running whose connections still
// drain (a copy).
func (s *Server) DrainingListeners() []*Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Listener(nil), s.retired...)
}

// AddListener binds the listener's sockets now (unless bind_to_port is false), so that an
// address conflict is an error here, before any worker runs. After Start it adds the
// listener to every worker (Envoy's LDS add).
func (s *Server) AddListener(cfg ListenerConfig) (*Listener, error) {
	if s.closed {
		return nil, fmt.Errorf("listener %q: the server is closed", cfg.Name)
	}
	if s.Listener(cfg.Name) != nil {
		return nil, fmt.Errorf("listener %q: defined twice", cfg.Name)
	}
	if err := s.checkListener(cfg, nil); err != nil {
		return nil, err
	}
	// A failure leaves the server as it was: bindListener closes what it opened itself,
	// and the listeners bound so far stay for the caller's Close.
	l, err := bindListener(cfg, s.nextID, len(s.workers), s.inherit)
	if err != nil {
		return nil, err
	}
	s.nextID++
	s.mu.Lock()
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	s.byAddr[l.addr] = l.id
	if s.started {
		for _, w := range s.workers {
			w.Post(func() { w.addListener(l) })
		}
	}
	return l, nil
}

// checkListener checks a listener config against the others (old: the listener it
// replaces, whose address it may take).
func (s *Server) checkListener(cfg ListenerConfig, old *Listener) error {
	if cfg.FilterChains == nil {
		return fmt.Errorf("listener %q: no filter chains", cfg.Name)
	}
	if !cfg.Address.IsValid() {
		return fmt.Errorf("listener %q: no address", cfg.Name)
	}
	if id, dup := s.byAddr[cfg.Address]; dup && cfg.Address.Port() != 0 && (old == nil || id != old.id) {
		return fmt.Errorf("listener %q: address %s is used by another listener", cfg.Name, cfg.Address)
	}
	return nil
}

// Start runs the workers and posts every listener to each ("add listener" tasks).
func (s *Server) Start() {
	if s.started || s.closed {
		return
	}
	s.started = true
	for _, c := range s.Clusters() {
		c.goLive()
	}
	for _, w := range s.workers {
		for _, l := range s.Listeners() {
			w.Post(func() { w.addListener(l) })
		}
		w.start()
	}
}

// StopListeners stops accepting on every worker; open connections go on. It returns
// once every running worker has stopped its listeners (and taken in what their accept
// queues held).
func (s *Server) StopListeners() {
	var wg sync.WaitGroup
	for _, w := range s.workers {
		wg.Add(1)
		if !w.Post(func() {
			defer wg.Done()
			for _, al := range w.active {
				if al != nil {
					al.stop(true)
				}
			}
		}) {
			wg.Done() // a worker that stopped: its listeners are closed
		}
	}
	wg.Wait()
}

// ActiveConnections sums downstream_cx_active over listeners (draining ones too) and
// workers.
func (s *Server) ActiveConnections() int64 {
	var n int64
	for _, l := range s.allListeners() {
		for i := range l.stats {
			n += l.stats[i].DownstreamCxActive.Value()
		}
	}
	return n
}

// pendingSockets sums downstream_pre_cx_active: accepted sockets still in their listener
// filters, about to become connections.
func (s *Server) pendingSockets() int64 {
	var n int64
	for _, l := range s.allListeners() {
		for i := range l.stats {
			n += l.stats[i].DownstreamPreCxActive.Value()
		}
	}
	return n
}

// Drain stops accepting, then waits until no downstream connection (or socket in its
// listener filters) is left or the timeout passes, whichever is first. It reports whether
// every connection finished.
func (s *Server) Drain(timeout time.Duration) bool {
	s.StopListeners()
	for _, w := range s.workers {
		w.Post(w.startDrain)
	}
	deadline := time.Now().Add(timeout)
	for s.ActiveConnections()+s.pendingSockets() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// Close stops the workers (closing whatever they still hold) and waits for them; before
// Start it closes the sockets bound so far. It is idempotent: a second Close does nothing
// (no fd number is closed twice).
func (s *Server) Close() {
	if s.closed {
		return
	}
	s.closed = true
	if !s.started {
		for _, l := range s.Listeners() {
			for _, fd := range l.fds {
				closeFd(fd)
			}
			l.fds = nil
		}
		for _, w := range s.workers {
			w.poller.Close()
		}
		return
	}
	for _, w := range s.workers {
		w.stop()
	}
	for _, w := range s.workers {
		<-w.done
	}
}

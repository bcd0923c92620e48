package engine

import (
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
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
	// InheritSocket, if set, is asked for each listen socket before one is bound: a hot
	// restart's child takes its parent's sockets through it (see InheritFunc).
	InheritSocket InheritFunc
}

// Server owns the workers, listeners and clusters (Envoy's ListenerManager plus the
// worker set). Its methods run on the main goroutine.
type Server struct {
	log       *slog.Logger
	workers   []*Worker
	listeners []*Listener
	clusters  []*Cluster
	byName    map[string]*Cluster
	byAddr    map[netip.AddrPort]int
	sources   []StatsSource
	started   bool
	closed    bool
	fatal     chan error
	inherit   InheritFunc
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
	s := &Server{log: log, byName: map[string]*Cluster{}, byAddr: map[netip.AddrPort]int{},
		fatal: make(chan error, n), inherit: o.InheritSocket}
	for i := 0; i < n; i++ {
		w, err := newWorker(i, log)
		if err != nil {
			for _, w := range s.workers {
				w.poller.Close()
			}
			return nil, err
		}
		w.spliceOff = o.DisableSplice
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
		w.byAddr = s.byAddr
	}
	s.sources = []StatsSource{serverStatsSource{s.workers}}
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

// AddCluster registers a cluster (built by NewCluster for Concurrency workers) before
// Start.
func (s *Server) AddCluster(c *Cluster) error {
	if _, dup := s.byName[c.cfg.Name]; dup {
		return fmt.Errorf("cluster %q: defined twice", c.cfg.Name)
	}
	if c.workers != len(s.workers) {
		return fmt.Errorf("cluster %q: built for %d workers, server has %d", c.cfg.Name, c.workers, len(s.workers))
	}
	c.mu.Lock()
	c.srv = s
	c.mu.Unlock()
	s.clusters = append(s.clusters, c)
	s.byName[c.cfg.Name] = c
	return nil
}

// AddStatsSource registers extra stats (a filter's own) for the admin scrape. The server's
// own (family "server") are registered from the start.
func (s *Server) AddStatsSource(src StatsSource) { s.sources = append(s.sources, src) }

// StatsSources lists the registered extra stats.
func (s *Server) StatsSources() []StatsSource { return s.sources }

// Cluster finds a cluster by name.
func (s *Server) Cluster(name string) *Cluster { return s.byName[name] }

// Clusters lists the clusters.
func (s *Server) Clusters() []*Cluster { return s.clusters }

// Listeners lists the listeners.
func (s *Server) Listeners() []*Listener { return s.listeners }

// AddListener binds the listener's sockets now (unless bind_to_port is false), so that an
// address conflict is an error here, before any worker runs.
func (s *Server) AddListener(cfg ListenerConfig) (*Listener, error) {
	if s.started {
		return nil, fmt.Errorf("listener %q: listeners are added before start", cfg.Name)
	}
	for _, l := range s.listeners {
		if l.cfg.Name == cfg.Name {
			return nil, fmt.Errorf("listener %q: defined twice", cfg.Name)
		}
	}
	if cfg.FilterChains == nil {
		return nil, fmt.Errorf("listener %q: no filter chains", cfg.Name)
	}
	if _, dup := s.byAddr[cfg.Address]; dup && cfg.Address.Port() != 0 {
		return nil, fmt.Errorf("listener %q: address %s is used by another listener", cfg.Name, cfg.Address)
	}
	if !cfg.Address.IsValid() {
		return nil, fmt.Errorf("listener %q: no address", cfg.Name)
	}
	// A failure leaves the server as it was: bindListener closes what it opened itself,
	// and the listeners bound so far stay for the caller's Close.
	l, err := bindListener(cfg, len(s.listeners), len(s.workers), s.inherit)
	if err != nil {
		return nil, err
	}
	s.listeners = append(s.listeners, l)
	s.byAddr[l.addr] = l.id
	return l, nil
}

// Start runs the workers and posts every listener to each ("add listener" tasks).
func (s *Server) Start() {
	if s.started || s.closed {
		return
	}
	s.started = true
	for _, c := range s.clusters {
		c.goLive()
	}
	for _, w := range s.workers {
		for _, l := range s.listeners {
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

// ActiveConnections sums downstream_cx_active over listeners and workers.
func (s *Server) ActiveConnections() int64 {
	var n int64
	for _, l := range s.listeners {
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
	for _, l := range s.listeners {
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
		for _, l := range s.listeners {
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

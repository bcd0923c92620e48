package engine

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// DrainStrategy is how connections that drain are asked to close (Envoy's
// --drain-strategy).
type DrainStrategy int

const (
	// Gradual: the chance that a draining HTTP connection is told to close after its
	// response grows from 0 to 1 over the drain time, so clients move over gradually.
	Gradual DrainStrategy = iota
	// Immediate: every draining connection is told to close after its next response.
	Immediate
)

func (d DrainStrategy) String() string {
	if d == Immediate {
		return "immediate"
	}
	return "gradual"
}

// drainPolicy is the server's drain time and strategy; the workers read it (it never
// changes once they run).
type drainPolicy struct {
	time     time.Duration
	strategy DrainStrategy
}

// drainWindow is when one drain began and ends, on the worker clock.
type drainWindow struct{ start, end int64 }

// UpdateListener replaces the listener of the same name (Envoy's LDS update of anything
// beyond the filter chains). The bound sockets are carried into the new version, never
// closed and re-bound, so no connection in an accept queue is lost; the old version stops
// accepting and its connections drain for the drain time, then close. A different address
// binds new sockets (the old ones close once the new are bound); changing
// enable_reuse_port is refused, as in Envoy.
func (s *Server) UpdateListener(cfg ListenerConfig) (*Listener, error) {
	old := s.Listener(cfg.Name)
	if old == nil {
		return nil, fmt.Errorf("listener %q: not defined", cfg.Name)
	}
	if cfg.NoReusePort != old.cfg.NoReusePort && !cfg.NoBindToPort && !old.cfg.NoBindToPort {
		return nil, fmt.Errorf("listener %q: enable_reuse_port cannot be changed on an update", cfg.Name)
	}
	if err := s.checkListener(cfg, old); err != nil {
		return nil, err
	}
	carry := cfg.NoBindToPort == old.cfg.NoBindToPort && (cfg.Address == old.cfg.Address || cfg.Address == old.addr)
	var l *Listener
	if carry {
		l = carriedListener(cfg, s.nextID, old)
	} else {
		var err error
		if l, err = bindListener(cfg, s.nextID, len(s.workers), s.inherit); err != nil {
			return nil, err
		}
		l.stats = old.stats
	}
	s.nextID++
	s.mu.Lock()
	for i, x := range s.listeners {
		if x == old {
			s.listeners[i] = l
		}
	}
	s.mu.Unlock()
	delete(s.byAddr, old.addr)
	s.byAddr[l.addr] = l.id
	if !s.started {
		if !carry {
			closeListenerFds(old)
		}
		return l, nil
	}
	s.drainingListeners.Add(1)
	s.markDraining(old)
	done := s.whenAllDone(func() { s.drainingListeners.Add(-1); s.unmarkDraining(old) })
	for _, w := range s.workers {
		if !w.Post(func() { w.replaceListener(old, l, carry, done) }) {
			done <- struct{}{}
		}
	}
	return l, nil
}

// carriedListener is the new version of old with old's sockets and stats (Envoy keeps
// the counters of a listener's scope across updates).
func carriedListener(cfg ListenerConfig, id int, old *Listener) *Listener {
	cfg.Address = old.addr
	l := &Listener{cfg: cfg, id: id, fds: old.fds, stats: old.stats, addr: old.addr,
		balancer: &balancer{exact: cfg.ExactBalance, counts: make([]int64, len(old.stats)), totals: make([]int64, len(old.stats))}}
	for _, f := range cfg.ListenerFilters {
		l.maxRead = max(l.maxRead, f.MaxReadBytes())
	}
	l.chains.Store(&cfg.FilterChains)
	// old.fds stays as it is (workers may still read it); l owns the fds now, and old's
	// workers hand theirs over without closing them (replaceListener).
	return l
}

func closeListenerFds(l *Listener) {
	for _, fd := range l.fds {
		closeFd(fd)
	}
	l.fds = nil
}

// UpdateListenerChains changes only the filter chains of a running listener (Envoy's
// in-place filter-chain update): new connections are matched against chains from now on;
// connections on a chain in drained (the old chains the update does not keep) drain for
// the drain time, then close; every other connection is untouched.
func (s *Server) UpdateListenerChains(name string, chains FilterChainManager, drained []*FilterChain) error {
	l := s.Listener(name)
	if l == nil {
		return fmt.Errorf("listener %q: not defined", name)
	}
	if chains == nil {
		return fmt.Errorf("listener %q: no filter chains", name)
	}
	l.chains.Store(&chains) // for workers that add the listener later; the others are told
	if !s.started {
		return nil
	}
	set := make(map[*FilterChain]bool, len(drained))
	for _, c := range drained {
		set[c] = true
	}
	if len(set) > 0 {
		s.drainingChains.Add(int64(len(set)))
	}
	for c := range set {
		s.markDraining(c)
	}
	done := s.whenAllDone(func() {
		s.drainingChains.Add(-int64(len(set)))
		for c := range set {
			s.unmarkDraining(c)
		}
	})
	for _, w := range s.workers {
		if !w.Post(func() { w.updateChains(l, chains, set, done) }) {
			done <- struct{}{}
		}
	}
	return nil
}

// whenAllDone returns a channel each worker signals once; fn runs when all have.
func (s *Server) whenAllDone(fn func()) chan struct{} {
	done := make(chan struct{}, len(s.workers))
	go func() {
		for range s.workers {
			<-done
		}
		fn()
	}()
	return done
}

// Draining reports whether a drain is under way for any of xs: listener versions
// (*Listener, replaced or removed) or filter chains (*FilterChain, dropped by an in-place
// update). A drain is over once every worker has closed the last connection it had, or
// at the drain deadline: what only those connections used may be let go of then.
func (s *Server) Draining(xs ...any) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range xs {
		if s.drainingSet[x] > 0 {
			return true
		}
	}
	return false
}

func (s *Server) markDraining(x any) {
	s.mu.Lock()
	if s.drainingSet == nil {
		s.drainingSet = map[any]int{}
	}
	s.drainingSet[x]++
	s.mu.Unlock()
}

func (s *Server) unmarkDraining(x any) {
	s.mu.Lock()
	if s.drainingSet[x]--; s.drainingSet[x] <= 0 {
		delete(s.drainingSet, x)
	}
	s.mu.Unlock()
}

// DrainingCounts reports how many listeners (updated or removed) and how many filter
// chains (dropped by in-place updates) are draining now (Envoy's
// listener_manager.total_listeners_draining and total_filter_chains_draining).
func (s *Server) DrainingCounts() (listeners, chains int64) {
	return s.drainingListeners.Load(), s.drainingChains.Load()
}

// RemoveListener stops the named listener: it takes in what its accept queues hold, closes
// its sockets, and its connections drain for the drain time, then close (Envoy's LDS
// remove).
func (s *Server) RemoveListener(name string) error {
	l := s.Listener(name)
	if l == nil {
		return fmt.Errorf("listener %q: not defined", name)
	}
	s.mu.Lock()
	s.listeners = without(s.listeners, l)
	if s.started {
		s.retired = append(s.retired, l)
	}
	s.mu.Unlock()
	if s.byAddr[l.addr] == l.id {
		delete(s.byAddr, l.addr)
	}
	if !s.started {
		closeListenerFds(l)
		return nil
	}
	// The listener leaves the retired list once every worker has closed its last
	// connection (at the latest at the drain deadline).
	s.drainingListeners.Add(1)
	s.markDraining(l)
	left := s.whenAllDone(func() {
		s.mu.Lock()
		s.retired = without(s.retired, l)
		s.mu.Unlock()
		s.drainingListeners.Add(-1)
		s.unmarkDraining(l)
	})
	for _, w := range s.workers {
		if !w.Post(func() { w.removeListener(l, left) }) {
			left <- struct{}{}
		}
	}
	return nil
}

// allListeners is the live and the retired listeners.
func (s *Server) allListeners() []*Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append(append([]*Listener(nil), s.listeners...), s.retired...)
}

// replaceListener moves this worker from old to l: the listen fd passes from one to the
// other without leaving the worker (no accept is missed: the socket is level-triggered),
// and old's connections drain.
func (w *Worker) replaceListener(old, l *Listener, carried bool, done chan<- struct{}) {
	oal := w.active[old.id]
	if oal == nil {
		w.addListener(l)
		done <- struct{}{}
		return
	}
	if carried && oal.fd >= 0 {
		w.unregister(oal.fd)
		oal.fd = -1 // l's now: oal.stop must not close it
	}
	oal.stop(!carried)
	if w.byAddr[old.addr] == old.id {
		delete(w.byAddr, old.addr)
	}
	if w.listeners[old.cfg.Name] == oal {
		delete(w.listeners, old.cfg.Name)
	}
	w.addListener(l)
	oal.next = w.active[l.id]
	w.drainListener(oal, done)
}

// removeListener stops l on this worker and drains its connections; left is told once
// the last is gone.
func (w *Worker) removeListener(l *Listener, left chan<- struct{}) {
	al := w.active[l.id]
	if al == nil {
		left <- struct{}{}
		return
	}
	al.stop(true)
	if w.byAddr[l.addr] == l.id {
		delete(w.byAddr, l.addr)
	}
	if w.listeners[l.cfg.Name] == al {
		delete(w.listeners, l.cfg.Name)
	}
	w.drainListener(al, left)
}

// updateChains swaps the chains this worker matches new sockets against, then drains the
// connections on dropped chains.
func (w *Worker) updateChains(l *Listener, chains FilterChainManager, drained map[*FilterChain]bool, done chan<- struct{}) {
	al := w.active[l.id]
	if al == nil || al.l != l || al.stopped {
		done <- struct{}{}
		return
	}
	al.chains = chains
	if len(drained) == 0 {
		done <- struct{}{}
		return
	}
	win := w.newDrainWindow()
	if al.chainDrains == nil {
		al.chainDrains = map[*FilterChain]drainWindow{}
	}
	for c := range drained {
		al.chainDrains[c] = win
	}
	on := func(c *Connection) bool { return c.owner == al && drained[c.chain] }
	w.startConnDrain(on)
	// The drain ends at the deadline, or as soon as no connection is left on the
	// dropped chains (looked for once a second), so that they are let go of then.
	var poll, deadline *Timer
	finish := func() {
		poll.Stop()
		deadline.Stop()
		for c := range drained {
			if al.chainDrains[c] == win {
				delete(al.chainDrains, c)
			}
		}
		done <- struct{}{}
	}
	poll = w.NewTimer(func() {
		if w.hasConns(on) {
			poll.Reset(time.Second)
			return
		}
		finish()
	})
	deadline = w.NewTimer(func() {
		w.closeConns(on)
		finish()
	})
	deadline.Reset(w.drain.time)
	poll.Reset(time.Second)
}

// drainListener drains the connections of a stopped listener: they are told to close
// after their response (DrainClose), and whatever is left at the drain deadline is
// closed. Sockets still in their listener filters become connections of al and drain with
// them. done, if set, is told when the last is gone.
func (w *Worker) drainListener(al *activeListener, done chan<- struct{}) {
	al.drainWin = w.newDrainWindow()
	on := func(c *Connection) bool { return c.owner == al }
	w.startConnDrain(on)
	var poll, deadline *Timer
	finish := func() {
		poll.Stop()
		deadline.Stop()
		if w.active[al.l.id] == al {
			w.active[al.l.id] = nil
		}
		if done != nil {
			done <- struct{}{}
		}
	}
	// Gauges are shared with the listener's next version, so emptiness is checked by
	// looking for al's connections, once a second (cheap: one pass over the fd table).
	poll = w.NewTimer(func() {
		if w.hasConns(on) || w.hasSocketsOf(al) {
			poll.Reset(time.Second)
			return
		}
		finish()
	})
	deadline = w.NewTimer(func() {
		w.closeConns(on)
		for s := w.waiting; s != nil; {
			next := s.next
			if s.l == al {
				s.close()
			}
			s = next
		}
		finish()
	})
	deadline.Reset(w.drain.time)
	poll.Reset(time.Second)
}

func (w *Worker) newDrainWindow() drainWindow {
	return drainWindow{start: w.now, end: w.now + int64(w.drain.time)}
}

// eachConn calls fn for every open connection of this worker that matches. Every live
// connection is registered, so the fd table finds them without a list threaded through
// each (updates are rare; a pass is microseconds).
func (w *Worker) eachConn(match func(*Connection) bool, fn func(*Connection)) {
	for _, slot := range w.handlers {
		if c, ok := slot.h.(*Connection); ok && c.state != stateClosed && match(c) {
			fn(c)
		}
	}
}

func (w *Worker) hasConns(match func(*Connection) bool) bool {
	found := false
	w.eachConn(match, func(*Connection) { found = true })
	return found
}

func (w *Worker) hasSocketsOf(al *activeListener) bool {
	for s := w.waiting; s != nil; s = s.next {
		if s.l == al {
			return true
		}
	}
	return false
}

// startConnDrain marks the matching connections draining and tells their filters
// (DrainObserver).
func (w *Worker) startConnDrain(match func(*Connection) bool) {
	var cs []*Connection
	w.eachConn(match, func(c *Connection) { cs = append(cs, c) })
	for _, c := range cs {
		c.draining = true
		c.notifyDrain()
	}
}

// closeConns closes the matching connections, flushing what they have written (bounded
// by the delayed-close timeout).
func (w *Worker) closeConns(match func(*Connection) bool) {
	var cs []*Connection
	w.eachConn(match, func(c *Connection) { cs = append(cs, c) })
	for _, c := range cs {
		if c.state != stateClosed {
			c.Close(CloseFlushWrite)
		}
	}
}

// DrainObserver is implemented by network filters that want to know when their
// connection starts to drain (its listener or filter chain was updated or removed): an
// HTTP connection manager closes it if idle, or after the response in flight.
type DrainObserver interface {
	OnDrain()
}

func (c *Connection) notifyDrain() {
	defer c.recoverFilter()
	if d, ok := c.filter.(DrainObserver); ok {
		d.OnDrain()
	}
	if c.more != nil {
		for _, f := range *c.more {
			if c.state == stateClosed {
				return
			}
			if d, ok := f.(DrainObserver); ok {
				d.OnDrain()
			}
		}
	}
}

// Draining reports whether the connection drains: the server drains, or its listener or
// filter chain was updated away or removed.
func (c *Connection) Draining() bool { return c.draining || c.w.draining }

// DrainClose reports whether a filter should close this connection after the current
// request (Envoy's DrainDecision::drainClose): never when it does not drain; always with
// the Immediate strategy, past the drain deadline, or when the whole server drains; with
// Gradual, with a chance that grows from 0 to 1 over the drain time.
func (c *Connection) DrainClose() bool {
	w := c.w
	if w.srvHCFailed != nil && w.srvHCFailed.Load() && !c.modifyOnly() {
		return true // Envoy: health checks failed (/healthcheck/fail), drain_type DEFAULT
	}
	if w.draining {
		return true // a SIGTERM drain
	}
	if win := w.drainWin; win.end != 0 && !c.modifyOnly() {
		// The server's drain sequence (StartDrainSequence).
		if w.drain == nil || w.drain.strategy == Immediate || w.now >= win.end {
			return true
		}
		return rand.Int64N(win.end-win.start) < w.now-win.start
	}
	if !c.draining {
		return false
	}
	if w.drain == nil || w.drain.strategy == Immediate {
		return true
	}
	win, ok := c.drainWindow()
	if !ok || w.now >= win.end || win.end <= win.start {
		return true
	}
	return rand.Int64N(win.end-win.start) < w.now-win.start
}

// modifyOnly reports whether the connection's listener drains only on its own update or
// removal (drain_type MODIFY_ONLY).
func (c *Connection) modifyOnly() bool {
	al, ok := c.owner.(*activeListener)
	return ok && al.l.cfg.DrainModifyOnly
}

// SetHealthCheckFailed is the admin's /healthcheck/fail (true) and /healthcheck/ok
// (false): while it holds, HTTP connections of listeners with drain_type DEFAULT close
// after each response (DrainClose), as Envoy's drain manager does, so that clients move
// to other proxies while the load balancer takes this one out.
func (s *Server) SetHealthCheckFailed(failed bool) { s.hcFailed.Store(failed) }

func (c *Connection) drainWindow() (drainWindow, bool) {
	al, ok := c.owner.(*activeListener)
	if !ok {
		return drainWindow{}, false
	}
	if al.drainWin.end != 0 {
		return al.drainWin, true
	}
	win, ok := al.chainDrains[c.chain]
	return win, ok
}

// StartDrainSequence begins Envoy's drain sequence for the whole server (a hot restart's
// parent, the admin's /drain_listeners?graceful): for the drain time, HTTP connections of
// listeners with drain_type DEFAULT are asked to close after their responses, gradually or
// at once by the drain strategy (DrainClose); idle ones are left alone, as in Envoy, until
// their next request or the end. done, if set, runs on its own goroutine when the drain
// time is over. A second call while a sequence runs does nothing and reports false.
func (s *Server) StartDrainSequence(done func()) bool {
	if !s.drainSeq.CompareAndSwap(false, true) {
		return false
	}
	for _, w := range s.workers {
		w.Post(func() { w.drainWin = w.newDrainWindow() })
	}
	if done != nil {
		time.AfterFunc(s.drain.time, done)
	}
	return true
}

// StopListenersMatching stops accepting on the listeners for which match is true, as
// StopListeners does for all; their connections go on.
func (s *Server) StopListenersMatching(match func(*Listener) bool) {
	var ls []*Listener
	for _, l := range s.Listeners() {
		if match(l) {
			ls = append(ls, l)
		}
	}
	var wg sync.WaitGroup
	for _, w := range s.workers {
		wg.Add(1)
		if !w.Post(func() {
			defer wg.Done()
			for _, l := range ls {
				if l.id < len(w.active) && w.active[l.id] != nil {
					w.active[l.id].stop(true)
				}
			}
		}) {
			wg.Done()
		}
	}
	wg.Wait()
}

package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portico-proxy/portico/admin"
	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/hotrestart"
)

// Envoy's default for --parent-shutdown-time-s. (--drain-time-s and --drain-strategy are
// serve()'s: a hot restart's parent drains for --drain-time-s, Envoy's 600 s by default.)
const (
	defaultParentShutdown = 900
	adoptedSocketIdle     = 2 * time.Second
	// parentShutdownSlack is how long past its own --parent-shutdown-time-s a parent waits
	// for the child's terminate before it goes by itself (a child that died): the child's
	// clock, which Envoy's semantics follow, starts a moment later than the parent's.
	parentShutdownSlack     = 5 * time.Second
	hotRestartStatsInterval = hotrestart.StatsInterval
)

// hotRestart is serve()'s hot restart state: the flags, the session with the parent (a
// child, epoch > 0) and the listener for the next epoch's child (every process).
type hotRestart struct {
	epoch          *int
	baseID         *int
	parentShutdown *int
	// enabled: this process takes part in hot restart (--restart-epoch was given).
	enabled bool
	// restartDrain is the drain time of a hot restart's parent: --drain-time-s.
	restartDrain time.Duration

	log    *slog.Logger
	child  *hotrestart.Child  // nil for epoch 0
	parent *hotrestart.Parent // our own socket, for the next epoch
	// adminLn is the parent's admin socket, served once this process is live.
	adminLn net.Listener

	srv        *engine.Server
	adm        *admin.Admin
	sigs       chan<- os.Signal
	drainStart time.Time
	handedOver atomic.Bool // a child took over: this process drains for it
	terminated atomic.Bool
	stopStats  chan struct{}
	statsDone  sync.WaitGroup
}

// hotRestartEvent is what the hot restart session puts into serve()'s signal channel, so
// that the main goroutine's one wait sees it like SIGTERM: a child took over (drain), or
// it says parent-shutdown-time is over (which, like a second SIGTERM, cuts the drain short).
type hotRestartEvent string

func (e hotRestartEvent) String() string { return string(e) }
func (hotRestartEvent) Signal()          {}

const (
	eventHandedOver hotRestartEvent = "hot restart: a child took over"
	eventTerminate  hotRestartEvent = "hot restart: parent-shutdown-time over"
)

// hotRestartFlags adds the hot restart flags (Envoy's names and defaults) to fs.
func hotRestartFlags(fs *flag.FlagSet) *hotRestart {
	return &hotRestart{
		epoch:          fs.Int("restart-epoch", 0, "hot restart epoch: 0 starts cold; N > 0 takes over the sockets of the running epoch N-1"),
		baseID:         fs.Int("base-id", 0, "hot restart base id: separates sets of processes on one host"),
		parentShutdown: fs.Int("parent-shutdown-time-s", defaultParentShutdown, "hot restart: seconds after the child serves that the parent is told to exit"),
	}
}

// resolve checks the flags once parsed; drain is --drain-time-s's value.
func (h *hotRestart) resolve(fs *flag.FlagSet, drain int) error {
	if *h.epoch < 0 || *h.baseID < 0 || *h.parentShutdown < 0 {
		return errors.New("--restart-epoch, --base-id and --parent-shutdown-time-s must not be negative")
	}
	h.restartDrain = time.Duration(drain) * time.Second
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "restart-epoch" {
			h.enabled = true
		}
	})
	return nil
}

// inherit is the engine's InheritSocket hook: the parent's socket, once connected.
func (h *hotRestart) inherit(addr netip.AddrPort, reusePort bool, worker int) (int, bool) {
	if h.child == nil {
		return -1, false
	}
	return h.child.Inherit(addr, reusePort, worker)
}

// connect takes this epoch's socket (so that a second process of the same epoch fails
// here) and, for epoch > 0, connects to the parent and receives its sockets. Call it once
// the configuration has loaded: a child whose configuration is bad never disturbs its
// parent. A missing parent is an error, as in Envoy.
//
// Unlike Envoy, a process takes part in hot restart only if --restart-epoch is given (the
// restart wrapper always gives it). Envoy makes every process with the same --base-id
// collide on its domain socket; Portico processes started as before, several to a host,
// go on working, and none of them can be taken over by a child meant for another.
func (h *hotRestart) connect(log *slog.Logger) error {
	h.log = log
	if !h.enabled {
		return nil
	}
	p, err := hotrestart.Listen(*h.baseID, *h.epoch)
	if err != nil {
		return err
	}
	h.parent = p
	if *h.epoch == 0 {
		return nil
	}
	c, err := hotrestart.Dial(*h.baseID, *h.epoch)
	if errors.Is(err, hotrestart.ErrNoParent) {
		return fmt.Errorf("%w; the parent must run with --restart-epoch %d and the same --base-id", err, *h.epoch-1)
	}
	if err != nil {
		return err
	}
	h.child = c
	if err := c.FetchSockets(); err != nil {
		return err
	}
	log.Info("hot restart: connected to the parent", "parent_epoch", c.ParentEpoch, "parent_pid", c.ParentPID,
		"sockets", len(c.Sockets()))
	return nil
}

// close ends what connect opened (unclaimed sockets are closed).
func (h *hotRestart) close() {
	if h.child != nil {
		h.child.Close()
	}
	if h.parent != nil {
		h.parent.Close()
	}
}

// adoptAdmin reports whether the parent's admin socket serves addr; then this process
// takes it (served once live, see serving) instead of binding addr.
func (h *hotRestart) adoptAdmin(addr netip.AddrPort) bool {
	if h.child == nil {
		return false
	}
	fd, got, ok := h.child.TakeAdmin()
	if !ok {
		return false
	}
	f := os.NewFile(uintptr(fd), "admin")
	defer f.Close()
	if got != addr {
		return false
	}
	ln, err := net.FileListener(f)
	if err != nil {
		h.log.Warn("hot restart: the parent's admin socket", "err", err)
		return false
	}
	h.adminLn = ln
	return true
}

// steer runs after the listeners are added, before Start. Sockets of the parent beyond
// this process's worker count stay in their SO_REUSEPORT groups; the group is steered to
// the first Concurrency sockets (see hotrestart.SteerReusePort) so they empty, and they
// are adopted once the workers run (serving). A group whose every socket this process
// uses is unsteered, in case the parent had steered it.
func (h *hotRestart) steer(srv *engine.Server) {
	if h.child == nil {
		return
	}
	n := srv.Concurrency()
	extra := map[netip.AddrPort]bool{}
	for _, s := range h.child.Sockets() {
		if s.ReusePort && !s.Taken {
			extra[s.Address] = true
		}
	}
	done := map[netip.AddrPort]bool{}
	for _, s := range h.child.Sockets() {
		if !s.ReusePort || done[s.Address] {
			continue
		}
		done[s.Address] = true
		var err error
		if extra[s.Address] {
			err = hotrestart.SteerReusePort(s.Fd, n)
			h.log.Info("hot restart: the parent has more sockets than this process has workers; steering new connections to the first ones",
				"address", s.Address.String(), "workers", n)
		} else {
			err = hotrestart.UnsteerReusePort(s.Fd)
		}
		if err != nil {
			h.log.Warn("hot restart: steering", "address", s.Address.String(), "err", err)
		}
	}
}

// statsSource reports server.hot_restart_epoch and server.hot_restart_generation (Envoy's
// gauges): the generation is 1 for a cold start and the parent's plus one after.
func (h *hotRestart) statsSource() engine.StatsSource {
	gen := 1
	if h.child != nil {
		gen = h.child.ParentGeneration + 1
	}
	return hotRestartStats{epoch: *h.epoch, generation: gen}
}

type hotRestartStats struct{ epoch, generation int }

func (hotRestartStats) StatsFamily() string      { return "server" }
func (hotRestartStats) StatsLabels() [][2]string { return nil }
func (s hotRestartStats) VisitStats(worker int, v engine.StatVisitor) {
	if worker == 0 {
		v("hot_restart_epoch", engine.KindGauge, float64(s.epoch))
		v("hot_restart_generation", engine.KindGauge, float64(s.generation))
	}
}

// carried is admin's CarriedCounters: the parent's last counters (see hotrestart).
func (h *hotRestart) carried() map[string]uint64 {
	if h.child == nil {
		return nil
	}
	return h.child.Counters()
}

// serving runs once the workers run and admin says LIVE: a child serves the inherited
// admin socket, adopts the parent's extra sockets and tells the parent to drain, then
// counts parent-shutdown-time; every process starts answering the next epoch's child.
func (h *hotRestart) serving(srv *engine.Server, adm *admin.Admin, adminAddr netip.AddrPort, sigs chan<- os.Signal) {
	h.srv, h.adm, h.sigs = srv, adm, sigs
	if !h.enabled {
		return
	}
	if h.child != nil {
		if h.adminLn != nil {
			adm.Serve(h.adminLn)
			h.log.Info("admin listening (inherited from the parent)", "address", adminAddr.String())
		}
		for _, s := range h.child.TakeUnclaimed() {
			if err := srv.AdoptListenSocket(s.Listener, s.Fd, s.Worker, adoptedSocketIdle); err != nil {
				h.log.Warn("hot restart: adopting a socket of the parent", "err", err)
			}
		}
		if err := h.child.Drain(); err != nil {
			h.log.Error("hot restart: asking the parent to drain", "err", err)
		} else {
			shutdown := time.Duration(*h.parentShutdown) * time.Second
			go func() {
				select {
				case <-time.After(shutdown):
					if err := h.child.Terminate(); err == nil {
						h.log.Info("hot restart: parent-shutdown-time over; parent told to exit")
					}
				case <-h.child.Gone():
				}
			}()
			go func() {
				<-h.child.Gone()
				h.log.Info("hot restart: the parent has exited", "parent_pid", h.child.ParentPID)
			}()
		}
	}
	go h.parent.Serve(hotrestart.ParentHooks{
		Epoch:      *h.epoch,
		Generation: h.statsSource().(hotRestartStats).generation,
		Sockets:    srv.ListenSockets,
		Admin: func() (int, netip.AddrPort, bool) {
			if !adminAddr.IsValid() {
				return -1, netip.AddrPort{}, false
			}
			fd, err := adm.ListenerFd()
			if err != nil {
				h.log.Warn("hot restart: admin socket for the child", "err", err)
				return -1, netip.AddrPort{}, false
			}
			return fd, adminAddr, true
		},
		Drain:       h.handOver,
		Terminate:   h.terminate,
		ChildFailed: h.childFailed,
		Logger:      h.log,
	})
}

// handOver is the parent's side of the child's drain request: the child serves admin
// already, so ours closes; the drain itself runs on the main goroutine (eventHandedOver).
func (h *hotRestart) handOver() {
	// stopStats before handedOver: exit() uses it once it sees handedOver.
	h.stopStats = make(chan struct{})
	h.statsDone.Add(1)
	h.handedOver.Store(true)
	go h.adm.Close()
	go func() {
		defer h.statsDone.Done()
		t := time.NewTicker(hotRestartStatsInterval)
		defer t.Stop()
		for {
			h.parent.SendStats(h.adm.Counters(), false)
			select {
			case <-t.C:
			case <-h.stopStats:
				return
			}
		}
	}()
	h.sigs <- eventHandedOver
}

// terminate is the parent's side of the child's terminate: the drain ends now (the
// event, like a second SIGTERM, leaves the remaining shutdown steps a second).
func (h *hotRestart) terminate() {
	h.terminated.Store(true)
	select {
	case h.sigs <- eventTerminate:
	default: // the channel is full of signals that end the drain anyway
	}
}

// childFailed puts the SO_REUSEPORT groups back to the kernel's hash after a child that
// may have steered them went away before taking over.
func (h *hotRestart) childFailed() {
	for _, s := range h.srv.ListenSockets() {
		if s.ReusePort && s.Worker == 0 {
			if err := hotrestart.UnsteerReusePort(s.Fd); err != nil {
				h.log.Warn("hot restart: unsteering after a failed child", "err", err)
			}
		}
		syscall.Close(s.Fd)
	}
}

// handingOver reports whether sig is a child's drain request; the drain then takes the
// hot restart drain time.
func (h *hotRestart) handingOver(sig os.Signal) bool {
	if sig != eventHandedOver {
		return false
	}
	h.drainStart = time.Now()
	return true
}

// stepLimit bounds serve()'s drain step: the drain time, and for a hot restart's parent
// parent-shutdown-time, which is when the child tells it to go (Envoy's parent keeps what
// is left of its connections after the drain time until then).
func (h *hotRestart) stepLimit(drain time.Duration) time.Duration {
	if h.handedOver.Load() {
		return max(drain, time.Duration(*h.parentShutdown)*time.Second+parentShutdownSlack) + time.Second
	}
	return drain + time.Second
}

// drain is serve()'s drain. A hot restart's parent runs Envoy's drain sequence instead of
// the SIGTERM drain: it stops accepting, and for --drain-time-s HTTP connections are asked
// to close after their responses (by --drain-strategy); idle keep-alive connections are
// left alone until their next request, not closed under a client that may be sending one
// (an HTTP/1.1 race that costs a naive client its request). The parent then exits when
// its last connection has ended, when the child says terminate (parent-shutdown-time), or
// at its own parent-shutdown-time and a few seconds if the child is gone.
func (h *hotRestart) drain(srv *engine.Server, drain time.Duration) bool {
	if !h.handedOver.Load() {
		return srv.Drain(drain)
	}
	srv.StopListeners()
	srv.StartDrainSequence(nil)
	deadline := h.drainStart.Add(time.Duration(*h.parentShutdown)*time.Second + parentShutdownSlack)
	for srv.DownstreamOpen() > 0 && !h.terminated.Load() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	return srv.DownstreamOpen() == 0
}

// exit sends the child the final counters (after the connections are closed, so nothing
// counted is missed) and closes the session.
func (h *hotRestart) exit() {
	if h.handedOver.Load() {
		close(h.stopStats)
		h.statsDone.Wait()
		if err := h.parent.SendStats(h.adm.Counters(), true); err != nil {
			h.log.Warn("hot restart: final stats to the child", "err", err)
		}
	}
	h.close()
}

// Package admin serves Portico's admin HTTP endpoints: readiness, stats (Envoy text and
// Prometheus), listeners, clusters, and through a Control the configuration dump, health
// check failing and listener draining.
package admin

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/engine"
)

// State is what /ready reports.
type State int32

// Server states, as Envoy names them.
const (
	PreInitializing State = iota
	Live
	Draining
)

// envoyState is s as Envoy's envoy.admin.v3.ServerInfo.State numbers it, the value of
// the server.state gauge.
func (s State) envoyState() float64 {
	switch s {
	case Live:
		return 0
	case Draining:
		return 1
	}
	return 2
}

func (s State) String() string {
	switch s {
	case Live:
		return "LIVE"
	case Draining:
		return "DRAINING"
	}
	return "PRE_INITIALIZING"
}

// Defaults for Options.
const (
	DefaultMaxConnections    = 64
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 30 * time.Second
)

// Options configure the admin server. Zero fields take the defaults above; a negative
// timeout or MaxConnections means none.
type Options struct {
	// Logger receives the admin's warnings (and net/http's errors); nil means
	// slog.Default().
	Logger *slog.Logger
	// MaxConnections caps the admin connections open at once. A connection over the cap is
	// closed as soon as it is accepted (not left waiting in the kernel's queue) and counted
	// in server.admin.downstream_cx_overflow. Admin file descriptors come out of the same
	// limit as the data plane's.
	MaxConnections int
	// ReadHeaderTimeout bounds reading a request's headers, ReadTimeout the whole request,
	// WriteTimeout the time from the end of the headers to the end of the response (a large
	// /stats to a client that does not read), IdleTimeout a keep-alive connection waiting
	// for its next request.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// Control serves /drain_listeners and /config_dump and hears of /healthcheck/fail
	// and /healthcheck/ok; nil answers 501 to the first two (the health check endpoints
	// still change /ready).
	Control Control
	// CarriedCounters, if set, gives counter values to add into the summed /stats lines
	// of the same name (listener.echo.downstream_cx_total, server.admin.downstream_cx_total):
	// what a hot restart's parent counted, so counters do not fall back to zero (Envoy's
	// child merges its parent's counters the same way). It is called once per scrape; the
	// map must not change after it is returned. Per-worker lines and the Prometheus form
	// are not adjusted, and a name this process has no line for is not shown.
	CarriedCounters func() map[string]uint64
}

func orDefault[T int | time.Duration](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// Admin is the admin HTTP server.
type Admin struct {
	srv   *engine.Server
	log   *slog.Logger
	state atomic.Int32
	// hcFailed is /healthcheck/fail in effect: a LIVE server reports DRAINING.
	hcFailed atomic.Bool
	control  Control
	http     *http.Server
	ln       net.Listener
	max      int
	cx       adminStats
	// text and prom are /stats and /stats/prometheus, which share one scraper.
	text, prom *endpoint
	// lastWarn is when the last connection-overflow warning was logged (unix ns).
	lastWarn atomic.Int64
	carried  func() map[string]uint64
}

// adminStats are the admin listener's own stats, shown as server.admin.*.
type adminStats struct {
	total    engine.Counter // connections served
	active   engine.Gauge
	overflow engine.Counter // connections closed at once: MaxConnections were open
}

// New builds the admin server for s; Start binds it.
func New(s *engine.Server, o Options) *Admin {
	a := &Admin{srv: s, log: o.Logger, max: orDefault(o.MaxConnections, DefaultMaxConnections), control: o.Control,
		carried: o.CarriedCounters}
	if a.log == nil {
		a.log = slog.Default()
	}
	sc := newScraper(a)
	a.text = &endpoint{sc: sc, format: (*scraper).appendText}
	a.prom = &endpoint{sc: sc, format: (*scraper).appendProm}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", a.ready)
	mux.HandleFunc("GET /stats", a.stats)
	mux.HandleFunc("GET /stats/prometheus", a.prometheus)
	mux.HandleFunc("GET /listeners", a.listeners)
	mux.HandleFunc("GET /clusters", a.clusters)
	mux.HandleFunc("GET /config_dump", a.configDump)
	// The endpoints that change the server take every method, so that anything but POST
	// gets Envoy's 405 rather than the mux's.
	mux.HandleFunc("/healthcheck/fail", a.healthcheckFail)
	mux.HandleFunc("/healthcheck/ok", a.healthcheckOK)
	mux.HandleFunc("/drain_listeners", a.drainListeners)
	mux.HandleFunc("GET /{$}", a.index)
	a.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: orDefault(o.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		ReadTimeout:       orDefault(o.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:      orDefault(o.WriteTimeout, DefaultWriteTimeout),
		IdleTimeout:       orDefault(o.IdleTimeout, DefaultIdleTimeout),
		ErrorLog:          slog.NewLogLogger(a.log.With("component", "admin").Handler(), slog.LevelWarn),
	}
	return a
}

// SetState changes what /ready reports.
func (a *Admin) SetState(s State) { a.state.Store(int32(s)) }

// State is what /ready reports: the last SetState, except that a LIVE server whose health
// checks were failed (POST /healthcheck/fail) is DRAINING, as Envoy's serverState has it.
func (a *Admin) State() State {
	st := State(a.state.Load())
	if st == Live && a.hcFailed.Load() {
		return Draining
	}
	return st
}

// Start binds addr and serves in the background. It returns the bound address. An IPv4
// address binds IPv4 only and an IPv6 address IPv6 only (0.0.0.0 is not also [::]); an
// address other than loopback is bound with a warning, as admin can fail readiness and
// shows the configuration to whoever reaches it.
func (a *Admin) Start(addr netip.AddrPort) (net.Addr, error) {
	ip := addr.Addr().Unmap()
	if !ip.IsValid() {
		return nil, fmt.Errorf("admin: no address")
	}
	addr = netip.AddrPortFrom(ip, addr.Port())
	network := "tcp4"
	if ip.Is6() {
		network = "tcp6"
	}
	ln, err := net.Listen(network, addr.String())
	if err != nil {
		return nil, fmt.Errorf("admin: bind %s: %w", addr, err)
	}
	if !ip.IsLoopback() {
		a.log.Warn("admin address is not loopback: anyone who reaches it can fail readiness and read the stats and configuration; keep admin on 127.0.0.1 or ::1 (as Envoy advises) unless the network in front of it is trusted",
			"address", ln.Addr().String())
	}
	return a.Serve(ln), nil
}

// Serve serves on ln, a listener bound elsewhere: the admin socket a hot restart's parent
// handed over, so the admin address never stops answering. It returns ln's address.
func (a *Admin) Serve(ln net.Listener) net.Addr {
	a.ln = &limitListener{Listener: ln, a: a}
	go a.http.Serve(a.ln)
	return ln.Addr()
}

// ListenerFd returns a duplicate (close-on-exec) of the admin listen socket's fd, for a
// hot restart's child; the caller closes it. The duplicate is made through SyscallConn,
// which (unlike File().Fd()) leaves the shared socket non-blocking.
func (a *Admin) ListenerFd() (int, error) {
	if a.ln == nil {
		return -1, fmt.Errorf("admin: not listening")
	}
	sc, ok := a.ln.(*limitListener).Listener.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("admin: listener %T has no fd", a.ln.(*limitListener).Listener)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("admin: %w", err)
	}
	nfd, derr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, fmt.Errorf("admin: %w", err)
	}
	if derr != nil {
		return -1, fmt.Errorf("admin: dup listen socket: %w", derr)
	}
	return nfd, nil
}

// Close stops the admin server: it stops accepting, lets requests in flight finish for a
// second, then closes whatever is left.
func (a *Admin) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := a.http.Shutdown(ctx); err != nil {
		return a.http.Close()
	}
	return nil
}

// overflowWarnEvery rate-limits the connection-overflow warning.
const overflowWarnEvery = 10 * time.Second

// limitListener closes connections over the Admin's cap as soon as they are accepted.
type limitListener struct {
	net.Listener
	a *Admin
}

func (l *limitListener) Accept() (net.Conn, error) {
	a := l.a
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		// Serve accepts on one goroutine, so this check and the Inc below do not race with
		// another Accept; Close may only lower the count meanwhile.
		if a.max > 0 && a.cx.active.Value() >= int64(a.max) {
			c.Close()
			a.cx.overflow.Inc()
			now := time.Now().UnixNano()
			if last := a.lastWarn.Load(); now-last >= int64(overflowWarnEvery) && a.lastWarn.CompareAndSwap(last, now) {
				a.log.Warn("admin connection limit reached; closing new admin connections",
					"max_connections", a.max, "downstream_cx_overflow", a.cx.overflow.Value())
			}
			continue
		}
		a.cx.total.Inc()
		a.cx.active.Inc()
		return &limitConn{Conn: c, a: a}, nil
	}
}

// limitConn gives its slot back once, however often it is closed.
type limitConn struct {
	net.Conn
	a      *Admin
	closed atomic.Bool
}

func (c *limitConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.a.cx.active.Dec()
	}
	return c.Conn.Close()
}

// CloseWrite lets net/http half-close before closing, as it does on a bare TCP connection.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// indexText lists the endpoints, POST marking those that change the server as Envoy's
// help does.
const indexText = `Portico admin
  /ready: print server state, return 200 if LIVE, otherwise return 503
  /stats: print server stats
  /stats/prometheus: print server stats in prometheus format
  /listeners: print listener info
      format: File format to use; One of (text, json)
  /clusters: upstream cluster status
  /config_dump: dump current configs
      resource: The resource to dump
      mask: The mask to apply
      name_regex: Dump only the configurations whose names match the regex
  /healthcheck/fail (POST): cause the server to fail health checks
  /healthcheck/ok (POST): cause the server to pass health checks
  /drain_listeners (POST): drain listeners
      graceful: enter a graceful drain period (--drain-time-s, --drain-strategy) before closing listeners
      skip_exit: do not close the listeners after the drain period; must be used with graceful
      inboundonly: drain only the listeners whose traffic_direction is INBOUND
`

func (a *Admin) index(w http.ResponseWriter, _ *http.Request) {
	fmt.Fprint(w, indexText)
}

func (a *Admin) ready(w http.ResponseWriter, _ *http.Request) {
	st := a.State()
	if st != Live {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, st)
}

// visitOwn reports the admin's own stats, in ownNames' order: the admin listener's and
// Envoy's server.live (1 while LIVE) and server.state (ServerInfo.State's number). They
// have one value (no worker) and show by their full names, and in Prometheus as
// portico_<name with '_' for '.'>.
func (a *Admin) visitOwn(v engine.StatVisitor) {
	st := a.State()
	live := 0.0
	if st == Live {
		live = 1
	}
	v("server.admin.downstream_cx_active", engine.KindGauge, float64(a.cx.active.Value()))
	v("server.admin.downstream_cx_overflow", engine.KindCounter, float64(a.cx.overflow.Value()))
	v("server.admin.downstream_cx_total", engine.KindCounter, float64(a.cx.total.Value()))
	v("server.live", engine.KindGauge, live)
	v("server.state", engine.KindGauge, st.envoyState())
}

// listeners lists the listeners the engine has now (Server.Listeners is read on every
// request, never cached, as listeners come and go), as Envoy's text (name::address) or,
// with ?format=json, envoy.admin.v3.Listeners.
func (a *Admin) listeners(w http.ResponseWriter, r *http.Request) {
	// Envoy prints text for any other format.
	if r.URL.Query().Get("format") == "json" {
		a.listenersAsJSON(w)
		return
	}
	for _, l := range a.srv.Listeners() {
		addr := l.Address().String()
		if l.Config().NoBindToPort {
			addr += " (bind_to_port: false)"
		}
		fmt.Fprintf(w, "%s::%s\n", l.Name(), addr)
	}
}

func (a *Admin) clusters(w http.ResponseWriter, _ *http.Request) {
	for _, c := range a.srv.Clusters() {
		cfg := c.Config()
		var active int64
		for wi := 0; wi < a.srv.Concurrency(); wi++ {
			active += c.Stats(wi).UpstreamCxActive.Value()
		}
		fmt.Fprintf(w, "%s::lb_policy::%s\n%s::upstream_cx_active::%d\n", c.Name(), cfg.LBPolicy, c.Name(), active)
		for _, h := range c.Hosts() {
			health := "healthy"
			if !h.Healthy() {
				health = "/failed_active_hc"
				if h.HealthFlags()&engine.FailedOutlierCheck != 0 {
					health = "/failed_outlier_check"
				}
			}
			fmt.Fprintf(w, "%s::%s::weight::%d\n%s::%s::health_flags::%s\n", c.Name(), h.Address(), h.Weight(), c.Name(), h.Address(), health)
		}
	}
}

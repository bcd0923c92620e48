// Package health is Envoy's active health checking (health_checks on a cluster): TCP
// checks (connect, optionally send bytes and expect bytes back) and HTTP/1.1 checks (a
// request whose status, and optionally body, decide). A Checker watches one cluster's
// hosts and runs off the workers, with Go's net package and deadlines; what it decides
// reaches the workers as the hosts' FailedActiveHealthCheck flag (an atomic), which their
// load balancers read on every pick.
//
// The state machine is Envoy's (health_checker_impl.cc): hosts start failed until their
// first check, which alone makes them healthy; afterwards healthy_threshold passes in a
// row make a failed host healthy and unhealthy_threshold network failures (refused,
// reset, timed out) in a row make a healthy host fail, while an HTTP status outside
// expected_statuses (and retriable_statuses) fails it at once.
package health

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portico-proxy/portico/engine"
)

// Config is one translated HealthCheck.
type Config struct {
	Timeout  time.Duration
	Interval time.Duration
	// InitialJitter delays each host's first check by a random time below it.
	InitialJitter time.Duration
	// IntervalJitter and IntervalJitterPercent add a random time below them (the percent
	// of the interval used) to every wait.
	IntervalJitter        time.Duration
	IntervalJitterPercent uint32
	UnhealthyThreshold    uint32
	HealthyThreshold      uint32
	// NoTrafficInterval is the interval while the cluster has carried no traffic (Envoy's
	// default 60 s); NoTrafficHealthyInterval, if set, is that for passing hosts.
	NoTrafficInterval        time.Duration
	NoTrafficHealthyInterval time.Duration
	// UnhealthyInterval is the interval of failed hosts (default Interval);
	// UnhealthyEdgeInterval and HealthyEdgeInterval the one right after a host changed
	// state (defaults UnhealthyInterval and Interval).
	UnhealthyInterval     time.Duration
	UnhealthyEdgeInterval time.Duration
	HealthyEdgeInterval   time.Duration
	// ReuseConnection keeps an HTTP check's connection for the next check (Envoy's
	// default). TCP checks always open a new connection.
	ReuseConnection bool

	TCP  *TCPCheck
	HTTP *HTTPCheck

	// EventLog, if not nil, receives Envoy's health-check events as JSON lines: a host
	// ejected or added, and the failures of first checks (every failure with
	// AlwaysLogFailures).
	EventLog          io.Writer
	AlwaysLogFailures bool

	// MaxConcurrent bounds the checks in flight at once (default 64).
	MaxConcurrent int

	// HostsReady, if not nil, is closed once the cluster has its first hosts (a DNS
	// cluster's first resolution): Warm waits for it before judging the host set.
	HostsReady <-chan struct{}
}

// TCPCheck is tcp_health_check: with no Send and no Receive, a connect-only check.
type TCPCheck struct {
	Send []byte
	// Receive are blocks that must all arrive, in this order, not necessarily adjacent.
	Receive [][]byte
}

// HTTPCheck is http_health_check (HTTP/1.1).
type HTTPCheck struct {
	// Host is the Host header; "" takes the host's hostname, else the cluster's name.
	Host   string
	Path   string
	Method string // default GET
	Body   []byte
	// Receive are blocks the first ResponseBufferSize bytes of the body must hold in
	// order (0: the whole body).
	Receive            [][]byte
	ResponseBufferSize int
	// Expected are the passing statuses (default [200, 201)); Retriable failing ones
	// that count towards the unhealthy threshold instead of failing at once.
	Expected  []StatusRange
	Retriable []StatusRange
	Headers   []Header
	Remove    []string
}

// StatusRange is a half-open range of statuses [Start, End).
type StatusRange struct{ Start, End int }

// Header is one request_headers_to_add entry.
type Header struct {
	Name, Value string
	Append      bool
}

// Stats are a checker's health_check.* stats.
type Stats struct {
	Attempt        engine.Counter
	Success        engine.Counter
	Failure        engine.Counter
	NetworkFailure engine.Counter
	PassiveFailure engine.Counter
	VerifyCluster  engine.Counter
}

// Checker health-checks one cluster's hosts (a config.Runner).
type Checker struct {
	c     *engine.Cluster
	cfg   Config
	stats Stats
	sem   chan struct{}
	evMu  sync.Mutex // serializes EventLog writes
	log   atomic.Pointer[slog.Logger]
	seed  atomic.Uint64 // seeds each session's random source (jitter)

	mu       sync.Mutex
	sessions map[*engine.Host]*session
	warm     chan struct{} // closed once every host has had its first check
	warmed   bool          // under mu
}

// New prepares a checker for cluster c and marks the cluster's hosts as waiting for
// their first check. keepHealthyOnRemoval is the inverse of Envoy's
// ignore_health_on_host_removal (see engine.Cluster.EnableActiveHealthChecking).
func New(c *engine.Cluster, cfg Config, keepHealthyOnRemoval bool) (*Checker, error) {
	if (cfg.TCP == nil) == (cfg.HTTP == nil) {
		return nil, errors.New("health: exactly one of TCP and HTTP")
	}
	if cfg.Timeout <= 0 || cfg.Interval <= 0 {
		return nil, errors.New("health: timeout and interval must be positive")
	}
	cfg.UnhealthyThreshold = max(cfg.UnhealthyThreshold, 1)
	cfg.HealthyThreshold = max(cfg.HealthyThreshold, 1)
	if cfg.NoTrafficInterval <= 0 {
		cfg.NoTrafficInterval = 60 * time.Second
	}
	if cfg.UnhealthyInterval <= 0 {
		cfg.UnhealthyInterval = cfg.Interval
	}
	if cfg.UnhealthyEdgeInterval <= 0 {
		cfg.UnhealthyEdgeInterval = cfg.UnhealthyInterval
	}
	if cfg.HealthyEdgeInterval <= 0 {
		cfg.HealthyEdgeInterval = cfg.Interval
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 64
	}
	if h := cfg.HTTP; h != nil {
		if h.Method == "" {
			h.Method = http.MethodGet
		}
		if len(h.Expected) == 0 {
			h.Expected = []StatusRange{{200, 201}}
		}
		if h.Path == "" {
			h.Path = "/"
		}
	}
	k := &Checker{c: c, cfg: cfg, sem: make(chan struct{}, cfg.MaxConcurrent), sessions: map[*engine.Host]*session{},
		warm: make(chan struct{})}
	k.seed.Store(uint64(time.Now().UnixNano()))
	c.EnableActiveHealthChecking(keepHealthyOnRemoval)
	return k, nil
}

// Warm is closed once every host of the cluster has had its first check (a
// config.Warmer): Envoy's cluster initialisation waits for that too, so the first
// connections do not meet hosts whose health is unknown.
func (k *Checker) Warm() <-chan struct{} { return k.warm }

// maybeWarm closes warm if every current host has had a check. Called under k.mu.
func (k *Checker) maybeWarm() {
	if k.warmed {
		return
	}
	if r := k.cfg.HostsReady; r != nil {
		select {
		case <-r:
		default:
			return
		}
	}
	for _, h := range k.c.Hosts() {
		if s := k.sessions[h]; s == nil || !s.checked.Load() {
			return
		}
	}
	k.warmed = true
	close(k.warm)
}

// SetLogger gives the checker a logger for hosts changing state (the binary's).
func (k *Checker) SetLogger(l *slog.Logger) { k.log.Store(l) }

func (k *Checker) logf(msg string, h *engine.Host, args ...any) {
	if l := k.log.Load(); l != nil {
		l.Info(msg, append([]any{"cluster", k.c.Name(), "host", h.Address().String()}, args...)...)
	}
}

// Cluster is the checked cluster.
func (k *Checker) Cluster() *engine.Cluster { return k.c }

// Stats returns the checker's stats.
func (k *Checker) Stats() *Stats { return &k.stats }

// Run checks the cluster's hosts, those a host-set update adds too, until ctx is done.
func (k *Checker) Run(ctx context.Context) {
	watch := k.c.WatchHosts()
	var wg sync.WaitGroup
	defer wg.Wait()
	var tr *http.Transport
	if k.cfg.HTTP != nil {
		tr = &http.Transport{
			DisableKeepAlives:   !k.cfg.ReuseConnection,
			DisableCompression:  true,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     k.cfg.Interval + k.cfg.UnhealthyInterval + k.cfg.NoTrafficInterval,
			Proxy:               nil,
		}
		defer tr.CloseIdleConnections()
	}
	sync := func() {
		hosts := k.c.Hosts()
		k.mu.Lock()
		defer k.mu.Unlock()
		for h, s := range k.sessions {
			if !containsHost(hosts, h) {
				s.cancel()
				delete(k.sessions, h)
			}
		}
		for _, h := range hosts {
			if _, ok := k.sessions[h]; ok {
				continue
			}
			sctx, cancel := context.WithCancel(ctx)
			s := &session{k: k, h: h, cancel: cancel, first: true, rng: rand.New(rand.NewPCG(k.seed.Add(1), uint64(len(k.sessions))))}
			if tr != nil {
				s.client = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			}
			k.sessions[h] = s
			wg.Add(1)
			go func() { defer wg.Done(); s.run(sctx) }()
		}
		k.maybeWarm()
	}
	sync()
	ready := k.cfg.HostsReady
	for {
		select {
		case <-ctx.Done():
			return
		case <-watch:
			sync()
		case <-ready:
			ready = nil
			sync()
		}
	}
}

// Healthy is the number of the cluster's hosts passing their checks.
func (k *Checker) Healthy() int {
	n := 0
	for _, h := range k.c.Hosts() {
		if !failed(h) {
			n++
		}
	}
	return n
}

func failed(h *engine.Host) bool { return h.HealthFlags()&engine.FailedActiveHealthCheck != 0 }

func containsHost(hs []*engine.Host, h *engine.Host) bool {
	for _, x := range hs {
		if x == h {
			return true
		}
	}
	return false
}

// outcome of one check.
type outcome int

const (
	pass          outcome = iota
	failActive            // a wrong answer: the host fails at once
	failRetriable         // a retriable status: counts towards the threshold
	failNetwork           // refused, reset, closed early
	failTimeout           // no (whole) answer within timeout
)

// session checks one host (Envoy's ActiveHealthCheckSession); only its goroutine
// touches its counters.
type session struct {
	k         *Checker
	h         *engine.Host
	cancel    context.CancelFunc
	client    *http.Client
	rng       *rand.Rand
	first     bool
	checked   atomic.Bool // has had a check result (for Warm)
	healthy   uint32      // passes in a row while failed
	unhealthy uint32      // counted failures in a row while passing
}

func (s *session) run(ctx context.Context) {
	wait := time.Duration(0)
	if j := s.k.cfg.InitialJitter; j > 0 {
		wait = time.Duration(s.rng.Int64N(int64(j)))
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		select {
		case s.k.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		s.k.stats.Attempt.Inc()
		out, detail := s.check(ctx)
		<-s.k.sem
		if ctx.Err() != nil {
			return // cancelled mid-check: not the host's failure
		}
		changed := s.apply(out, detail)
		if !s.checked.Load() {
			s.checked.Store(true)
			s.k.mu.Lock()
			s.k.maybeWarm()
			s.k.mu.Unlock()
		}
		t.Reset(s.interval(changed))
	}
}

// apply moves the host's state for one outcome and reports whether it changed.
func (s *session) apply(out outcome, detail string) bool {
	k, h := s.k, s.h
	failed := failed(h)
	first := s.first
	s.first = false
	if out == pass {
		k.stats.Success.Inc()
		s.unhealthy = 0
		if d := k.c.OutlierDetector(); d != nil {
			d.ActiveCheckSucceeded(h)
		}
		if !failed {
			return false
		}
		// The first check alone makes a host healthy (faster start-up, as in Envoy).
		if s.healthy++; first || s.healthy >= k.cfg.HealthyThreshold {
			s.healthy = 0
			h.SetHealthFlag(engine.FailedActiveHealthCheck, false)
			k.event(h, fmt.Sprintf(`"add_healthy_event":{"first_check":%t}`, first))
			if !first {
				k.logf("health check: host healthy", h)
			}
			return true
		}
		return false
	}
	k.stats.Failure.Inc()
	if out == failNetwork || out == failTimeout {
		k.stats.NetworkFailure.Inc()
	}
	s.healthy = 0
	if first || k.cfg.AlwaysLogFailures {
		if k.cfg.AlwaysLogFailures {
			k.logf("health check failed", h, "failure_type", failureType(out), "details", detail)
		}
		k.event(h, fmt.Sprintf(`"health_check_failure_event":{"failure_type":%q,"first_check":%t},"details":%q`, failureType(out), first, detail))
	}
	if failed {
		return false
	}
	if s.unhealthy++; out == failActive || s.unhealthy >= k.cfg.UnhealthyThreshold {
		s.unhealthy = 0
		h.SetHealthFlag(engine.FailedActiveHealthCheck, true)
		k.event(h, fmt.Sprintf(`"eject_unhealthy_event":{"failure_type":%q}`, failureType(out)))
		k.logf("health check: host unhealthy", h, "failure_type", failureType(out), "details", detail)
		return true
	}
	return false
}

func failureType(o outcome) string {
	switch o {
	case failNetwork:
		return "NETWORK"
	case failTimeout:
		return "NETWORK_TIMEOUT"
	}
	return "ACTIVE"
}

// interval is the wait before the next check (Envoy's HealthCheckerImplBase::interval).
func (s *session) interval(changed bool) time.Duration {
	cfg := &s.k.cfg
	healthy := !failed(s.h)
	var d time.Duration
	switch {
	case !s.k.c.HadTraffic():
		d = cfg.NoTrafficInterval
		if healthy && cfg.NoTrafficHealthyInterval > 0 {
			d = cfg.NoTrafficHealthyInterval
		}
	case changed && healthy:
		d = cfg.HealthyEdgeInterval
	case changed:
		d = cfg.UnhealthyEdgeInterval
	case healthy:
		d = cfg.Interval
	default:
		d = cfg.UnhealthyInterval
	}
	if p := cfg.IntervalJitterPercent; p > 0 {
		if j := int64(d) * int64(p) / 100; j > 0 {
			d += time.Duration(s.rng.Int64N(j))
		}
	}
	if j := cfg.IntervalJitter; j > 0 {
		d += time.Duration(s.rng.Int64N(int64(j)))
	}
	return d
}

// check runs one check of the host.
func (s *session) check(ctx context.Context) (outcome, string) {
	ctx, cancel := context.WithTimeout(ctx, s.k.cfg.Timeout)
	defer cancel()
	if s.k.cfg.TCP != nil {
		return s.checkTCP(ctx)
	}
	return s.checkHTTP(ctx)
}

func netOutcome(ctx context.Context, err error) (outcome, string) {
	if ctx.Err() == context.DeadlineExceeded || isTimeout(err) {
		return failTimeout, err.Error()
	}
	return failNetwork, err.Error()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (s *session) checkTCP(ctx context.Context) (outcome, string) {
	tc := s.k.cfg.TCP
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.h.Address().String())
	if err != nil {
		return netOutcome(ctx, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if len(tc.Send) > 0 {
		if _, err := conn.Write(tc.Send); err != nil {
			return netOutcome(ctx, err)
		}
	}
	if len(tc.Receive) == 0 {
		return pass, ""
	}
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		got = append(got, buf[:n]...)
		if matchInOrder(got, tc.Receive) {
			return pass, ""
		}
		if err != nil {
			if err == io.EOF {
				return failNetwork, "connection closed before the expected bytes arrived"
			}
			return netOutcome(ctx, err)
		}
		if len(got) > 1<<20 {
			return failActive, "no match in the first MiB"
		}
	}
}

// matchInOrder reports whether every block is found in data, in order (Envoy's fuzzy
// payload match).
func matchInOrder(data []byte, blocks [][]byte) bool {
	for _, b := range blocks {
		i := bytes.Index(data, b)
		if i < 0 {
			return false
		}
		data = data[i+len(b):]
	}
	return true
}

func inRanges(code int, rs []StatusRange) bool {
	for _, r := range rs {
		if code >= r.Start && code < r.End {
			return true
		}
	}
	return false
}

func (s *session) checkHTTP(ctx context.Context) (outcome, string) {
	hc := s.k.cfg.HTTP
	var body io.Reader
	if len(hc.Body) > 0 {
		body = bytes.NewReader(hc.Body)
	}
	req, err := http.NewRequestWithContext(ctx, hc.Method, "http://"+s.h.Address().String()+hc.Path, body)
	if err != nil {
		return failActive, err.Error()
	}
	req.Host = hc.Host
	if req.Host == "" {
		req.Host = s.h.Hostname()
	}
	if req.Host == "" {
		req.Host = s.k.c.Name()
	}
	req.Header.Set("User-Agent", "Envoy/HC")
	for _, h := range hc.Headers {
		if strings.EqualFold(h.Name, "host") || h.Name == ":authority" {
			req.Host = h.Value
			continue
		}
		if h.Append {
			req.Header.Add(h.Name, h.Value)
		} else {
			req.Header.Set(h.Name, h.Value)
		}
	}
	for _, name := range hc.Remove {
		req.Header.Del(name)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return netOutcome(ctx, err)
	}
	defer resp.Body.Close()
	var rd io.Reader = resp.Body
	limit := int64(hc.ResponseBufferSize)
	if limit <= 0 {
		limit = 1 << 20
	}
	rd = io.LimitReader(rd, limit)
	var got []byte
	if len(hc.Receive) > 0 {
		got, err = io.ReadAll(bufio.NewReader(rd))
		if err != nil && !matchInOrder(got, hc.Receive) {
			return netOutcome(ctx, err)
		}
	} else {
		// Read the (short) rest so that the connection can be reused.
		io.Copy(io.Discard, rd)
	}
	switch {
	case inRanges(resp.StatusCode, hc.Expected):
		if len(hc.Receive) > 0 && !matchInOrder(got, hc.Receive) {
			return failActive, "response body does not match"
		}
		return pass, ""
	case inRanges(resp.StatusCode, hc.Retriable):
		return failRetriable, fmt.Sprintf("status %d (retriable)", resp.StatusCode)
	}
	return failActive, fmt.Sprintf("status %d", resp.StatusCode)
}

// event writes one health-check event line (Envoy's HealthCheckEvent, as JSON).
func (k *Checker) event(h *engine.Host, body string) {
	if k.cfg.EventLog == nil {
		return
	}
	typ := "TCP"
	if k.cfg.HTTP != nil {
		typ = "HTTP"
	}
	a := h.Address()
	line := fmt.Sprintf(`{"health_checker_type":%q,"host":{"socket_address":{"protocol":"TCP","address":%q,"port_value":%d}},"cluster_name":%q,%s,"timestamp":%q}`+"\n",
		typ, a.Addr().String(), a.Port(), k.c.Name(), body, time.Now().UTC().Format(time.RFC3339Nano))
	k.evMu.Lock()
	defer k.evMu.Unlock()
	io.WriteString(k.cfg.EventLog, line)
}

// StatsFamily implements engine.StatsSource: cluster.<name>.health_check.*.
func (k *Checker) StatsFamily() string { return "cluster" }

// StatsLabels implements engine.StatsSource.
func (k *Checker) StatsLabels() [][2]string { return [][2]string{{"cluster", k.c.Name()}} }

// VisitStats implements engine.StatsSource. The stats are the checker's, not a worker's:
// worker 0 reports them, the others zeros, so that the sum over workers is the value.
func (k *Checker) VisitStats(worker int, v engine.StatVisitor) {
	s := &k.stats
	c := func(name string, x *engine.Counter) {
		n := float64(x.Value())
		if worker != 0 {
			n = 0
		}
		v(name, engine.KindCounter, n)
	}
	c("health_check.attempt", &s.Attempt)
	c("health_check.success", &s.Success)
	c("health_check.failure", &s.Failure)
	c("health_check.network_failure", &s.NetworkFailure)
	c("health_check.passive_failure", &s.PassiveFailure)
	c("health_check.verify_cluster", &s.VerifyCluster)
	n := 0.0
	if worker == 0 {
		n = float64(k.Healthy())
	}
	v("health_check.healthy", engine.KindGauge, n)
	v("health_check.degraded", engine.KindGauge, 0)
}

// Package httpconnmgr is Envoy's HTTP connection manager
// (envoy.filters.network.http_connection_manager) for HTTP/1.1 and 1.0: a network filter
// that parses requests straight from the worker's read buffer with Portico's own codec
// (http/http1), prepares them as Envoy does (x-forwarded-for, x-request-id, hop-by-hop
// headers, path normalisation), selects a route, runs the HTTP filters (the router) and
// encodes their responses, on the connection's worker, without a goroutine or an
// allocation per request.
package httpconnmgr

import (
	"errors"
	"fmt"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/accesslog"
	"github.com/portico-proxy/portico/filters/http/httpfilter"
	"github.com/portico-proxy/portico/http/http1"
	"github.com/portico-proxy/portico/http/route"
)

// Name is the filter's Envoy name.
const Name = "envoy.filters.network.http_connection_manager"

// ServerHeaderTransformation is Envoy's server_header_transformation.
type ServerHeaderTransformation uint8

// Server header handling.
const (
	ServerOverwrite ServerHeaderTransformation = iota
	ServerAppendIfAbsent
	ServerPassThrough
)

// Envoy's defaults.
const (
	DefaultStreamIdleTimeout   = 5 * time.Minute
	DefaultIdleTimeout         = time.Hour
	DefaultDrainTimeout        = 5 * time.Second
	DefaultDelayedCloseTimeout = time.Second
	DefaultServerName          = "portico"
)

// Config is one http_connection_manager's settings, in Envoy's terms. Durations of 0
// mean "disabled" where Envoy's do; New applies no defaults of its own beyond those
// named in the fields' comments, so the config reader sets Envoy's.
type Config struct {
	StatPrefix string
	// Routes is the static route_config; RDS, when Routes is nil, the route
	// configuration from RDS (rds.go), read per request.
	Routes *route.Table
	RDS    *RouteProvider
	// Filters are the HTTP filters, the router last (the only one so far).
	Filters []httpfilter.Factory

	ServerName                 string // "" → DefaultServerName
	ServerHeaderTransformation ServerHeaderTransformation
	UseRemoteAddress           bool
	XffNumTrustedHops          int
	SkipXffAppend              bool
	Via                        string
	GenerateRequestID          bool
	PreserveExternalRequestID  bool
	// AlwaysSetRequestIDInResponse copies x-request-id into the response.
	AlwaysSetRequestIDInResponse bool

	StreamIdleTimeout     time.Duration
	RequestTimeout        time.Duration
	RequestHeadersTimeout time.Duration
	DelayedCloseTimeout   time.Duration
	DrainTimeout          time.Duration
	// IdleTimeout closes a connection without streams after this long (0: never).
	IdleTimeout              time.Duration
	MaxRequestsPerConnection int // 0: no limit
	MaxConnectionDuration    time.Duration

	// Codec limits: max_request_headers_kb, max_headers_count,
	// headers_with_underscores_action, accept_http_10, default_host_for_http_10.
	Limits http1.Limits

	NormalizePath         bool
	MergeSlashes          bool
	StripMatchingHostPort bool
	StripAnyHostPort      bool

	// Upgrades are the upgrade_configs' upgrade types, lower-case ("websocket").
	Upgrades []string
	// Proxy100Continue forwards "Expect: 100-continue" upstream and the upstream's 100
	// downstream; without it the connection manager answers 100 itself.
	Proxy100Continue bool

	AccessLogs []accesslog.Logger
}

// Stats are one stat_prefix's stats on one worker (Envoy's http.<stat_prefix>.*).
type Stats struct {
	DownstreamCxTotal              engine.Counter
	DownstreamCxActive             engine.Gauge
	DownstreamCxHTTP1Total         engine.Counter
	DownstreamCxHTTP1Active        engine.Gauge
	DownstreamCxUpgradesTotal      engine.Counter
	DownstreamCxUpgradesActive     engine.Gauge
	DownstreamCxProtocolError      engine.Counter
	DownstreamCxIdleTimeout        engine.Counter
	DownstreamCxMaxRequestsReached engine.Counter
	DownstreamCxMaxDurationReached engine.Counter
	DownstreamCxDrainClose         engine.Counter
	DownstreamCxDestroy            engine.Counter
	DownstreamCxDestroyActiveRq    engine.Counter
	DownstreamCxRxBytesTotal       engine.Counter
	DownstreamCxTxBytesTotal       engine.Counter
	DownstreamCxHTTP2Refused       engine.Counter // an h2 preface, until HTTP/2 exists
	DownstreamRqTotal              engine.Counter
	DownstreamRqHTTP1Total         engine.Counter
	DownstreamRqActive             engine.Gauge
	DownstreamRq1xx                engine.Counter
	DownstreamRq2xx                engine.Counter
	DownstreamRq3xx                engine.Counter
	DownstreamRq4xx                engine.Counter
	DownstreamRq5xx                engine.Counter
	DownstreamRqCompleted          engine.Counter
	DownstreamRqTimeout            engine.Counter
	DownstreamRqHeadersTimeout     engine.Counter
	DownstreamRqIdleTimeout        engine.Counter
	DownstreamRqRxReset            engine.Counter
	DownstreamRqTxReset            engine.Counter
	DownstreamRqTooLarge           engine.Counter
	DownstreamRqNonRelativePath    engine.Counter
	DownstreamRqWsOnNonWsRoute     engine.Counter
	DownstreamRqDroppedUnderscore  engine.Counter
	RqDirectResponse               engine.Counter
	RqRedirect                     engine.Counter
	NoRoute                        engine.Counter
	NoCluster                      engine.Counter
	// DownstreamRqTime is each request's time from its first byte to the end of its
	// response, in ms (Envoy's downstream_rq_time); DownstreamCxLengthMs the connections'.
	DownstreamRqTime     engine.Histogram
	DownstreamCxLengthMs engine.Histogram
}

func (s *Stats) visit(v engine.StatVisitor) {
	c := func(name string, x *engine.Counter) { v(name, engine.KindCounter, float64(x.Value())) }
	g := func(name string, x *engine.Gauge) { v(name, engine.KindGauge, float64(x.Value())) }
	c("downstream_cx_total", &s.DownstreamCxTotal)
	g("downstream_cx_active", &s.DownstreamCxActive)
	c("downstream_cx_http1_total", &s.DownstreamCxHTTP1Total)
	g("downstream_cx_http1_active", &s.DownstreamCxHTTP1Active)
	c("downstream_cx_upgrades_total", &s.DownstreamCxUpgradesTotal)
	g("downstream_cx_upgrades_active", &s.DownstreamCxUpgradesActive)
	c("downstream_cx_protocol_error", &s.DownstreamCxProtocolError)
	c("downstream_cx_idle_timeout", &s.DownstreamCxIdleTimeout)
	c("downstream_cx_max_requests_reached", &s.DownstreamCxMaxRequestsReached)
	c("downstream_cx_max_duration_reached", &s.DownstreamCxMaxDurationReached)
	c("downstream_cx_drain_close", &s.DownstreamCxDrainClose)
	c("downstream_cx_destroy", &s.DownstreamCxDestroy)
	c("downstream_cx_destroy_active_rq", &s.DownstreamCxDestroyActiveRq)
	c("downstream_cx_rx_bytes_total", &s.DownstreamCxRxBytesTotal)
	c("downstream_cx_tx_bytes_total", &s.DownstreamCxTxBytesTotal)
	c("downstream_cx_http2_refused", &s.DownstreamCxHTTP2Refused)
	c("downstream_rq_total", &s.DownstreamRqTotal)
	c("downstream_rq_http1_total", &s.DownstreamRqHTTP1Total)
	g("downstream_rq_active", &s.DownstreamRqActive)
	c("downstream_rq_1xx", &s.DownstreamRq1xx)
	c("downstream_rq_2xx", &s.DownstreamRq2xx)
	c("downstream_rq_3xx", &s.DownstreamRq3xx)
	c("downstream_rq_4xx", &s.DownstreamRq4xx)
	c("downstream_rq_5xx", &s.DownstreamRq5xx)
	c("downstream_rq_completed", &s.DownstreamRqCompleted)
	c("downstream_rq_timeout", &s.DownstreamRqTimeout)
	c("downstream_rq_header_timeout", &s.DownstreamRqHeadersTimeout)
	c("downstream_rq_idle_timeout", &s.DownstreamRqIdleTimeout)
	c("downstream_rq_rx_reset", &s.DownstreamRqRxReset)
	c("downstream_rq_tx_reset", &s.DownstreamRqTxReset)
	c("downstream_rq_too_large", &s.DownstreamRqTooLarge)
	c("downstream_rq_non_relative_path", &s.DownstreamRqNonRelativePath)
	c("downstream_rq_ws_on_non_ws_route", &s.DownstreamRqWsOnNonWsRoute)
	c("downstream_rq_dropped_headers_with_underscores", &s.DownstreamRqDroppedUnderscore)
	c("rq_direct_response", &s.RqDirectResponse)
	c("rq_redirect", &s.RqRedirect)
	c("no_route", &s.NoRoute)
	c("no_cluster", &s.NoCluster)
}

// workerState is a factory's per-worker state: stats and buffers its connections share
// (they run one at a time on the worker).
type workerState struct {
	stats  Stats
	out    []byte // encode buffer: a response head, a chunk, a local reply
	rng    rng
	conns  *conn   // this worker's connections, for a drain
	free   []*conn // closed connections' state, kept for reuse
	hooked bool    // the drain hook is registered
	_      [64]byte
}

// Factory builds the connection manager for each downstream connection of a filter chain.
type Factory struct {
	cfg       Config
	perWorker []workerState
}

// New validates cfg for the given worker count.
func New(cfg Config, workers int) (*Factory, error) {
	if cfg.StatPrefix == "" {
		return nil, errors.New("http_connection_manager: stat_prefix is required")
	}
	if cfg.Routes == nil && cfg.RDS == nil {
		return nil, errors.New("http_connection_manager: a route_config or rds is required")
	}
	if len(cfg.Filters) == 0 {
		return nil, errors.New("http_connection_manager: the router filter is required")
	}
	if workers <= 0 {
		return nil, fmt.Errorf("http_connection_manager: worker count %d", workers)
	}
	if cfg.ServerName == "" {
		cfg.ServerName = DefaultServerName
	}
	if cfg.Limits.MaxHeadersBytes == 0 {
		cfg.Limits.MaxHeadersBytes = http1.DefaultLimits.MaxHeadersBytes
	}
	if cfg.Limits.MaxHeadersCount == 0 {
		cfg.Limits.MaxHeadersCount = http1.DefaultLimits.MaxHeadersCount
	}
	f := &Factory{cfg: cfg, perWorker: make([]workerState, workers)}
	for i := range f.perWorker {
		f.perWorker[i].rng.seed(uint64(i))
	}
	return f, nil
}

// Name implements engine.NetworkFilterFactory.
func (*Factory) Name() string { return Name }

// Config returns the configuration.
func (f *Factory) Config() *Config { return &f.cfg }

// Stats returns worker i's stats.
func (f *Factory) Stats(worker int) *Stats { return &f.perWorker[worker].stats }

// StatsFamily implements engine.StatsSource.
func (*Factory) StatsFamily() string { return "http" }

// StatsLabels implements engine.StatsSource.
func (f *Factory) StatsLabels() [][2]string { return [][2]string{{"stat_prefix", f.cfg.StatPrefix}} }

// VisitStats implements engine.StatsSource.
func (f *Factory) VisitStats(worker int, v engine.StatVisitor) { f.perWorker[worker].stats.visit(v) }

// VisitHistograms implements engine.HistogramSource.
func (f *Factory) VisitHistograms(worker int, v engine.HistogramVisitor) {
	s := &f.perWorker[worker].stats
	v("downstream_rq_time", &s.DownstreamRqTime)
	v("downstream_cx_length_ms", &s.DownstreamCxLengthMs)
}

// upgradeAllowed reports whether an Upgrade value is configured (case-insensitive).
func (f *Factory) upgradeAllowed(v []byte) bool {
	for _, u := range f.cfg.Upgrades {
		if equalFold(v, u) {
			return true
		}
	}
	return false
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

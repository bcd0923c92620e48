package tcpproxy

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/accesslog"
)

// Stats are one stat_prefix's tcp_proxy stats on one worker, with Envoy's names.
type Stats struct {
	DownstreamCxTotal                        engine.Counter
	DownstreamCxNoRoute                      engine.Counter
	DownstreamCxRxBytesTotal                 engine.Counter
	DownstreamCxTxBytesTotal                 engine.Counter
	DownstreamFlowControlPausedReadingTotal  engine.Counter
	DownstreamFlowControlResumedReadingTotal engine.Counter
	UpstreamFlushTotal                       engine.Counter
	IdleTimeout                              engine.Counter
	UpstreamConnectAttemptsExceeded          engine.Counter
	// SockmapCx and UserspaceCx count, at close, the connections whose bytes the kernel
	// forwarded (see tryKernel) and those it did not.
	SockmapCx   engine.Counter
	UserspaceCx engine.Counter
}

type workerState struct {
	stats Stats
	rr    uint64
	_     [64]byte // keep workers' counters on separate cache lines
}

// Factory builds one tcp_proxy filter per downstream connection.
type Factory struct {
	cfg         Config
	totalWeight uint64
	perWorker   []workerState
}

// NewFactory validates cfg and prepares per-worker state for the given worker count.
func NewFactory(cfg Config, workers int) (*Factory, error) {
	if cfg.StatPrefix == "" {
		return nil, errors.New("tcp_proxy: stat_prefix is required")
	}
	if len(cfg.Clusters) == 0 {
		return nil, errors.New("tcp_proxy: a cluster or weighted_clusters is required")
	}
	if workers <= 0 {
		return nil, fmt.Errorf("tcp_proxy: worker count %d", workers)
	}
	cfg.Clusters = append([]WeightedCluster(nil), cfg.Clusters...) // names are filled in below
	f := &Factory{cfg: cfg, perWorker: make([]workerState, workers)}
	for i, wc := range cfg.Clusters {
		if wc.Cluster == nil && (wc.Name == "" || cfg.Registry == nil) {
			return nil, errors.New("tcp_proxy: a cluster, or a name and a registry to look it up in, is required")
		}
		if wc.Name == "" {
			f.cfg.Clusters[i].Name = wc.Cluster.Name()
		}
		if wc.Weight == 0 {
			return nil, fmt.Errorf("tcp_proxy: cluster %q: weight must be at least 1", f.cfg.Clusters[i].Name)
		}
		f.totalWeight += uint64(wc.Weight)
	}
	if f.cfg.MaxConnectAttempts < 1 {
		f.cfg.MaxConnectAttempts = 1
	}
	return f, nil
}

// Name implements engine.NetworkFilterFactory.
func (*Factory) Name() string { return Name }

// ClusterNames returns the names of the clusters the proxy picks from (for explain).
func (f *Factory) ClusterNames() []string {
	names := make([]string, len(f.cfg.Clusters))
	for i := range f.cfg.Clusters {
		names[i] = f.cfg.Clusters[i].Name
	}
	return names
}

// Stats returns worker i's stats.
func (f *Factory) Stats(worker int) *Stats { return &f.perWorker[worker].stats }

// StatsFamily implements engine.StatsSource.
func (*Factory) StatsFamily() string { return "tcp" }

// StatsLabels implements engine.StatsSource.
func (f *Factory) StatsLabels() [][2]string { return [][2]string{{"stat_prefix", f.cfg.StatPrefix}} }

// VisitStats implements engine.StatsSource.
func (f *Factory) VisitStats(worker int, v engine.StatVisitor) {
	s := &f.perWorker[worker].stats
	c := func(name string, x *engine.Counter) { v(name, engine.KindCounter, float64(x.Value())) }
	c("downstream_cx_total", &s.DownstreamCxTotal)
	c("downstream_cx_no_route", &s.DownstreamCxNoRoute)
	c("downstream_cx_rx_bytes_total", &s.DownstreamCxRxBytesTotal)
	c("downstream_cx_tx_bytes_total", &s.DownstreamCxTxBytesTotal)
	c("downstream_flow_control_paused_reading_total", &s.DownstreamFlowControlPausedReadingTotal)
	c("downstream_flow_control_resumed_reading_total", &s.DownstreamFlowControlResumedReadingTotal)
	c("upstream_flush_total", &s.UpstreamFlushTotal)
	c("idle_timeout", &s.IdleTimeout)
	c("max_connect_attempts_exceeded", &s.UpstreamConnectAttemptsExceeded)
	c("downstream_cx_sockmap_total", &s.SockmapCx)
	c("downstream_cx_userspace_total", &s.UserspaceCx)
}

// pickCluster walks the cumulative weights with a per-worker rotating counter, giving each
// cluster its share exactly over every totalWeight connections. With a registry the name
// is looked up now, so the connection gets the cluster's current version (CDS), or nil
// if there is none.
func (f *Factory) pickCluster(worker int) (string, *engine.Cluster) {
	wc := &f.cfg.Clusters[len(f.cfg.Clusters)-1]
	if len(f.cfg.Clusters) > 1 {
		ws := &f.perWorker[worker]
		x := ws.rr % f.totalWeight
		ws.rr++
		for i := range f.cfg.Clusters {
			if x < uint64(f.cfg.Clusters[i].Weight) {
				wc = &f.cfg.Clusters[i]
				break
			}
			x -= uint64(f.cfg.Clusters[i].Weight)
		}
	}
	if f.cfg.Registry != nil {
		return wc.Name, f.cfg.Registry.Get(wc.Name)
	}
	return wc.Name, wc.Cluster
}

// CreateFilter implements engine.NetworkFilterFactory.
func (f *Factory) CreateFilter(c *engine.Connection) engine.ReadFilter {
	p := &proxy{f: f, down: c, w: c.Worker(), stats: &f.perWorker[c.Worker().ID].stats}
	p.upCb = upstreamCallbacks{p}
	p.upRead = upstreamReader{p}
	return p
}

// proxy is one downstream connection's tcp_proxy (Envoy's TcpProxy::Filter). It is the
// downstream read filter and callbacks; upstreamCallbacks/upstreamReader are its upstream
// side.
type proxy struct {
	f       *Factory
	w       *engine.Worker
	stats   *Stats
	down    *engine.Connection
	up      *engine.Connection
	cluster *engine.Cluster
	// clusterName is the name picked (the access log's cluster, also when none was found).
	clusterName string
	upCb        upstreamCallbacks
	upRead      upstreamReader
	attempts    int
	start       int64
	last        int64        // last activity, worker clock
	idle        engine.Timer // armed only with an idle_timeout
	flags       string
	details     string
	rx, tx      uint64
	logged      bool
	upHost      netip.AddrPort
	upConnected bool
	cxHeld      bool // holds a unit of the cluster's max_connections breaker
	// kernel: the pair is in the kernel (sockmap); kernelDone: it is, or it will never be.
	kernel, kernelDone bool
}

func (p *proxy) OnNewConnection() engine.FilterStatus {
	p.stats.DownstreamCxTotal.Inc()
	p.start = p.w.NowNanos()
	p.last = p.start
	p.down.EnableHalfClose(true)
	p.down.AddCallbacks(p)
	// Hold the client's bytes in the kernel until the upstream is there.
	p.down.ReadDisable(true)
	p.clusterName, p.cluster = p.f.pickCluster(p.w.ID)
	p.idle.InitFor(p.down, (*idleTimer)(p))
	if p.cluster == nil {
		// The cluster is not (or no longer) defined: Envoy's "no cluster" (NC).
		p.stats.DownstreamCxNoRoute.Inc()
		p.flags = "NC"
		p.details = "cluster_not_found"
		p.down.Close(engine.CloseNoFlush)
		return engine.StopIteration
	}
	if d := p.f.cfg.IdleTimeout; d > 0 {
		p.idle.Reset(d)
	}
	p.connect()
	return engine.StopIteration
}

func (p *proxy) connect() {
	p.attempts++
	// The cluster's max_connections breaker counts every upstream connection, those of
	// the HTTP pools too (Envoy's cluster-wide circuit breakers).
	if !p.cluster.Breakers().Connections.TryAcquire() {
		p.cluster.Stats(p.w.ID).UpstreamCxOverflow.Inc()
		p.flags = "UO"
		p.details = "upstream_cx_overflow"
		p.up = nil
		p.down.Close(engine.CloseNoFlush)
		return
	}
	p.cxHeld = true
	// ChooseHostFor: an ORIGINAL_DST cluster goes to the downstream's original destination.
	p.up = p.cluster.ConnectHost(p.w, p.cluster.ChooseHostFor(p.w, &p.down.Info), &p.upCb)
	p.upHost = p.up.RemoteEndpoint()
}

// releaseCx returns the breaker unit of the current upstream connection.
func (p *proxy) releaseCx() {
	if p.cxHeld {
		p.cxHeld = false
		p.cluster.Breakers().Connections.Release()
	}
}

func (p *proxy) OnData(data []byte, endStream bool) engine.FilterStatus {
	p.last = p.w.NowNanos()
	p.rx += uint64(len(data))
	p.stats.DownstreamCxRxBytesTotal.Add(uint64(len(data)))
	if p.up != nil {
		p.up.Write(data, endStream)
		p.tryKernel()
	}
	return engine.StopIteration
}

// tryKernel hands the pair to the server's KernelPairs (a BPF sockmap, if the server has
// one: ServerOptions.KernelPairs) once the upstream is connected, the first time nothing
// is buffered in userspace (at once, usually: the client's first bytes are still in the
// kernel when the upstream connects). The kernel then forwards the bytes both ways and the
// worker only watches for FIN, reset and error. The engine refuses unless this filter is
// alone in the chain and neither side has a transport socket.
func (p *proxy) tryKernel() {
	if p.kernelDone || p.up == nil || !p.upConnected {
		return
	}
	switch err := p.down.PairInKernel(p.up); err {
	case nil:
		p.kernel, p.kernelDone = true, true
	case engine.ErrKernelPairBusy:
		// Bytes still buffered: try again after the next read.
	default:
		p.kernelDone = true
	}
}

// SpliceTarget implements engine.SpliceSource: client bytes go to the upstream.
func (p *proxy) SpliceTarget() *engine.Connection { return p.up }

// OnSpliced implements engine.SpliceSource.
func (p *proxy) OnSpliced(n int) {
	p.last = p.w.NowNanos()
	p.rx += uint64(n)
	p.stats.DownstreamCxRxBytesTotal.Add(uint64(n))
}

// idleTimer is the proxy seen as the handler of its idle timer (no closure to allocate).
type idleTimer proxy

func (t *idleTimer) OnTimer() { (*proxy)(t).onIdle() }

func (p *proxy) onIdle() {
	idleFor := time.Duration(p.w.NowNanos() - p.last)
	if p.kernel {
		// The worker sees none of the bytes: ask TCP when data last came in on either
		// socket (tcpi_last_data_recv, in milliseconds).
		if d, ok := p.down.KernelIdle(); ok && d < idleFor {
			idleFor = d
		}
	}
	if rest := p.f.cfg.IdleTimeout - idleFor; rest > 0 {
		// Activity since arming: re-arm for the remainder instead of touching the timer on
		// every read.
		p.idle.Reset(rest)
		return
	}
	p.stats.IdleTimeout.Inc()
	p.details = "idle_timeout"
	if p.up != nil {
		p.up.Close(engine.CloseNoFlush)
	}
	p.down.Close(engine.CloseNoFlush)
}

// OnEvent implements engine.ConnectionCallbacks for the downstream.
func (p *proxy) OnEvent(ev engine.ConnectionEvent) {
	if ev != engine.RemoteClose && ev != engine.LocalClose {
		return
	}
	if p.up != nil && p.up.IsOpen() {
		p.up.Close(engine.CloseFlushWrite)
	}
	p.finish()
}

// OnAboveWriteBufferHighWatermark: the client is slow; stop reading the upstream.
func (p *proxy) OnAboveWriteBufferHighWatermark() {
	if p.up != nil {
		p.up.ReadDisable(true)
	}
}

// OnBelowWriteBufferLowWatermark resumes the upstream.
func (p *proxy) OnBelowWriteBufferLowWatermark() {
	if p.up != nil {
		p.up.ReadDisable(false)
	}
}

func (p *proxy) finish() {
	if p.logged {
		return
	}
	p.logged = true
	p.idle.Stop()
	if p.kernel {
		p.stats.SockmapCx.Inc()
		// Everything the downstream socket received and was given, from TCP_INFO: the
		// bytes before the pair (counted already) and those the kernel forwarded.
		if rx, tx, ok := p.down.KernelCounts(); ok {
			if rx > p.rx {
				p.stats.DownstreamCxRxBytesTotal.Add(rx - p.rx)
				p.rx = rx
			}
			if tx > p.tx {
				p.stats.DownstreamCxTxBytesTotal.Add(tx - p.tx)
				p.tx = tx
			}
		}
	} else {
		p.stats.UserspaceCx.Inc()
	}
	if len(p.f.cfg.AccessLogs) == 0 {
		return
	}
	flags := p.flags
	if flags == "" {
		flags = "-"
	}
	// start is on the worker's monotonic clock; the wall time is derived once, here.
	dur := time.Duration(p.w.NowNanos() - p.start)
	e := &accesslog.Entry{
		StartTime:                     p.w.Now().Add(-dur),
		Duration:                      dur,
		DownstreamRemoteAddress:       p.down.Info.RemoteAddr,
		DownstreamDirectRemoteAddress: p.down.Info.DirectRemoteAddr,
		DownstreamLocalAddress:        p.down.Info.LocalAddr,
		RequestedServerName:           p.down.Info.ServerName,
		FilterChainName:               p.down.FilterChainName(),
		UpstreamHost:                  p.upHost,
		UpstreamCluster:               p.clusterName,
		BytesReceived:                 p.rx,
		BytesSent:                     p.tx,
		ResponseFlags:                 flags,
		TerminationDetails:            p.details,
		DownstreamTLS:                 p.down.TLS(),
		Worker:                        p.w.ID,
	}
	for _, l := range p.f.cfg.AccessLogs {
		l.Log(e)
	}
}

type upstreamCallbacks struct{ p *proxy }

func (u *upstreamCallbacks) OnEvent(ev engine.ConnectionEvent) {
	p := u.p
	switch ev {
	case engine.Connected:
		p.up.Host().ReportResult(engine.ResultConnectSuccessFinal)
		p.up.EnableHalfClose(true)
		p.up.AddReadFilter(&p.upRead)
		p.upConnected = true
		p.tryKernel()
		p.down.ReadDisable(false)
	case engine.RemoteClose, engine.LocalClose:
		p.releaseCx()
		reason := p.up.FailureReason()
		switch reason {
		case engine.FailureConnectRefused, engine.FailureTransport:
			p.up.Host().ReportResult(engine.ResultConnectFailed)
		case engine.FailureConnectTimeout:
			p.up.Host().ReportResult(engine.ResultTimeout)
		}
		if reason == engine.FailureOverflow {
			// The proxy has no fd (or memory) for an upstream socket: an overflow of
			// its own resources, not the backend's failure, and a retry now would fail
			// the same way.
			p.flags = "UO"
			p.details = "upstream_local_resources_exhausted"
			p.down.Close(engine.CloseNoFlush)
			return
		}
		if reason == engine.FailureNoHealthyUpstream {
			// No host to try (an empty cluster, all hosts gone): Envoy's UH.
			p.flags = "UH"
			p.details = "no_healthy_upstream"
			p.down.Close(engine.CloseNoFlush)
			return
		}
		if reason != engine.FailureNone {
			if p.attempts < p.f.cfg.MaxConnectAttempts && p.down.IsOpen() {
				p.connect()
				return
			}
			if p.f.cfg.MaxConnectAttempts > 1 {
				p.stats.UpstreamConnectAttemptsExceeded.Inc()
			}
			p.flags = "UF"
			p.details = "upstream_connect_failed"
			if p.up.FailureReason() == engine.FailureConnectTimeout {
				p.details = "upstream_connect_timeout"
			}
			p.down.Close(engine.CloseNoFlush)
			return
		}
		if p.down.IsOpen() {
			p.down.Close(engine.CloseFlushWrite)
		}
	}
}

// OnAboveWriteBufferHighWatermark: the upstream is slow; stop reading the client.
func (u *upstreamCallbacks) OnAboveWriteBufferHighWatermark() {
	u.p.stats.DownstreamFlowControlPausedReadingTotal.Inc()
	u.p.down.ReadDisable(true)
}

// OnBelowWriteBufferLowWatermark resumes the client.
func (u *upstreamCallbacks) OnBelowWriteBufferLowWatermark() {
	u.p.stats.DownstreamFlowControlResumedReadingTotal.Inc()
	u.p.down.ReadDisable(false)
}

type upstreamReader struct{ p *proxy }

func (*upstreamReader) OnNewConnection() engine.FilterStatus { return engine.Continue }

// SpliceTarget implements engine.SpliceSource: upstream bytes go to the client.
func (u *upstreamReader) SpliceTarget() *engine.Connection { return u.p.down }

// OnSpliced implements engine.SpliceSource.
func (u *upstreamReader) OnSpliced(n int) {
	p := u.p
	p.last = p.w.NowNanos()
	p.tx += uint64(n)
	p.stats.DownstreamCxTxBytesTotal.Add(uint64(n))
}

func (u *upstreamReader) OnData(data []byte, endStream bool) engine.FilterStatus {
	p := u.p
	p.last = p.w.NowNanos()
	p.tx += uint64(len(data))
	p.stats.DownstreamCxTxBytesTotal.Add(uint64(len(data)))
	p.down.Write(data, endStream)
	p.tryKernel()
	return engine.StopIteration
}

package router

import (
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/http/header"
	"github.com/portico-proxy/portico/http/http1"
)

// Upstreams is how routers find the HTTP side of clusters: by name, in the engine's
// cluster registry, for each request, so that a cluster added, replaced or removed at run
// time (CDS) takes effect for the next request. Each cluster's HTTP side (its per worker
// × endpoint connection pools and HTTP stats) is attached to the engine cluster by Attach,
// so every router reuses the same connections.
type Upstreams struct {
	reg     *engine.ClusterRegistry
	workers int
}

// NewUpstreams looks clusters up in reg, for routers on the given number of workers.
func NewUpstreams(reg *engine.ClusterRegistry, workers int) *Upstreams {
	return &Upstreams{reg: reg, workers: workers}
}

// Cluster finds the HTTP side of the current version of a cluster by name; nil if there
// is no such cluster or it has no HTTP side (Attach).
func (u *Upstreams) Cluster(name string) *Cluster {
	c := u.reg.Get(name)
	if c == nil {
		return nil
	}
	cl, _ := c.Attachment().(*Cluster)
	return cl
}

// Attach gives c its HTTP side (once: a second call returns the first). Call it before c
// is published to a registry; the result is also the cluster's HTTP stats source.
func Attach(c *engine.Cluster) *Cluster {
	if cl, ok := c.Attachment().(*Cluster); ok {
		return cl
	}
	o := c.Config().HTTP
	cl := &Cluster{c: c, perWorker: make([]clusterWorker, c.Workers()), autoSNI: o.AutoSNI, autoSAN: o.AutoSANValidation}
	c.SetAttachment(cl)
	return cl
}

// CarryStats implements engine.StatsCarrier: a new version of the cluster (CDS) starts
// its HTTP counters from the old version's.
func (cl *Cluster) CarryStats(old any) {
	o, ok := old.(*Cluster)
	if !ok || len(o.perWorker) != len(cl.perWorker) {
		return
	}
	for i := range cl.perWorker {
		engine.AddCounters(&cl.perWorker[i].stats, &o.perWorker[i].stats)
	}
}

// Cluster is one engine cluster's HTTP pools and stats.
type Cluster struct {
	c         *engine.Cluster
	perWorker []clusterWorker
	// autoSNI and autoSAN are the cluster's auto_sni and auto_san_validation.
	autoSNI, autoSAN bool
}

type clusterWorker struct {
	stats Stats
	_     [64]byte
}

// poolFor returns worker w's pool for host h, made on first use. It lives in the host's
// per-worker state, so it survives host-set updates that keep the host, and is drained
// when the host leaves the set. A request host name (tlsKey, with auto_sni or
// auto_san_validation) has a pool of its own under the host's, as Envoy keys pools by the
// transport socket's options: a connection made for one SNI never serves another.
func (cl *Cluster) poolFor(h *engine.Host, w *engine.Worker, tlsKey string) *pool {
	l := h.Local(w)
	p, ok := l.Ext.(*pool)
	if !ok {
		p = &pool{cl: cl, cw: &cl.perWorker[w.ID], host: h, w: w}
		l.Ext = p
		l.OnRemoved = p.drainIdle
	}
	if tlsKey == "" {
		return p
	}
	if q := p.byName[tlsKey]; q != nil {
		return q
	}
	q := &pool{cl: cl, cw: p.cw, host: h, w: w, parent: p, key: tlsKey, opts: &engine.TransportOptions{}}
	if cl.autoSNI {
		q.opts.ServerName = tlsKey
	}
	if cl.autoSAN {
		q.opts.VerifyName = tlsKey
	}
	if p.byName == nil {
		p.byName = map[string]*pool{}
	}
	p.byName[tlsKey] = q
	return q
}

// Name is the cluster's name.
func (c *Cluster) Name() string { return c.c.Name() }

// Stats returns worker i's HTTP stats of the cluster.
func (c *Cluster) Stats(worker int) *Stats { return &c.perWorker[worker].stats }

// StatsFamily implements engine.StatsSource: the stats print under cluster.<name>.
// with the engine's own cluster stats.
func (*Cluster) StatsFamily() string { return "cluster" }

// StatsLabels implements engine.StatsSource.
func (c *Cluster) StatsLabels() [][2]string { return [][2]string{{"cluster", c.c.Name()}} }

// VisitStats implements engine.StatsSource.
func (c *Cluster) VisitStats(worker int, v engine.StatVisitor) {
	c.perWorker[worker].stats.visit(v, c.c.Breakers(), worker == 0)
	if worker == 0 {
		// The reuse figure, cluster-wide (reported once, so that the text form's sum
		// over workers is the figure): requests per upstream connection the pools opened.
		var rq, cx uint64
		for i := range c.perWorker {
			rq += c.perWorker[i].stats.UpstreamRqTotal.Value()
			cx += c.perWorker[i].stats.UpstreamCxHTTP1Total.Value()
		}
		per := 0.0
		if cx > 0 {
			per = float64(rq) / float64(cx)
		}
		v("upstream_rq_per_cx", engine.KindGauge, per)
	}
}

// VisitHistograms implements engine.HistogramSource.
func (c *Cluster) VisitHistograms(worker int, v engine.HistogramVisitor) {
	v("upstream_rq_time", &c.perWorker[worker].stats.UpstreamRqTime)
}

// pool is the HTTP/1.1 connection pool of one worker to one endpoint (Envoy's
// Http1::ConnPoolImpl): keep-alive, no pipelining, the most recently used idle connection
// first (its socket is the likeliest to be warm and not yet timed out by the server).
type pool struct {
	cl      *Cluster
	cw      *clusterWorker
	host    *engine.Host
	w       *engine.Worker
	idle    []*upstreamConn // most recently used last
	waiting []*filter       // requests waiting for a connection, oldest first

	// Per request host name (auto_sni, auto_san_validation): the host's pool holds one
	// pool per name in byName; each of those has its parent, its key, its connections'
	// options, and counts its connections so that it is dropped once it has none.
	byName map[string]*pool
	parent *pool
	key    string
	opts   *engine.TransportOptions
	conns  int
}

// drainIdle closes the idle connections of a host that left its cluster; busy ones close
// when their request ends (release sees the host removed).
func (p *pool) drainIdle() {
	for _, q := range p.byName {
		q.drainIdle()
	}
	for n := len(p.idle); n > 0; n = len(p.idle) {
		uc := p.idle[n-1]
		uc.conn.Close(engine.CloseNoFlush) // its close event takes it off the list
		if len(p.idle) == n {
			p.idle = p.idle[:n-1]
		}
	}
}

// acquire returns a connection for f: an idle one, or a new one (connecting; the engine
// buffers what is written to it meanwhile). It returns nil when the cluster's
// max_connections breaker is open: f must then wait.
func (p *pool) acquire(fresh bool) *upstreamConn {
	if !fresh {
		for n := len(p.idle); n > 0; n = len(p.idle) {
			uc := p.idle[n-1]
			p.idle[n-1] = nil
			p.idle = p.idle[:n-1]
			uc.idleTimer.Stop()
			if uc.conn.IsOpen() {
				return uc
			}
		}
	}
	b := p.cl.c.Breakers()
	if !b.Connections.TryAcquire() {
		p.cl.c.Stats(p.w.ID).UpstreamCxOverflow.Inc()
		return nil
	}
	return p.dial()
}

func (p *pool) dial() *upstreamConn {
	uc := &upstreamConn{pool: p}
	uc.p.InitResponse(http1.DefaultLimits)
	uc.idleTimer.Init(p.w, (*upIdle)(uc))
	uc.opened = p.w.NowNanos()
	p.cw.stats.UpstreamCxHTTP1Total.Inc()
	p.conns++
	uc.conn = p.cl.c.ConnectHostWith(p.w, p.host, uc, p.opts)
	return uc
}

// release takes a connection back after its request ended. A reusable one serves the
// oldest waiting request or goes idle.
func (p *pool) release(uc *upstreamConn) {
	uc.f = nil
	cfg := p.cl.c.Config().HTTP
	reuse := uc.keepAlive && uc.conn.IsOpen() && !uc.tunnel && !p.host.Removed()
	if reuse && cfg.MaxRequestsPerConnection > 0 && uc.requests >= cfg.MaxRequestsPerConnection {
		p.cw.stats.UpstreamCxMaxRequests.Inc()
		reuse = false
	}
	if reuse && cfg.MaxConnectionDuration > 0 &&
		time.Duration(p.w.NowNanos()-uc.opened) >= cfg.MaxConnectionDuration {
		p.cw.stats.UpstreamCxMaxDurationReached.Inc()
		reuse = false
	}
	if !reuse {
		uc.conn.Close(engine.CloseNoFlush)
		return
	}
	if len(p.waiting) > 0 {
		f := p.popWaiting()
		f.leavePending()
		f.attach(uc)
		return
	}
	uc.p.SetHeaderMap(nil)
	p.idle = append(p.idle, uc)
	if cfg.IdleTimeout > 0 {
		uc.idleTimer.Reset(cfg.IdleTimeout)
	}
}

// popWaiting takes the oldest waiting request off the queue.
func (p *pool) popWaiting() *filter {
	f := p.waiting[0]
	copy(p.waiting, p.waiting[1:])
	p.waiting[len(p.waiting)-1] = nil
	p.waiting = p.waiting[:len(p.waiting)-1]
	return f
}

// wait queues f until a connection frees up.
func (p *pool) wait(f *filter) { p.waiting = append(p.waiting, f) }

// cancel removes f from the queue.
func (p *pool) cancel(f *filter) {
	for i, x := range p.waiting {
		if x == f {
			copy(p.waiting[i:], p.waiting[i+1:])
			p.waiting[len(p.waiting)-1] = nil
			p.waiting = p.waiting[:len(p.waiting)-1]
			return
		}
	}
}

// onClosed forgets a closed connection; a waiting request may now dial.
func (p *pool) onClosed(uc *upstreamConn) {
	p.cl.c.Breakers().Connections.Release()
	for i, x := range p.idle {
		if x == uc {
			copy(p.idle[i:], p.idle[i+1:])
			p.idle[len(p.idle)-1] = nil
			p.idle = p.idle[:len(p.idle)-1]
			break
		}
	}
	if len(p.waiting) > 0 {
		if nc := p.acquire(true); nc != nil {
			f := p.popWaiting()
			f.leavePending()
			f.attach(nc)
		}
	}
	p.conns--
	if p.parent != nil && p.conns == 0 && len(p.waiting) == 0 {
		// A host name's pool lives as long as it has connections: request hosts are
		// the clients' to choose, so they must not pile up pools.
		delete(p.parent.byName, p.key)
	}
}

// upstreamConn is one pooled HTTP/1.1 connection to an endpoint: its read filter parses
// responses into the attached request's filter.
type upstreamConn struct {
	pool      *pool
	conn      *engine.Connection
	p         http1.Parser
	f         *filter // the request it serves, nil when idle
	requests  int
	opened    int64
	keepAlive bool
	connected bool
	tunnel    bool
	closed    bool
	gotBytes  bool // the current response has started arriving
	done      bool // the current response completed: release after the read is handled
	idleTimer engine.Timer
}

// OnNewConnection implements engine.ReadFilter.
func (uc *upstreamConn) OnNewConnection() engine.FilterStatus { return engine.Continue }

// OnData implements engine.ReadFilter.
func (uc *upstreamConn) OnData(data []byte, endStream bool) engine.FilterStatus {
	f := uc.f
	if uc.tunnel {
		if f != nil {
			f.down().Write(data, endStream)
		}
		return engine.StopIteration
	}
	if f == nil {
		// Bytes or a close from an idle connection: the server timed it out or broke the
		// protocol. Either way it can serve nobody.
		if len(data) > 0 {
			uc.pool.cw.stats.UpstreamCxProtocolError.Inc()
		}
		uc.conn.Close(engine.CloseNoFlush)
		return engine.StopIteration
	}
	if len(data) > 0 {
		uc.gotBytes = true
		for len(data) > 0 && !uc.done && !uc.tunnel {
			n, err := uc.p.Parse(data, uc)
			data = data[n:]
			if err != nil {
				uc.pool.cw.stats.UpstreamCxProtocolError.Inc()
				uc.keepAlive = false
				f.onUpstreamProtocolError()
				uc.conn.Close(engine.CloseNoFlush)
				return engine.StopIteration
			}
			if uc.tunnel {
				f.startTunnel(uc, data)
				return engine.StopIteration
			}
		}
		f.cb.Flush()
	}
	if endStream && !uc.done && uc.f == f {
		uc.keepAlive = false
		if err := uc.p.Finish(uc); err != nil {
			f.onUpstreamReset()
		}
	}
	if uc.done {
		uc.done = false
		if len(data) > 0 || endStream {
			// Bytes after the response on a connection without pipelining, or its end:
			// it cannot serve another request.
			if len(data) > 0 {
				uc.pool.cw.stats.UpstreamCxProtocolError.Inc()
			}
			uc.keepAlive = false
		}
		uc.pool.release(uc)
	}
	return engine.StopIteration
}

// SpliceTarget implements engine.SpliceSource: only a tunnel's bytes are passed on
// unchanged.
func (uc *upstreamConn) SpliceTarget() *engine.Connection {
	if uc.tunnel && uc.f != nil {
		return uc.f.down()
	}
	return nil
}

// OnSpliced implements engine.SpliceSource.
func (uc *upstreamConn) OnSpliced(int) {}

// OnHeaders implements http1.Handler.
func (uc *upstreamConn) OnHeaders(h *header.Map, m *http1.Message) {
	if uc.f == nil {
		return
	}
	if m.Status >= 200 || m.Status == 101 {
		uc.keepAlive = m.KeepAlive
	}
	if m.Status >= 200 {
		// Outlier detection (h-hc): the host's consecutive 5xx / gateway-failure counts.
		uc.pool.host.ReportHTTPStatus(m.Status)
	}
	if m.Status == 101 || uc.f.connect && m.Status/100 == 2 {
		uc.tunnel = true
	}
	uc.f.onResponseHeaders(h, m)
}

// OnBody implements http1.Handler.
func (uc *upstreamConn) OnBody(data []byte) {
	if uc.f != nil {
		uc.f.onResponseBody(data)
	}
}

// OnComplete implements http1.Handler.
func (uc *upstreamConn) OnComplete() {
	if uc.f != nil {
		uc.f.onResponseComplete(uc)
	}
}

// OnEvent implements engine.ConnectionCallbacks.
func (uc *upstreamConn) OnEvent(ev engine.ConnectionEvent) {
	switch ev {
	case engine.Connected:
		uc.connected = true
		uc.pool.host.ReportResult(engine.ResultConnectSuccess) // outlier detection (h-hc)
		uc.conn.AddReadFilter(uc)
		return
	}
	if uc.closed {
		return
	}
	uc.closed = true
	if !uc.connected {
		// Outlier detection (h-hc): a refused or timed-out connect counts against the host.
		switch uc.conn.FailureReason() {
		case engine.FailureConnectRefused, engine.FailureTransport:
			uc.pool.host.ReportResult(engine.ResultConnectFailed)
		case engine.FailureConnectTimeout:
			uc.pool.host.ReportResult(engine.ResultTimeout)
		}
	}
	uc.idleTimer.Stop()
	p := uc.pool
	f := uc.f
	uc.f = nil
	if f != nil {
		if !uc.tunnel {
			p.cw.stats.UpstreamCxDestroyWithActive.Inc()
		}
		f.onUpstreamClosed(uc)
	}
	p.onClosed(uc)
}

// OnAboveWriteBufferHighWatermark implements engine.ConnectionCallbacks: the upstream
// reads the request body slower than the client sends it.
func (uc *upstreamConn) OnAboveWriteBufferHighWatermark() {
	if uc.f != nil {
		uc.f.cb.DisableDownstreamReading(true)
	}
}

// OnBelowWriteBufferLowWatermark implements engine.ConnectionCallbacks.
func (uc *upstreamConn) OnBelowWriteBufferLowWatermark() {
	if uc.f != nil {
		uc.f.cb.DisableDownstreamReading(false)
	}
}

type upIdle upstreamConn

func (t *upIdle) OnTimer() {
	uc := (*upstreamConn)(t)
	if uc.f == nil && !uc.closed {
		uc.pool.cw.stats.UpstreamCxIdleTimeout.Inc()
		uc.conn.Close(engine.CloseNoFlush)
	}
}

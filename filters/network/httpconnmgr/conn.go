package httpconnmgr

import (
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/http/httpfilter"
	"github.com/portico-proxy/portico/http/header"
	"github.com/portico-proxy/portico/http/http1"
)

// CreateFilter implements engine.NetworkFilterFactory.
func (f *Factory) CreateFilter(c *engine.Connection) engine.ReadFilter {
	w := c.Worker()
	ws := &f.perWorker[w.ID]
	if n := len(ws.free); n > 0 {
		// A closed connection's state, with its grown header maps and buffers: a new
		// connection then costs no allocation here.
		hc := ws.free[n-1]
		ws.free[n-1] = nil
		ws.free = ws.free[:n-1]
		hc.reuse(c)
		return hc
	}
	hc := &conn{f: f, ws: ws, st: &ws.stats, w: w, c: c}
	hc.s.c = hc
	hc.resume = hc.resumeHeld
	return hc
}

// maxFreeConns bounds the closed connections a worker keeps for reuse.
const maxFreeConns = 256

// reuse prepares a closed connection's state for a new connection on the same worker.
func (c *conn) reuse(nc *engine.Connection) {
	*c = conn{
		f: c.f, ws: c.ws, st: c.st, w: c.w, c: nc,
		s:      stream{c: c, req: c.s.req, local: c.s.local, scratch: c.s.scratch[:0], head: c.s.head[:0]},
		filter: c.filter, held: c.held[:0], resume: c.resume, p: c.p,
	}
	c.s.req.Reset()
	c.s.local.Reset()
	if r, ok := c.filter.(httpfilter.Recycler); ok {
		r.Recycle()
	} else {
		c.filter = nil
	}
}

// recycle keeps a closed connection's state for reuse, unless a posted resume may still
// run for it.
func (c *conn) recycle() {
	if c.resumePosted || len(c.ws.free) >= maxFreeConns || cap(c.held) > 64<<10 {
		return
	}
	c.ws.free = append(c.ws.free, c)
}

// conn is the connection manager of one downstream connection (Envoy's
// ConnectionManagerImpl). HTTP/1 serves one request at a time, so it holds one stream,
// reused for each request; bytes of pipelined requests that arrive while a response is in
// flight are held, and reading paused, until it is done.
type conn struct {
	f  *Factory
	ws *workerState
	st *Stats
	w  *engine.Worker
	c  *engine.Connection
	p  http1.Parser
	s  stream
	// filter is the router's per-connection filter (the chain's last).
	filter httpfilter.StreamFilter

	held     []byte // bytes read and not yet parsed (the next requests)
	holding  bool   // reading is paused for held bytes
	closing  bool   // the current response is the last one
	closed   bool
	peerEnd  bool // the client's FIN was read
	discard  bool // the response ended before the request: read the rest of it, then close
	requests int
	start    int64
	resume   func() // resumeHeld, made once so that posting it costs no allocation
	// resumePosted: resume is queued on the worker (the state must not be reused before
	// it ran).
	resumePosted bool

	up *engine.Connection // the upstream of an upgraded (tunnelled) connection
	// last is the time of the last activity of a tunnel, for its idle timer.
	last int64

	// prev and next link the worker's connections of this factory, for a drain.
	prev, next *conn

	idle   engine.Timer // idle_timeout with no stream; a tunnel's idle timer
	maxDur engine.Timer // max_connection_duration
	linger engine.Timer // bounds the discard of a request answered early
}

func (c *conn) OnNewConnection() engine.FilterStatus {
	c.st.DownstreamCxTotal.Inc()
	c.st.DownstreamCxActive.Inc()
	c.st.DownstreamCxHTTP1Total.Inc()
	c.st.DownstreamCxHTTP1Active.Inc()
	c.start = c.w.NowNanos()
	c.c.AddCallbacks(c)
	c.ws.link(c, c.w)
	// A client may half-close after its request and still read the response (a shell's
	// printf | nc does); the connection closes once the response is sent.
	c.c.EnableHalfClose(true)
	c.p.InitRequest(c.f.cfg.Limits)
	c.p.SetHeaderMap(&c.s.req)
	c.s.init()
	if c.filter == nil {
		c.filter = c.f.cfg.Filters[len(c.f.cfg.Filters)-1].CreateFilter(&c.s)
	}
	c.idle.InitFor(c.c, (*idleTimer)(c))
	c.maxDur.InitFor(c.c, (*maxDurTimer)(c))
	c.linger.InitFor(c.c, (*lingerTimer)(c))
	if d := c.f.cfg.IdleTimeout; d > 0 {
		c.idle.Reset(d)
	}
	if d := c.f.cfg.MaxConnectionDuration; d > 0 {
		c.maxDur.Reset(d)
	}
	return engine.StopIteration
}

func (c *conn) OnData(data []byte, endStream bool) engine.FilterStatus {
	if c.closed {
		return engine.StopIteration
	}
	c.st.DownstreamCxRxBytesTotal.Add(uint64(len(data)))
	if c.up != nil {
		c.last = c.w.NowNanos()
		c.up.Write(data, endStream)
		return engine.StopIteration
	}
	if len(data) > 0 {
		if len(c.held) > 0 {
			c.held = append(c.held, data...)
			c.consume(c.held)
		} else {
			c.consume(data)
		}
	}
	if endStream && !c.closed {
		c.onPeerEnd()
	}
	return engine.StopIteration
}

// consume parses data (the read buffer, or held bytes) until it is used up, a response is
// in flight (the rest is held), or the connection is done.
func (c *conn) consume(data []byte) {
	for len(data) > 0 && !c.closed && c.up == nil {
		if c.s.active && c.s.requestDone && !c.discard {
			c.hold(data)
			return
		}
		if !c.s.active && c.p.Idle() {
			c.onRequestStart()
		}
		n, err := c.p.Parse(data, c)
		data = data[n:]
		if err != nil {
			c.onProtocolError(err)
			return
		}
	}
	if !c.closed && c.up == nil {
		c.held = c.held[:0]
	}
}

// hold keeps bytes for later and pauses reading: they belong to the next request, which
// waits for the current response (data may alias c.held; append moves it safely).
func (c *conn) hold(data []byte) {
	c.held = append(c.held[:0], data...)
	if !c.holding {
		c.holding = true
		c.c.ReadDisable(true)
	}
}

// resumeHeld runs, posted, after a stream ended: it parses held requests and resumes
// reading. It is posted rather than called so that the next request never starts inside
// the callbacks of the upstream connection that finished the last one.
func (c *conn) resumeHeld() {
	c.resumePosted = false
	if c.closed {
		c.recycle()
		return
	}
	if c.s.active {
		return
	}
	if len(c.held) > 0 {
		c.consume(c.held)
	}
	if c.closed {
		return
	}
	if c.holding && !(c.s.active && c.s.requestDone) {
		c.holding = false
		c.c.ReadDisable(false)
	}
	if c.peerEnd && !c.s.active {
		c.close(engine.CloseFlushWrite)
	}
}

// onRequestStart: the first byte of a request is about to be parsed.
func (c *conn) onRequestStart() {
	c.idle.Stop()
	c.s.headersStart = c.w.NowNanos()
	if d := c.f.cfg.RequestHeadersTimeout; d > 0 {
		c.s.hdrTimer.Reset(d)
	}
}

// OnHeaders implements http1.Handler.
func (c *conn) OnHeaders(h *header.Map, m *http1.Message) {
	if c.discard {
		return
	}
	c.s.onRequestHeaders(m)
}

// OnBody implements http1.Handler.
func (c *conn) OnBody(data []byte) {
	if c.discard || !c.s.active {
		return
	}
	c.s.onRequestBody(data)
}

// OnComplete implements http1.Handler.
func (c *conn) OnComplete() {
	if c.discard {
		c.close(engine.CloseFlushWrite)
		return
	}
	if c.s.active {
		c.s.onRequestComplete()
	}
}

func (c *conn) onProtocolError(err error) {
	c.st.DownstreamCxProtocolError.Inc()
	e, _ := err.(*http1.Error)
	if e == nil {
		e = &http1.Error{Status: 400, Detail: "http1.codec_error"}
	}
	if e.Detail == http1.DetailH2Preface {
		// An HTTP/2 client: until Portico speaks h2 the connection is closed cleanly.
		c.st.DownstreamCxHTTP2Refused.Inc()
		c.close(engine.CloseNoFlush)
		return
	}
	if c.discard {
		c.close(engine.CloseNoFlush)
		return
	}
	c.closing = true
	if !c.s.active {
		c.s.beginLocal()
	}
	if e.Status == 431 {
		c.st.DownstreamRqTooLarge.Inc()
	}
	c.s.SendLocalReply(e.Status, "", "DPE", e.Detail)
	if !c.closed {
		c.close(engine.CloseFlushWrite)
	}
}

// onPeerEnd: the client's FIN.
func (c *conn) onPeerEnd() {
	c.peerEnd = true
	switch {
	case !c.s.active:
		// Between requests, or cut off inside a request's head.
		if !c.p.Idle() {
			c.st.DownstreamCxProtocolError.Inc()
		}
		c.close(engine.CloseFlushWrite)
	case !c.s.requestDone:
		// The request was cut short: nothing can be answered to it.
		c.st.DownstreamRqRxReset.Inc()
		c.s.reset("DC", "downstream_remote_disconnect")
	default:
		// The request is whole: finish its response, then close.
		c.closing = true
	}
}

// onStreamEnd runs when a stream's response was sent (or the stream was reset).
func (c *conn) onStreamEnd() {
	c.requests++
	if c.closing || c.peerEnd {
		if c.s.requestDone || c.closed {
			c.close(engine.CloseFlushWrite)
			return
		}
		// Answered before the request was read in full (a 404 to a POST): read and drop
		// the rest for a while rather than close on unread bytes, which would make the
		// kernel reset the connection and could destroy the response in flight.
		c.discard = true
		d := c.f.cfg.DelayedCloseTimeout
		if d <= 0 {
			d = DefaultDelayedCloseTimeout
		}
		c.linger.Reset(d)
		return
	}
	if d := c.f.cfg.IdleTimeout; d > 0 {
		c.idle.Reset(d)
	}
	if (len(c.held) > 0 || c.holding) && !c.resumePosted {
		c.resumePosted = true
		c.w.Post(c.resume)
	}
}

func (c *conn) close(t engine.CloseType) {
	if c.closed {
		return
	}
	c.c.Close(t)
}

// OnEvent implements engine.ConnectionCallbacks.
func (c *conn) OnEvent(ev engine.ConnectionEvent) {
	if ev == engine.Connected || c.closed {
		return
	}
	c.closed = true
	c.ws.unlink(c)
	c.idle.Stop()
	c.maxDur.Stop()
	c.linger.Stop()
	c.st.DownstreamCxActive.Dec()
	c.st.DownstreamCxHTTP1Active.Dec()
	c.st.DownstreamCxDestroy.Inc()
	c.st.DownstreamCxLengthMs.Record(uint64(c.w.NowNanos()-c.start) / uint64(time.Millisecond))
	if c.up != nil {
		c.st.DownstreamCxUpgradesActive.Dec()
		c.up.Close(engine.CloseFlushWrite)
		c.s.finishTunnel()
	} else if c.s.active {
		c.st.DownstreamCxDestroyActiveRq.Inc()
		if ev == engine.RemoteClose {
			c.st.DownstreamRqRxReset.Inc()
			c.s.reset("DC", "downstream_remote_disconnect")
		} else {
			c.s.reset("", "")
		}
	}
	if c.up == nil {
		c.recycle()
	}
}

// OnAboveWriteBufferHighWatermark implements engine.ConnectionCallbacks: the client reads
// slower than the upstream sends.
func (c *conn) OnAboveWriteBufferHighWatermark() {
	if c.up != nil {
		c.up.ReadDisable(true)
		return
	}
	if c.s.active {
		c.filter.OnDownstreamWatermark(true)
	}
}

// OnBelowWriteBufferLowWatermark implements engine.ConnectionCallbacks.
func (c *conn) OnBelowWriteBufferLowWatermark() {
	if c.up != nil {
		c.up.ReadDisable(false)
		return
	}
	if c.s.active {
		c.filter.OnDownstreamWatermark(false)
	}
}

// SpliceTarget implements engine.SpliceSource: once a connection is a tunnel, the
// client's bytes go to the upstream by splice(2) as tcp_proxy's do.
func (c *conn) SpliceTarget() *engine.Connection { return c.up }

// OnSpliced implements engine.SpliceSource.
func (c *conn) OnSpliced(n int) {
	c.last = c.w.NowNanos()
	c.st.DownstreamCxRxBytesTotal.Add(uint64(n))
}

// startTunnel turns the connection into a byte pipe to up after a 101.
func (c *conn) startTunnel(up *engine.Connection) {
	c.up = up
	c.last = c.w.NowNanos()
	c.st.DownstreamCxUpgradesTotal.Inc()
	c.st.DownstreamCxUpgradesActive.Inc()
	c.s.stopTimers()
	if len(c.held) > 0 {
		// Bytes the client sent right behind its upgrade request.
		up.Write(c.held, false)
		c.held = nil
	}
	if c.holding {
		c.holding = false
		c.c.ReadDisable(false)
	}
	d := c.f.cfg.IdleTimeout
	if c.s.rtIdle > 0 {
		d = c.s.rtIdle
	}
	if d > 0 {
		c.idle.Reset(d)
	}
}

// drainFirstRequest is how long a drain waits for the first request of a connection that
// has had none (see drain).
const drainFirstRequest = time.Second

type idleTimer conn

func (t *idleTimer) OnTimer() {
	c := (*conn)(t)
	if c.closed {
		return
	}
	if c.up != nil {
		d := c.f.cfg.IdleTimeout
		if c.s.rtIdle > 0 {
			d = c.s.rtIdle
		}
		if rest := d - time.Duration(c.w.NowNanos()-c.last); rest > 0 {
			c.idle.Reset(rest)
			return
		}
	} else if c.s.active {
		return
	}
	c.st.DownstreamCxIdleTimeout.Inc()
	c.close(engine.CloseFlushWrite)
}

type maxDurTimer conn

func (t *maxDurTimer) OnTimer() {
	c := (*conn)(t)
	if c.closed {
		return
	}
	c.st.DownstreamCxMaxDurationReached.Inc()
	if c.s.active || c.up != nil {
		c.closing = true // the response in flight says "connection: close"
		if c.up == nil {
			return
		}
	}
	c.close(engine.CloseFlushWrite)
}

type lingerTimer conn

func (t *lingerTimer) OnTimer() { (*conn)(t).close(engine.CloseNoFlush) }

// link adds c to the worker's connections; the first one registers the drain hook.
func (ws *workerState) link(c *conn, w *engine.Worker) {
	if !ws.hooked {
		ws.hooked = true
		w.OnDrain(ws.drain)
	}
	c.next = ws.conns
	if ws.conns != nil {
		ws.conns.prev = c
	}
	ws.conns = c
}

func (ws *workerState) unlink(c *conn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else if ws.conns == c {
		ws.conns = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	}
	c.prev, c.next = nil, nil
}

// drain runs when the server drains: idle connections close now, busy ones after their
// response, which says "connection: close" (Envoy's drain for HTTP/1).
func (ws *workerState) drain() {
	for c := ws.conns; c != nil; {
		next := c.next
		c.drainNow()
		c = next
	}
}

// drainNow closes the connection if it is idle, or marks it to close after the response
// in flight. A connection that has not had a request yet is not an idle keep-alive: it was
// accepted just before the drain (a hot restart's parent takes in its queues when it
// stops) and its request is on the way or unread in the kernel, so closing it would reset
// a client that did nothing wrong (425 of 9,763 new connections at 5 hot restarts' hand-
// overs were). It gets its one response, with "connection: close", or closes if nothing
// comes within drainFirstRequest.
func (c *conn) drainNow() {
	if c.closed {
		return
	}
	c.st.DownstreamCxDrainClose.Inc()
	if c.s.active || c.up != nil {
		c.closing = true
	} else if c.requests == 0 {
		c.closing = true
		c.idle.Reset(drainFirstRequest)
	} else {
		c.close(engine.CloseFlushWrite)
	}
}

// OnDrain implements engine.DrainObserver: the connection's listener or filter chain
// drains (an LDS update or removal). With the immediate strategy it is drained at once,
// as for a server drain; with the gradual one each request decides (DrainClose), and the
// engine closes what is left at the drain deadline.
func (c *conn) OnDrain() {
	if c.c.DrainClose() {
		c.drainNow()
	}
}

// Package router is Envoy's router HTTP filter (envoy.filters.http.router): it takes the
// route the connection manager selected, answers redirects and direct responses, applies
// rewrites and header mutations, and proxies the request to a connection from the
// worker's pool for the chosen cluster and endpoint, with Envoy's timeouts, retries and
// circuit breakers. Everything runs on the downstream connection's worker.
package router

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/http/httpfilter"
	"github.com/portico-proxy/portico/http/header"
	"github.com/portico-proxy/portico/http/http1"
	"github.com/portico-proxy/portico/http/route"
)

// Name is the filter's Envoy name.
const Name = "envoy.filters.http.router"

// Config is the router's configuration (envoy.extensions.filters.http.router.v3.Router).
type Config struct {
	// SuppressEnvoyHeaders leaves out x-envoy-upstream-service-time and friends.
	SuppressEnvoyHeaders bool
	// Proxy100Continue is the connection manager's setting: pass an upstream's 100 on.
	Proxy100Continue bool
}

// Factory makes the router for each downstream connection.
type Factory struct {
	cfg Config
	up  *Upstreams
	rng []workerRand
}

// workerRand is a worker's random source for weighted clusters and back-off jitter: a
// PCG per worker takes no lock and allocates nothing.
type workerRand struct {
	pcg rand.PCG
	_   [48]byte
}

// next returns worker w's next random number.
func (fa *Factory) next(w int) uint64 { return fa.rng[w].pcg.Uint64() }

// New builds a router factory over the configuration's upstreams.
func New(cfg Config, up *Upstreams) *Factory {
	fa := &Factory{cfg: cfg, up: up, rng: make([]workerRand, up.workers)}
	for i := range fa.rng {
		fa.rng[i].pcg.Seed(uint64(time.Now().UnixNano()), uint64(i))
	}
	return fa
}

// Name implements httpfilter.Factory.
func (*Factory) Name() string { return Name }

// CreateFilter implements httpfilter.Factory.
func (fa *Factory) CreateFilter(cb httpfilter.StreamCallbacks) httpfilter.StreamFilter {
	f := &filter{fa: fa, cb: cb, w: cb.Connection().Worker()}
	f.timeout.InitFor(cb.Connection(), (*globalTimeout)(f))
	f.perTry.InitFor(cb.Connection(), (*perTryTimeout)(f))
	f.backoff.InitFor(cb.Connection(), (*backoffTimer)(f))
	return f
}

// maxRetainedBody is how much of a request body the router keeps to replay it on a
// retry; a longer body makes the request unretriable once its first byte has gone out
// (Envoy's per_request_buffer_limit_bytes plays this role).
const maxRetainedBody = 64 << 10

// filter is one downstream connection's router, serving its streams one at a time.
type filter struct {
	fa *Factory
	cb httpfilter.StreamCallbacks
	w  *engine.Worker

	// The current stream.
	active   bool
	rt       *route.Route
	vh       *route.VirtualHost
	retry    *route.RetryPolicy
	cl       *Cluster
	cw       *clusterWorker
	pool     *pool
	up       *upstreamConn
	pending  bool // waiting in pool.waiting
	connect  bool // a CONNECT request
	chunked  bool // the request body is chunked upstream
	reqDone  bool // the downstream request ended
	respSeen bool // response headers were passed downstream
	// body holds the request body sent so far, for a retry; bodyLost says it was too
	// long to keep (no retry once it started).
	body     []byte
	bodyLost bool
	head     []byte // the encoded request head, kept for retries
	resp     header.Map
	attempts int
	retries  int
	retrying bool // holding a retry breaker unit
	tried    [4]*engine.Host
	ntried   int
	rqStart  int64
	reqAcq   bool // holds a max_requests unit
	wc       int  // the weighted cluster picked, -1 for none
	scratch  []byte
	// tlsKey is the request's host when the cluster has auto_sni or auto_san_validation:
	// its upstream connections are pooled by it. "" otherwise.
	tlsKey string

	timeout engine.Timer // the route's timeout, from the end of the request
	perTry  engine.Timer
	backoff engine.Timer
}

func (f *filter) down() *engine.Connection { return f.cb.Connection() }

// Recycle implements httpfilter.Recycler: the callbacks now serve a new downstream
// connection, whose timers the filter's are bound to.
func (f *filter) Recycle() {
	f.reset()
	f.active = false
	c := f.cb.Connection()
	f.timeout.InitFor(c, (*globalTimeout)(f))
	f.perTry.InitFor(c, (*perTryTimeout)(f))
	f.backoff.InitFor(c, (*backoffTimer)(f))
}

// scheme is the scheme the request arrived with (for a redirect's Location).
func (f *filter) scheme() string {
	if f.down().Info.TransportProtocol == engine.TransportTLS {
		return "https"
	}
	return "http"
}

// DecodeHeaders implements httpfilter.StreamFilter.
func (f *filter) DecodeHeaders(endStream bool) {
	f.reset()
	f.active = true
	f.reqDone = endStream
	f.vh, f.rt = f.cb.Route()
	if f.rt != nil {
		f.retry = f.rt.RetryPolicy()
	}
	h := f.cb.RequestHeaders()
	m := f.cb.Request()
	f.connect = m.Connect
	rt := f.rt
	if rt == nil {
		f.cb.NoteRouteOutcome(httpfilter.NoRoute)
		f.cb.SendLocalReply(404, "", "NR", "route_not_found")
		return
	}
	info := f.cb.Info()
	switch rt.Kind() {
	case route.ActionDirectResponse:
		f.cb.NoteRouteOutcome(httpfilter.DirectResponse)
		status, body := rt.DirectResponse()
		if rt.AddsLocation() {
			f.scratch = rt.AppendRedirectLocation(f.scratch[:0], h, f.scheme())
			f.cb.SendLocalReply(status, string(body), "", "direct_response", "location", string(f.scratch))
			return
		}
		f.cb.SendLocalReply(status, string(body), "", "direct_response")
		return
	case route.ActionRedirect:
		f.cb.NoteRouteOutcome(httpfilter.Redirect)
		f.scratch = rt.AppendRedirectLocation(f.scratch[:0], h, f.scheme())
		f.cb.SendLocalReply(rt.RedirectResponseCode(), "", "", "direct_response", "location", string(f.scratch))
		return
	}
	name, wc := rt.PickCluster(h, f.fa.next(f.w.ID))
	f.wc = wc
	f.cl = f.fa.up.Cluster(string(name))
	if f.cl == nil {
		f.cb.NoteRouteOutcome(httpfilter.NoCluster)
		f.cb.SendLocalReply(rt.ClusterNotFoundResponseCode(), "", "NC", "cluster_not_found")
		return
	}
	f.cw = &f.cl.perWorker[f.w.ID]
	info.UpstreamCluster = f.cl.Name()

	// Rewrites and header mutations, then the request head is encoded once: a retry
	// sends the same bytes.
	f.scratch = rt.ApplyRequestHeaders(h, wc, info, f.scratch[:0], !f.fa.cfg.SuppressEnvoyHeaders)

	b := f.cl.c.Breakers()
	if !b.Requests.TryAcquire() {
		f.cw.stats.UpstreamRqPendingOverflow.Inc()
		f.cb.SendLocalReply(503, "upstream connect error or disconnect/reset before headers. reset reason: overflow", "UO", "upstream_reset_before_response_started{overflow}", "x-envoy-overloaded", "true")
		return
	}
	f.reqAcq = true
	f.rqStart = f.w.NowNanos()
	if f.cl.autoSNI || f.cl.autoSAN {
		// After the route's rewrites, before auto_host_rewrite (which depends on the host
		// picked), as in Envoy.
		if a, ok := h.Get(":authority"); ok {
			f.tlsKey = authorityHost(a)
		}
	}
	if !endStream && m.Body != http1.BodyContentLength && !m.Connect {
		f.chunked = true
	}
	f.encodeHead(h)
	f.startAttempt()
	if endStream {
		f.onRequestEnd()
	}
}

// encodeHead writes the request head the upstream gets.
func (f *filter) encodeHead(h *header.Map) {
	if f.chunked {
		h.SetString("transfer-encoding", "chunked")
	}
	f.head = http1.AppendRequestHead(f.head[:0], h)
}

// startAttempt sends the request (again) on a connection of the chosen endpoint's pool.
func (f *filter) startAttempt() {
	f.attempts++
	f.respSeen = false
	var skip func(*engine.Host) bool
	if f.ntried > 0 && f.retry != nil && f.retry.PreviousHosts {
		skip = f.triedHost
	}
	host := f.cl.c.ChooseHost(f.w, skip)
	if host == nil && f.cl.c.IsOriginalDst() {
		// ORIGINAL_DST (h-hc): the downstream connection's original destination.
		host = f.cl.c.ChooseHostFor(f.w, &f.down().Info)
	}
	if host == nil {
		f.cl.c.Stats(f.w.ID).UpstreamCxNoneHealthy.Inc()
		f.timeout.Stop()
		f.perTry.Stop()
		f.releaseBreakers()
		f.cb.SendLocalReply(503, "no healthy upstream", "UH", "no_healthy_upstream")
		return
	}
	if f.ntried < len(f.tried) {
		f.tried[f.ntried] = host
		f.ntried++
	}
	p := f.cl.poolFor(host, f.w, f.tlsKey)
	f.pool = p
	if d := f.perTryTimeout(); d > 0 {
		f.perTry.Reset(d)
	}
	uc := p.acquire(false)
	if uc == nil {
		b := f.cl.c.Breakers()
		if !b.PendingRequests.TryAcquire() {
			f.cw.stats.UpstreamRqPendingOverflow.Inc()
			f.fail(503, "UO", "overflow", true)
			return
		}
		f.pending = true
		f.cw.stats.UpstreamRqPendingTotal.Inc()
		f.cw.stats.UpstreamRqPendingActive.Inc()
		f.cb.DisableDownstreamReading(true)
		p.wait(f)
		return
	}
	f.attach(uc)
}

func (f *filter) triedHost(h *engine.Host) bool {
	for _, t := range f.tried[:f.ntried] {
		if t == h {
			return true
		}
	}
	return false
}

func (f *filter) perTryTimeout() time.Duration {
	if f.retry != nil {
		return f.retry.PerTryTimeout
	}
	return 0
}

// leavePending: a waiting request got a connection.
func (f *filter) leavePending() {
	f.pending = false
	f.cl.c.Breakers().PendingRequests.Release()
	f.cw.stats.UpstreamRqPendingActive.Dec()
	f.cb.DisableDownstreamReading(false)
}

// attach binds the request to a connection and sends what it has of the request.
func (f *filter) attach(uc *upstreamConn) {
	f.up = uc
	uc.f = f
	uc.gotBytes = false
	uc.keepAlive = false
	if uc.requests > 0 {
		f.cw.stats.UpstreamRqReused.Inc()
	}
	uc.requests++
	f.resp.Reset()
	uc.p.SetHeaderMap(&f.resp)
	uc.p.ExpectResponseTo(f.cb.Request().Head, f.connect)
	f.cw.stats.UpstreamRqTotal.Inc()
	f.cw.stats.UpstreamRqActive.Inc()
	info := f.cb.Info()
	info.UpstreamHost = uc.conn.RemoteEndpoint()
	info.UpstreamRequestAttemptCount = f.attempts
	if f.rt.AutoHostRewrite() {
		// The authority becomes the hostname of the host chosen for this attempt (Envoy
		// rewrites only when the host has one: DNS clusters, or endpoint.hostname).
		if name := uc.pool.host.Hostname(); name != "" {
			h := f.cb.RequestHeaders()
			h.SetString(":authority", name)
			f.head = http1.AppendRequestHead(f.head[:0], h)
		}
	}
	if len(f.body) > 0 && !f.bodyLost {
		out := append(f.scratch[:0], f.head...)
		out = append(out, f.body...)
		if f.reqDone && f.chunked {
			out = append(out, http1.LastChunk...)
		}
		f.scratch = out
		uc.conn.Write(out, false)
	} else {
		uc.conn.Write(f.head, false)
		if f.reqDone && f.chunked {
			uc.conn.Write([]byte(http1.LastChunk), false)
		}
	}
}

// DecodeData implements httpfilter.StreamFilter.
func (f *filter) DecodeData(data []byte, endStream bool) {
	if !f.active || f.cl == nil {
		return
	}
	var out []byte
	if f.chunked {
		if len(data) > 0 {
			out = http1.AppendChunkHeader(f.scratch[:0], len(data))
			out = append(out, data...)
			out = append(out, http1.CRLF...)
		}
		if endStream {
			out = append(out, http1.LastChunk...)
		}
		f.scratch = out[:0]
	} else {
		out = data
	}
	// Keep the body (framed as sent) for a retry while it is short.
	if !f.bodyLost && len(out) > 0 {
		if len(f.body)+len(out) > maxRetainedBody {
			f.bodyLost = true
			f.body = f.body[:0]
		} else if f.mayRetry() {
			// The last chunk is not kept: attach adds it when the request is done.
			keep := out
			if endStream && f.chunked {
				keep = keep[:len(keep)-len(http1.LastChunk)]
			}
			f.body = append(f.body, keep...)
		}
	}
	if f.up != nil && len(out) > 0 {
		f.up.conn.Write(out, false)
	}
	if endStream {
		f.reqDone = true
		f.onRequestEnd()
	}
}

func (f *filter) mayRetry() bool { return f.retry != nil && f.retry.NumRetries > 0 }

// onRequestEnd starts the route's timeout, which runs from the end of the request.
func (f *filter) onRequestEnd() {
	if d := f.rt.Timeout(); d > 0 && !f.respSeen {
		f.timeout.Reset(d)
	}
}

// onResponseHeaders: the upstream answered.
func (f *filter) onResponseHeaders(h *header.Map, m *http1.Message) {
	if m.Status < 200 && m.Status != 101 {
		if m.Status == 100 && f.fa.cfg.Proxy100Continue && f.cb.Request().Expect100 {
			f.cb.Encode100Continue()
		}
		return
	}
	if f.retryOnStatus(m.Status) {
		return
	}
	f.perTry.Stop()
	if m.Status != 101 {
		f.cw.stats.countCode(m.Status)
	}
	if f.retrying {
		f.cw.stats.UpstreamRqRetrySuccess.Inc()
	}
	f.respSeen = true
	if !f.fa.cfg.SuppressEnvoyHeaders {
		ms := (f.w.NowNanos() - f.rqStart) / int64(time.Millisecond)
		f.scratch = strconv.AppendInt(f.scratch[:0], ms, 10)
		h.Set("x-envoy-upstream-service-time", f.scratch)
	}
	f.scratch = f.rt.ApplyResponseHeaders(h, f.wc, f.cb.Info(), f.scratch[:0])
	info := f.cb.Info()
	info.ResponseCodeDetails = "via_upstream"
	// The end of the response comes from onResponseComplete, also when there is no body:
	// the connection goes back to the pool before the stream ends.
	f.cb.EncodeHeaders(h, m, false)
}

func (f *filter) onResponseBody(data []byte) {
	if f.respSeen {
		f.cb.EncodeData(data, false)
	}
}

func (f *filter) onResponseComplete(uc *upstreamConn) {
	if !f.respSeen {
		// A response the router decided to retry: drop it.
		return
	}
	f.timeout.Stop()
	f.cw.stats.UpstreamRqCompleted.Inc()
	f.cw.stats.UpstreamRqTime.Record(uint64(f.w.NowNanos()-f.rqStart) / uint64(time.Millisecond))
	f.cw.stats.UpstreamRqActive.Dec()
	f.up = nil
	if !f.reqDone {
		uc.keepAlive = false // the request was not sent in full: the connection is out of step
	}
	uc.done = true // released to the pool once its read is handled (upstreamConn.OnData)
	f.releaseBreakers()
	// Last: this may end the stream, and the connection manager may start the next one.
	f.cb.EncodeData(nil, true)
}

// startTunnel: a 101 (or a 2xx to CONNECT) was passed downstream.
func (f *filter) startTunnel(uc *upstreamConn, rest []byte) {
	f.timeout.Stop()
	f.perTry.Stop()
	f.cb.StartTunnel(uc.conn, rest)
}

// retryOnStatus decides whether a response status is retried (5xx, gateway-error,
// retriable-status-codes); if so the response is dropped and a new attempt scheduled.
func (f *filter) retryOnStatus(code int) bool {
	rp := f.retry
	if rp == nil || !retriableStatus(rp, code) || !f.canRetry() {
		return false
	}
	f.cw.stats.countCode(code)
	f.abandonUpstream()
	f.scheduleRetry()
	return true
}

// canRetry: retries are configured, left, allowed by the breaker, and the request can be
// replayed.
func (f *filter) canRetry() bool {
	rp := f.retry
	if rp == nil || f.retries >= int(rp.NumRetries) || f.bodyLost || f.respSeen {
		return false
	}
	if !f.retrying {
		if !f.cl.c.Breakers().Retries.TryAcquire() {
			f.cw.stats.UpstreamRqRetryOverflow.Inc()
			return false
		}
		f.retrying = true
	}
	return true
}

func (f *filter) scheduleRetry() {
	f.retries++
	f.cw.stats.UpstreamRqRetry.Inc()
	f.backoff.Reset(backOff(f.retry, f.retries, f.fa.next(f.w.ID)))
}

// abandonUpstream drops the current attempt's connection (its response is unread, so it
// cannot be reused).
func (f *filter) abandonUpstream() {
	f.perTry.Stop()
	if f.pending {
		f.pool.cancel(f)
		f.leavePending()
	}
	if uc := f.up; uc != nil {
		f.up = nil
		uc.f = nil
		f.cw.stats.UpstreamRqActive.Dec()
		uc.conn.Close(engine.CloseNoFlush)
	}
}

// onUpstreamClosed: the connection of the current attempt closed before the response was
// complete (a refused or timed-out connect, a reset, a close mid-response).
func (f *filter) onUpstreamClosed(uc *upstreamConn) {
	if uc.tunnel {
		f.up = nil
		f.cw.stats.UpstreamRqActive.Dec()
		f.releaseBreakers()
		f.down().Close(engine.CloseFlushWrite)
		return
	}
	f.up = nil
	f.cw.stats.UpstreamRqActive.Dec()
	reason := uc.conn.FailureReason()
	connectFail := !uc.connected
	if f.respSeen {
		// Too late to answer anything else: the client sees the connection end.
		f.cw.stats.UpstreamRqRxReset.Inc()
		f.releaseBreakers()
		f.timeout.Stop()
		f.cb.ResetStream("UR", "upstream_reset_after_response_started{remote_reset}")
		return
	}
	// A reused connection the server closed just as the request went out (the keep-alive
	// race): safe to send again on a fresh one when nothing of a response came and the
	// request had no body.
	if !connectFail && uc.requests > 1 && !uc.gotBytes && f.cb.Request().Body == http1.BodyNone && f.attempts < 8 {
		f.perTry.Stop()
		f.startAttemptFresh()
		return
	}
	rp := f.retry
	if rp != nil && (connectFail && rp.RetryOn&(route.RetryConnectFailure|route.Retry5xx|route.RetryGatewayError) != 0 ||
		!connectFail && rp.RetryOn&(route.RetryReset|route.Retry5xx|route.RetryGatewayError) != 0) && f.canRetry() {
		f.scheduleRetry()
		return
	}
	switch {
	case reason == engine.FailureOverflow:
		f.fail(503, "UO", "overflow", false)
	case connectFail && reason == engine.FailureConnectTimeout:
		f.fail(503, "UF", "connection_timeout", false)
	case connectFail:
		f.fail(503, "UF", "connection_failure", false)
	default:
		f.cw.stats.UpstreamRqRxReset.Inc()
		f.fail(503, "UC", "connection_termination", false)
	}
}

// startAttemptFresh retries on a new connection without counting a retry.
func (f *filter) startAttemptFresh() {
	uc := f.pool.acquire(true)
	if uc == nil {
		f.fail(503, "UO", "overflow", true)
		return
	}
	f.attach(uc)
}

func (f *filter) onUpstreamProtocolError() {
	f.up = nil
	f.cw.stats.UpstreamRqActive.Dec()
	if f.respSeen {
		f.releaseBreakers()
		f.cb.ResetStream("UPE", "upstream_reset_after_response_started{protocol_error}")
		return
	}
	f.fail(502, "UPE", "protocol_error", false)
}

// onUpstreamReset: the upstream's stream ended early (a close-delimited body cut off).
func (f *filter) onUpstreamReset() {
	if f.up != nil {
		uc := f.up
		uc.keepAlive = false
		uc.conn.Close(engine.CloseNoFlush)
	}
}

// fail answers the request with a local reply for an upstream failure.
func (f *filter) fail(status int, flags, reason string, overloaded bool) {
	f.timeout.Stop()
	f.perTry.Stop()
	f.releaseBreakers()
	body := "upstream connect error or disconnect/reset before headers. reset reason: " + reason
	details := "upstream_reset_before_response_started{" + reason + "}"
	if overloaded {
		f.cb.SendLocalReply(status, body, flags, details, "x-envoy-overloaded", "true")
		return
	}
	f.cb.SendLocalReply(status, body, flags, details)
}

// timedOut answers a request whose upstream did not respond in time, as Envoy does.
func (f *filter) timedOut() {
	f.timeout.Stop()
	f.perTry.Stop()
	f.releaseBreakers()
	f.cb.SendLocalReply(504, "upstream request timeout", "UT", "upstream_response_timeout")
}

func (f *filter) releaseBreakers() {
	b := f.cl.c.Breakers()
	if f.reqAcq {
		f.reqAcq = false
		b.Requests.Release()
	}
	if f.retrying {
		f.retrying = false
		b.Retries.Release()
	}
}

// OnDownstreamWatermark implements httpfilter.StreamFilter: a slow client pauses the
// upstream's response.
func (f *filter) OnDownstreamWatermark(above bool) {
	if f.up != nil {
		f.up.conn.ReadDisable(above)
	}
}

// OnStreamReset implements httpfilter.StreamFilter.
func (f *filter) OnStreamReset() {
	if !f.active {
		return
	}
	f.timeout.Stop()
	f.perTry.Stop()
	f.backoff.Stop()
	if f.cl != nil {
		if f.up != nil {
			f.cw.stats.UpstreamRqTxReset.Inc()
		}
		f.abandonUpstream()
		f.releaseBreakers()
	}
	f.active = false
}

// OnStreamComplete implements httpfilter.StreamFilter.
func (f *filter) OnStreamComplete() {
	if f.up != nil && !f.up.tunnel {
		// A local reply ended the stream while an attempt was out.
		f.abandonUpstream()
	}
	if f.cl != nil {
		f.releaseBreakers()
	}
	f.timeout.Stop()
	f.perTry.Stop()
	f.backoff.Stop()
	f.active = false
}

// reset prepares the filter for a new stream.
func (f *filter) reset() {
	f.rt, f.vh, f.retry, f.cl, f.cw, f.pool, f.up = nil, nil, nil, nil, nil, nil, nil
	f.pending, f.connect, f.chunked, f.reqDone, f.respSeen = false, false, false, false, false
	f.body, f.bodyLost = f.body[:0], false
	f.attempts, f.retries, f.retrying, f.ntried, f.reqAcq = 0, 0, false, 0, false
	f.wc = -1
	f.tlsKey = ""
}

// authorityHost is the host of an authority, without its port or an IPv6 literal's
// brackets.
func authorityHost(a []byte) string {
	if len(a) > 0 && a[0] == '[' {
		if i := bytes.IndexByte(a, ']'); i > 0 {
			return string(a[1:i])
		}
		return string(a)
	}
	if i := bytes.LastIndexByte(a, ':'); i >= 0 && bytes.IndexByte(a[:i], ':') < 0 {
		a = a[:i]
	}
	return string(a)
}

// reportTimeout tells outlier detection (h-hc) that the current attempt's host did not
// answer in time (Envoy's LOCAL_ORIGIN_TIMEOUT).
func (f *filter) reportTimeout() {
	if f.up != nil {
		f.up.pool.host.ReportResult(engine.ResultTimeout)
	}
}

type globalTimeout filter

func (t *globalTimeout) OnTimer() {
	f := (*filter)(t)
	if !f.active || f.respSeen {
		return
	}
	f.cw.stats.UpstreamRqTimeout.Inc()
	f.reportTimeout()
	f.abandonUpstream()
	f.backoff.Stop()
	f.timedOut()
}

type perTryTimeout filter

func (t *perTryTimeout) OnTimer() {
	f := (*filter)(t)
	if !f.active || f.respSeen {
		return
	}
	f.cw.stats.UpstreamRqPerTryTimeout.Inc()
	f.reportTimeout()
	f.abandonUpstream()
	rp := f.retry
	if rp != nil && retriableStatus(rp, 504) && f.canRetry() {
		f.scheduleRetry()
		return
	}
	f.timedOut()
}

type backoffTimer filter

func (t *backoffTimer) OnTimer() {
	f := (*filter)(t)
	if f.active && !f.respSeen {
		f.startAttempt()
	}
}

package httpconnmgr

import (
	"bytes"
	"net/netip"
	"strconv"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/accesslog"
	"github.com/portico-proxy/portico/filters/http/httpfilter"
	"github.com/portico-proxy/portico/http/header"
	"github.com/portico-proxy/portico/http/http1"
	"github.com/portico-proxy/portico/http/route"
)

// stream is one request and its response (Envoy's ActiveStream). It is reused for each
// request of its connection; it is the router's StreamCallbacks.
type stream struct {
	c       *conn
	req     header.Map
	reqMsg  http1.Message
	local   header.Map // a local reply's headers
	info    accesslog.Entry
	tbl     *route.Table // the request's route table (RDS: loaded once per request)
	vh      *route.VirtualHost
	rt      *route.Route
	rtIdle  time.Duration // the route's idle_timeout, for a tunnel
	scratch []byte        // per-stream scratch for header values (x-forwarded-for ...)
	head    []byte        // a response head held back for the first body piece (see Flush)

	active          bool
	requestDone     bool
	responseStarted bool
	responseDone    bool
	headPending     bool
	chunked         bool // the response is chunked downstream
	noBody          bool // the response has no body downstream (HEAD, 204, 304)
	closeDelimited  bool // an HTTP/1.0 client without a length: the close ends the body
	sent100         bool
	status          int
	disabled        int // DisableDownstreamReading nesting

	headersStart int64
	startNanos   int64
	reqEnd       int64
	respStart    int64
	rxBody       uint64
	txBody       uint64

	hdrTimer  engine.Timer // request_headers_timeout
	reqTimer  engine.Timer // request_timeout
	idleTimer engine.Timer // stream_idle_timeout
	lastIO    int64
}

func (s *stream) init() {
	s.hdrTimer.InitFor(s.c.c, (*hdrTimeout)(s))
	s.reqTimer.InitFor(s.c.c, (*reqTimeout)(s))
	s.idleTimer.InitFor(s.c.c, (*streamIdle)(s))
}

// begin starts a stream for a request whose headers were parsed.
func (s *stream) begin() {
	c := s.c
	s.active = true
	s.requestDone, s.responseStarted, s.responseDone = false, false, false
	s.headPending, s.chunked, s.noBody, s.closeDelimited, s.sent100 = false, false, false, false, false
	s.status, s.rxBody, s.txBody = 0, 0, 0
	s.vh, s.rt, s.rtIdle = nil, nil, 0
	now := c.w.NowNanos()
	s.startNanos, s.lastIO = now, now
	if s.headersStart == 0 {
		s.headersStart = now
	}
	s.reqEnd, s.respStart = 0, 0
	s.info = accesslog.Entry{
		StartTime:                     c.w.Now().Add(-time.Duration(now - s.headersStart)),
		DownstreamRemoteAddress:       c.c.Info.RemoteAddr,
		DownstreamDirectRemoteAddress: c.c.Info.DirectRemoteAddr,
		DownstreamLocalAddress:        c.c.Info.LocalAddr,
		RequestedServerName:           c.c.Info.ServerName,
		FilterChainName:               c.c.FilterChainName(),
		DownstreamTLS:                 c.c.TLS(),
		RequestHeaders:                &s.req,
		RequestDuration:               -1,
		ResponseDuration:              -1,
		ResponseTxDuration:            -1,
		Worker:                        c.w.ID,
	}
	c.st.DownstreamRqTotal.Inc()
	c.st.DownstreamRqHTTP1Total.Inc()
	c.st.DownstreamRqActive.Inc()
	s.hdrTimer.Stop()
	if d := c.f.cfg.RequestTimeout; d > 0 {
		s.reqTimer.Reset(d)
	}
	if d := c.f.cfg.StreamIdleTimeout; d > 0 {
		s.idleTimer.Reset(d)
	}
}

// beginLocal starts a stream for a request that could not be parsed, so that its local
// reply is counted and logged like any other.
func (s *stream) beginLocal() {
	s.reqMsg = http1.Message{Version: http1.HTTP11}
	s.begin()
	s.requestDone = true
}

func (s *stream) onRequestHeaders(m *http1.Message) {
	c := s.c
	s.reqMsg = *m
	s.begin()
	if m.DroppedUnderscoreHeaders > 0 {
		c.st.DownstreamRqDroppedUnderscore.Add(uint64(m.DroppedUnderscoreHeaders))
	}
	s.info.Protocol = m.Version.String()
	if !m.KeepAlive || c.c.DrainClose() {
		c.closing = true
	}
	if c.f.cfg.MaxRequestsPerConnection > 0 && c.requests+1 >= c.f.cfg.MaxRequestsPerConnection {
		if !c.closing {
			c.st.DownstreamCxMaxRequestsReached.Inc()
		}
		c.closing = true
	}
	s.tbl = c.f.cfg.Routes
	if s.tbl == nil {
		// RDS: one atomic load; nil until the first version (Envoy: no route, 404 NR).
		s.tbl = c.f.cfg.RDS.Table()
	}
	if !s.prepareRequest() {
		return // answered locally
	}
	if s.tbl != nil {
		s.vh, s.rt = s.tbl.Select(&s.req)
	}
	if s.rt != nil {
		s.info.RouteName = s.rt.Name()
		if d, ok := s.rt.IdleTimeout(); ok {
			// A route's idle_timeout replaces the stream's; 0 disables it.
			s.rtIdle = d
			s.idleTimer.Stop()
			if d > 0 {
				s.idleTimer.Reset(d)
			}
		}
	}
	if m.Expect100 && !c.f.cfg.Proxy100Continue {
		// Envoy answers 100 itself and does not pass the expectation on.
		s.req.DelKnown(header.Expect)
		s.reqMsg.Expect100 = false
		if m.Body != http1.BodyNone {
			s.sent100 = true
			s.write([]byte("HTTP/1.1 100 Continue\r\n\r\n"))
		}
	}
	c.filter.DecodeHeaders(m.Body == http1.BodyNone)
}

func (s *stream) onRequestBody(data []byte) {
	s.rxBody += uint64(len(data))
	s.lastIO = s.c.w.NowNanos()
	s.c.filter.DecodeData(data, false)
}

func (s *stream) onRequestComplete() {
	s.requestDone = true
	s.reqEnd = s.c.w.NowNanos()
	s.info.RequestDuration = time.Duration(s.reqEnd - s.headersStart)
	s.reqTimer.Stop()
	if s.reqMsg.Body != http1.BodyNone && !s.responseDone {
		s.c.filter.DecodeData(nil, true)
	}
}

// prepareRequest applies the connection manager's request rules (Envoy's
// ConnectionManagerUtility::mutateRequestHeaders and the HCM's checks). It reports false
// when it answered the request itself.
func (s *stream) prepareRequest() bool {
	c, f, h := s.c, s.c.f, &s.req
	cfg := &f.cfg

	// Upgrades: a configured one passes (websocket); h2c is forwarded as plain HTTP/1.1,
	// as Envoy does; any other is refused.
	if s.reqMsg.Upgrade {
		up, _ := h.GetKnown(header.Upgrade)
		switch {
		case equalFold(up, "h2c"):
			h.DelKnown(header.Upgrade)
			h.Del("http2-settings")
			s.reqMsg.Upgrade = false
		case !f.upgradeAllowed(up):
			c.st.DownstreamRqWsOnNonWsRoute.Inc()
			s.SendLocalReply(403, "", "", "upgrade_failed")
			return false
		}
	} else if h.DelKnown(header.Upgrade) > 0 {
		// "Upgrade" without "Connection: upgrade" is a hop-by-hop header like any other.
		s.reqMsg.Upgrade = false
	}
	if !h.Has(":authority") {
		// Envoy requires a host (HTTP/1.0 without one gets default_host_for_http_10).
		s.SendLocalReply(400, "", "", "missing_host_header")
		return false
	}
	if s.reqMsg.Connect && !f.upgradeAllowed([]byte("connect")) {
		s.SendLocalReply(403, "", "", "upgrade_failed")
		return false
	}

	// The path must be origin-form (the codec turned an absolute URL into :authority and
	// :path), "*" only for OPTIONS.
	if p, ok := h.GetKnown(header.Path); ok && !s.reqMsg.Connect {
		if len(p) == 0 || p[0] != '/' {
			if !(string(p) == "*" && bytes.Equal(mustGet(h, header.Method), []byte("OPTIONS"))) {
				c.st.DownstreamRqNonRelativePath.Inc()
				s.SendLocalReply(404, "", "NR", "absolute_path_rejected")
				return false
			}
		} else if (cfg.NormalizePath || cfg.MergeSlashes) && needsNormalizing(p, cfg.MergeSlashes) {
			np, ok := normalizePath(p, cfg.MergeSlashes, cfg.NormalizePath)
			if !ok {
				s.SendLocalReply(400, "", "", "path_normalization_failed")
				return false
			}
			h.Set(":path", np)
		}
	}

	// Host port stripping.
	if cfg.StripAnyHostPort || cfg.StripMatchingHostPort {
		if a, ok := h.GetKnown(header.Authority); ok {
			if i := portIndex(a); i >= 0 {
				strip := cfg.StripAnyHostPort
				if !strip {
					port, err := strconv.Atoi(string(a[i+1:]))
					strip = err == nil && port == int(c.c.Info.LocalAddr.Port())
				}
				if strip {
					h.Set(":authority", append(s.scratch[:0], a[:i]...))
				}
			}
		}
	}

	// Hop-by-hop headers end here. The framing headers are re-derived by the encoder from
	// the message, so transfer-encoding goes too; content-length stays (the codec
	// validated it) for the upstream.
	h.DelKnown(header.Connection)
	h.DelKnown(header.KeepAlive)
	h.DelKnown(header.ProxyConnection)
	h.DelKnown(header.TransferEncoding)
	if s.reqMsg.Upgrade {
		h.SetString("connection", "upgrade")
	}
	if te, ok := h.GetKnown(header.TE); ok {
		if containsToken(te, "trailers") {
			h.SetString("te", "trailers")
		} else {
			h.DelKnown(header.TE)
		}
	}

	// Headers only trusted peers may set: the client's certificate details (Envoy's
	// forward_client_cert_details SANITIZE, the only mode Portico has) and the route
	// configuration's internal_only_headers, unless the client is internal (a loopback
	// or private address, Envoy's default internal_address_config).
	h.Del("x-forwarded-client-cert")
	var only []string
	if s.tbl != nil {
		only = s.tbl.InternalOnlyHeaders()
	}
	if len(only) > 0 && !internalAddr(c.c.Info.RemoteAddr) {
		for _, n := range only {
			h.Del(n)
		}
	}

	// x-forwarded-for and the trust it gives (Envoy's use_remote_address). The scheme is
	// the connection's: https when TLS was terminated here (a transport socket), not when
	// TLS merely passed by (tls_inspector alone leaves no HTTP to parse).
	scheme := "http"
	if c.c.Transport() != nil && c.c.Info.TransportProtocol == engine.TransportTLS {
		scheme = "https"
	}
	if cfg.UseRemoteAddress {
		if !cfg.SkipXffAppend {
			s.scratch = appendAddr(s.scratch[:0], c.c.Info.RemoteAddr)
			h.AppendValue("x-forwarded-for", s.scratch, ",")
		}
		h.SetString("x-forwarded-proto", scheme)
		s.req.SetString(":scheme", scheme)
	} else if _, ok := h.Get("x-forwarded-proto"); !ok {
		h.SetString("x-forwarded-proto", scheme)
	}
	if cfg.GenerateRequestID {
		_, has := h.Get("x-request-id")
		edge := cfg.UseRemoteAddress
		if !has || edge && !cfg.PreserveExternalRequestID {
			s.scratch = s.c.ws.rng.appendUUID(s.scratch[:0])
			h.Set("x-request-id", s.scratch)
		}
	}
	if cfg.Via != "" {
		h.AppendValue("via", []byte(cfg.Via), ",")
	}
	return true
}

// internalAddr: Envoy's default notion of an internal client (RFC 1918, loopback, and
// their IPv6 counterparts: unique local addresses).
func internalAddr(a netip.AddrPort) bool {
	ip := a.Addr().Unmap()
	return ip.IsLoopback() || ip.IsPrivate()
}

func mustGet(h *header.Map, k header.Known) []byte {
	v, _ := h.GetKnown(k)
	return v
}

// portIndex is the index of the ':' before a port in an authority, or -1 (an IPv6 literal
// keeps its colons inside brackets).
func portIndex(a []byte) int {
	i := bytes.LastIndexByte(a, ':')
	if i < 0 || bytes.IndexByte(a[i:], ']') >= 0 {
		return -1
	}
	return i
}

// containsToken reports whether a comma list holds tok, case-insensitively.
func containsToken(v []byte, tok string) bool {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var t []byte
		if i < 0 {
			t, v = v, nil
		} else {
			t, v = v[:i], v[i+1:]
		}
		if equalFold(bytes.TrimSpace(t), tok) {
			return true
		}
	}
	return false
}

// --- httpfilter.StreamCallbacks ---

func (s *stream) Connection() *engine.Connection { return s.c.c }

func (s *stream) Info() *accesslog.Entry { return &s.info }

func (s *stream) Route() (*route.VirtualHost, *route.Route) { return s.vh, s.rt }

func (s *stream) RequestHeaders() *header.Map { return &s.req }

func (s *stream) Request() *http1.Message { return &s.reqMsg }

func (s *stream) EncodeHeaders(h *header.Map, m *http1.Message, endStream bool) {
	if !s.active || s.responseStarted {
		return
	}
	c, cfg := s.c, &s.c.f.cfg
	s.responseStarted = true
	s.status = m.Status
	s.respStart = c.w.NowNanos()
	s.lastIO = s.respStart
	s.info.ResponseHeaders = h
	if s.info.ResponseDuration < 0 {
		s.info.ResponseDuration = time.Duration(s.respStart - s.headersStart)
	}
	upgraded := m.Status == 101 || s.reqMsg.Connect && m.Status/100 == 2

	h.DelKnown(header.Connection)
	h.DelKnown(header.KeepAlive)
	h.DelKnown(header.ProxyConnection)
	h.DelKnown(header.TransferEncoding)
	if !upgraded {
		h.DelKnown(header.Upgrade)
	}
	switch cfg.ServerHeaderTransformation {
	case ServerOverwrite:
		h.SetString("server", cfg.ServerName)
	case ServerAppendIfAbsent:
		if !h.Has("server") {
			h.SetString("server", cfg.ServerName)
		}
	}
	if cfg.Via != "" {
		h.AppendValue("via", []byte(cfg.Via), ",")
	}
	if cfg.AlwaysSetRequestIDInResponse {
		if id, ok := s.req.Get("x-request-id"); ok && !h.Has("x-request-id") {
			h.Set("x-request-id", id)
		}
	}

	// Framing downstream.
	s.noBody = s.reqMsg.Head || m.Status < 200 || m.Status == 204 || m.Status == 304
	switch {
	case upgraded:
		h.SetString("connection", "upgrade")
	case s.noBody:
	case m.Body == http1.BodyContentLength:
	case endStream || m.Body == http1.BodyNone:
		if !h.Has("content-length") {
			h.SetString("content-length", "0")
		}
	case s.reqMsg.Version == http1.HTTP11:
		h.SetString("transfer-encoding", "chunked")
		s.chunked = true
	default:
		// An HTTP/1.0 client cannot take chunks: the end of the body is the close.
		s.closeDelimited = true
		c.closing = true
	}
	if !upgraded {
		if c.closing {
			h.SetString("connection", "close")
		} else if s.reqMsg.Version == http1.HTTP10 {
			h.SetString("connection", "keep-alive")
		}
	}
	s.head = http1.AppendResponseHead(s.head[:0], h, s.reqMsg.Version)
	if endStream || upgraded || s.noBody || m.Body == http1.BodyNone {
		s.write(s.head)
		// A response without a body downstream (HEAD, 204, 304) still ends when its
		// sender says so: the router releases its upstream connection first.
		if endStream {
			s.endResponse()
		}
		return
	}
	// Held back to leave with the first piece of the body (see Flush).
	s.headPending = true
}

// Flush sends a held-back response head.
func (s *stream) Flush() {
	if s.headPending {
		s.headPending = false
		s.write(s.head)
	}
}

func (s *stream) EncodeData(data []byte, endStream bool) {
	if !s.active || !s.responseStarted || s.responseDone {
		return
	}
	s.lastIO = s.c.w.NowNanos()
	if s.noBody {
		data = nil
	}
	s.txBody += uint64(len(data))
	switch {
	case s.chunked:
		out := s.c.ws.out[:0]
		if s.headPending {
			out = append(out, s.head...)
			s.headPending = false
		}
		if len(data) > 0 {
			out = http1.AppendChunkHeader(out, len(data))
			out = append(out, data...)
			out = append(out, http1.CRLF...)
		}
		if endStream {
			out = append(out, http1.LastChunk...)
		}
		s.write(out)
		s.c.ws.out = out[:0]
	case s.headPending:
		out := append(s.c.ws.out[:0], s.head...)
		out = append(out, data...)
		s.headPending = false
		s.write(out)
		s.c.ws.out = out[:0]
	case len(data) > 0:
		s.write(data)
	}
	if endStream {
		s.endResponse()
	}
}

func (s *stream) Encode100Continue() {
	if s.active && !s.responseStarted && !s.sent100 {
		s.sent100 = true
		s.write([]byte("HTTP/1.1 100 Continue\r\n\r\n"))
	}
}

func (s *stream) write(b []byte) {
	s.c.st.DownstreamCxTxBytesTotal.Add(uint64(len(b)))
	s.c.c.Write(b, false)
}

// SendLocalReply answers the request from the proxy itself.
func (s *stream) SendLocalReply(status int, body string, flags, details string, extra ...string) {
	if !s.active {
		return
	}
	if s.responseStarted {
		s.ResetStream(flags, details)
		return
	}
	if flags != "" {
		s.info.ResponseFlags = flags
	}
	s.info.ResponseCodeDetails = details
	h := &s.local
	h.Reset()
	h.SetString(":status", strconv.Itoa(status))
	for i := 0; i+1 < len(extra); i += 2 {
		h.SetString(extra[i], extra[i+1])
	}
	if s.rt != nil {
		// The route's response headers apply to the proxy's own answers too (Envoy's
		// finalizeResponseHeaders on local replies).
		s.info.ResponseHeaders = h
		s.scratch = s.rt.ApplyResponseHeaders(h, -1, &s.info, s.scratch[:0])
	}
	m := http1.Message{Version: s.reqMsg.Version, Status: status}
	if body != "" {
		h.SetString("content-type", "text/plain")
		h.SetString("content-length", strconv.Itoa(len(body)))
		m.Body = http1.BodyContentLength
		s.EncodeHeaders(h, &m, false)
		s.EncodeData([]byte(body), true)
		return
	}
	s.EncodeHeaders(h, &m, true)
}

// NoteRouteOutcome counts a route decision.
func (s *stream) NoteRouteOutcome(o httpfilter.RouteOutcome) {
	st := s.c.st
	switch o {
	case httpfilter.NoRoute:
		st.NoRoute.Inc()
	case httpfilter.NoCluster:
		st.NoCluster.Inc()
	case httpfilter.DirectResponse:
		st.RqDirectResponse.Inc()
	case httpfilter.Redirect:
		st.RqRedirect.Inc()
	}
}

// ResetStream abandons the stream and closes the connection.
func (s *stream) ResetStream(flags, details string) {
	if !s.active {
		return
	}
	s.c.st.DownstreamRqTxReset.Inc()
	s.reset(flags, details)
	s.c.close(engine.CloseFlushWrite)
}

func (s *stream) DisableDownstreamReading(disable bool) {
	if disable {
		s.disabled++
		s.c.c.ReadDisable(true)
		return
	}
	if s.disabled > 0 {
		s.disabled--
		s.c.c.ReadDisable(false)
	}
}

func (s *stream) StartTunnel(up *engine.Connection, rest []byte) {
	s.Flush()
	if len(rest) > 0 {
		s.write(rest)
	}
	s.c.startTunnel(up)
}

// endResponse: the response was sent in full.
func (s *stream) endResponse() {
	s.responseDone = true
	if s.closeDelimited {
		s.c.closing = true
	}
	s.finish()
	s.c.filter.OnStreamComplete()
	s.c.onStreamEnd()
}

// reset ends a stream whose response could not be completed.
func (s *stream) reset(flags, details string) {
	if !s.active {
		return
	}
	if flags != "" && s.info.ResponseFlags == "" {
		s.info.ResponseFlags = flags
	}
	if details != "" && s.info.ResponseCodeDetails == "" {
		s.info.ResponseCodeDetails = details
	}
	s.c.closing = true
	s.finish()
	s.c.filter.OnStreamReset()
	if !s.c.closed {
		s.c.close(engine.CloseFlushWrite)
	}
}

func (s *stream) stopTimers() {
	s.hdrTimer.Stop()
	s.reqTimer.Stop()
	s.idleTimer.Stop()
}

// finish accounts for and logs the stream.
func (s *stream) finish() {
	c := s.c
	s.active = false
	s.headersStart = 0
	s.stopTimers()
	// Restore reading the router may have paused for this stream.
	for s.disabled > 0 {
		s.disabled--
		c.c.ReadDisable(false)
	}
	c.st.DownstreamRqActive.Dec()
	if s.responseStarted {
		switch s.status / 100 {
		case 1:
			c.st.DownstreamRq1xx.Inc()
		case 2:
			c.st.DownstreamRq2xx.Inc()
		case 3:
			c.st.DownstreamRq3xx.Inc()
		case 4:
			c.st.DownstreamRq4xx.Inc()
		case 5:
			c.st.DownstreamRq5xx.Inc()
		}
		c.st.DownstreamRqCompleted.Inc()
		start := s.headersStart
		if start == 0 {
			start = s.startNanos
		}
		c.st.DownstreamRqTime.Record(uint64(c.w.NowNanos()-start) / uint64(time.Millisecond))
	}
	s.log()
	s.req.Reset()
	c.p.SetHeaderMap(&s.req)
}

func (s *stream) log() {
	logs := s.c.f.cfg.AccessLogs
	if len(logs) == 0 {
		return
	}
	now := s.c.w.NowNanos()
	e := &s.info
	e.Duration = time.Duration(now - s.headersStart)
	if s.headersStart == 0 {
		e.Duration = time.Duration(now - s.startNanos)
	}
	if s.responseStarted {
		e.ResponseCode = s.status
		if s.responseDone {
			e.ResponseTxDuration = time.Duration(now - s.respStart)
		}
	}
	e.BytesReceived, e.BytesSent = s.rxBody, s.txBody
	for _, l := range logs {
		l.Log(e)
	}
}

// finishTunnel logs an upgraded stream when its connection closes.
func (s *stream) finishTunnel() {
	if s.active {
		s.responseDone = true
		s.finish()
		s.c.filter.OnStreamComplete()
	}
}

type hdrTimeout stream

func (t *hdrTimeout) OnTimer() {
	s := (*stream)(t)
	c := s.c
	if c.closed || s.active {
		return
	}
	// The headers did not arrive in time: Envoy answers 408 and closes.
	c.st.DownstreamRqHeadersTimeout.Inc()
	c.closing = true
	s.beginLocal()
	s.SendLocalReply(408, "request header timeout", "", "request_header_timeout")
}

type reqTimeout stream

func (t *reqTimeout) OnTimer() {
	s := (*stream)(t)
	if !s.active || s.requestDone {
		return
	}
	s.c.st.DownstreamRqTimeout.Inc()
	s.c.closing = true
	s.c.filter.OnStreamReset()
	s.SendLocalReply(408, "request timeout", "", "request_overall_timeout")
}

type streamIdle stream

func (t *streamIdle) OnTimer() {
	s := (*stream)(t)
	if !s.active {
		return
	}
	d := s.c.f.cfg.StreamIdleTimeout
	if s.rtIdle > 0 {
		d = s.rtIdle
	}
	if rest := d - time.Duration(s.c.w.NowNanos()-s.lastIO); rest > 0 {
		s.idleTimer.Reset(rest)
		return
	}
	s.c.st.DownstreamRqIdleTimeout.Inc()
	s.c.closing = true
	if !s.responseStarted {
		s.c.filter.OnStreamReset()
		s.SendLocalReply(408, "stream timeout", "SI", "stream_idle_timeout")
		return
	}
	s.ResetStream("SI", "stream_idle_timeout")
}

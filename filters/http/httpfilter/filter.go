// Package httpfilter is the interface between the HTTP connection manager and the HTTP
// filters of its streams (Envoy's StreamDecoderFilter and its callbacks). A filter is made
// once per downstream connection and serves each of the connection's streams in turn
// (HTTP/1 has one at a time), so a request costs no allocation for its filter state.
package httpfilter

import (
	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/accesslog"
	"github.com/portico-proxy/portico/http/header"
	"github.com/portico-proxy/portico/http/http1"
	"github.com/portico-proxy/portico/http/route"
)

// StreamCallbacks is what the connection manager offers a filter for the stream it is
// serving. Every method runs on the connection's worker.
type StreamCallbacks interface {
	// Connection is the downstream connection.
	Connection() *engine.Connection
	// Info is the stream's record, logged when it ends: filters add to it (the upstream
	// host and cluster, response flags, attempt count).
	Info() *accesslog.Entry
	// Route is the virtual host and route the request matched; route is nil when none did.
	Route() (*route.VirtualHost, *route.Route)
	// RequestHeaders are the request's headers as the connection manager prepared them
	// (hop-by-hop headers removed, x-forwarded-for and x-request-id set).
	RequestHeaders() *header.Map
	// Request describes the request's framing.
	Request() *http1.Message

	// EncodeHeaders sends the response's headers downstream; m says how its body is
	// framed. The connection manager adds its own headers (server, via, connection).
	EncodeHeaders(h *header.Map, m *http1.Message, endStream bool)
	// EncodeData sends a piece of the response body; endStream ends the response.
	EncodeData(data []byte, endStream bool)
	// Flush sends a response head EncodeHeaders held back to send it with the first piece
	// of the body in one write. The router calls it when it has handled what one upstream
	// read brought.
	Flush()
	// Encode100Continue forwards an upstream's "100 Continue" (proxy_100_continue).
	Encode100Continue()
	// SendLocalReply answers the request itself (404, 503, 504 ...) unless a response has
	// started, in which case the stream is reset. flags are Envoy's response flags
	// ("NR", "UF" ...), details its response code details ("route_not_found").
	// extra are header name/value pairs to add (location for a redirect,
	// x-envoy-overloaded for an overflow).
	SendLocalReply(status int, body string, flags, details string, extra ...string)
	// NoteRouteOutcome counts what the route did (Envoy's http.<stat_prefix>.no_route,
	// no_cluster, rq_direct_response, rq_redirect).
	NoteRouteOutcome(o RouteOutcome)
	// ResetStream abandons the stream: the downstream connection is closed.
	ResetStream(flags, details string)

	// DisableDownstreamReading pauses (true) or resumes (false) reading the request, for
	// flow control: the upstream's write buffer is above its high watermark. Calls nest.
	DisableDownstreamReading(disable bool)
	// StartTunnel is called after a 101 (or a 2xx to CONNECT) response was encoded: the
	// downstream connection and up then carry raw bytes both ways (tcp_proxy's byte path,
	// splice included) until either closes. rest are bytes up already sent after the
	// response head.
	StartTunnel(up *engine.Connection, rest []byte)
}

// RouteOutcome is a route decision the connection manager counts.
type RouteOutcome uint8

// Route outcomes.
const (
	NoRoute RouteOutcome = iota
	NoCluster
	DirectResponse
	Redirect
)

// StreamFilter is an HTTP filter on the request path (Envoy's StreamDecoderFilter). The
// router is the only one so far, and the last of a chain.
type StreamFilter interface {
	// DecodeHeaders starts a stream: the request's headers are complete.
	DecodeHeaders(endStream bool)
	// DecodeData is a piece of the request body (valid only during the call); endStream
	// marks its end (data may then be empty).
	DecodeData(data []byte, endStream bool)
	// OnDownstreamWatermark says the downstream write buffer went above (true) or below
	// (false) its watermarks: stop or resume reading the response.
	OnDownstreamWatermark(above bool)
	// OnStreamReset: the stream ends before its response did (the client went away, a
	// timeout fired): release whatever the filter holds for it.
	OnStreamReset()
	// OnStreamComplete: the response was sent in full; the filter is reused for the
	// connection's next stream.
	OnStreamComplete()
}

// Recycler is implemented by a filter that can serve another downstream connection of
// the same worker: the connection manager keeps a closed connection's state (its grown
// header maps and buffers) and its filter for the next one, and calls Recycle, after
// which the filter's callbacks belong to the new connection.
type Recycler interface {
	Recycle()
}

// Factory makes a filter for each downstream connection.
type Factory interface {
	// Name is the filter's Envoy name (envoy.filters.http.router).
	Name() string
	CreateFilter(cb StreamCallbacks) StreamFilter
}

// Package http1 is Portico's HTTP/1.1 (and 1.0) codec: a strict, resumable parser for
// requests and responses and the matching encoder. It is fed bytes that are valid only
// during the call (a worker's read buffer), reports what it finds through a Handler, and
// copies header blocks once into a header.Map the caller owns. It imports nothing of the
// engine, so it is tested without sockets.
//
// The parser is the proxy's security boundary against request smuggling: every framing
// rule it enforces is listed in policy.go with the reason and the status it answers.
package http1

import "github.com/portico-proxy/portico/http/header"

// Version is an HTTP/1 minor version.
type Version uint8

// Versions.
const (
	HTTP10 Version = iota
	HTTP11
)

func (v Version) String() string {
	if v == HTTP10 {
		return "HTTP/1.0"
	}
	return "HTTP/1.1"
}

// BodyKind is how a message's body is framed.
type BodyKind uint8

// Body framings.
const (
	BodyNone          BodyKind = iota // no body (GET without length, HEAD/1xx/204/304 responses)
	BodyContentLength                 // Content-Length bytes
	BodyChunked                       // Transfer-Encoding: chunked
	BodyUntilClose                    // a response without length: until the server closes
)

// UnderscoreAction is Envoy's headers_with_underscores_action.
type UnderscoreAction uint8

// Actions for header names with underscores.
const (
	UnderscoreAllow UnderscoreAction = iota
	UnderscoreRejectRequest
	UnderscoreDropHeader
)

// Limits bound and shape what a parser accepts. The zero value is not useful: start
// from DefaultLimits.
type Limits struct {
	// MaxHeadersBytes bounds the request or status line plus the header block
	// (max_request_headers_kb, 60 KiB by default): past it, 431.
	MaxHeadersBytes int
	// MaxHeadersCount bounds the number of header fields (max_headers_count, 100): past
	// it, 431.
	MaxHeadersCount int
	// HeadersWithUnderscores is applied to request header names.
	HeadersWithUnderscores UnderscoreAction
	// AcceptHTTP10 accepts HTTP/1.0 requests (http_protocol_options.accept_http_10);
	// without it they get 426.
	AcceptHTTP10 bool
	// DefaultHostForHTTP10 is the :authority given to an HTTP/1.0 request without Host.
	DefaultHostForHTTP10 string
}

// DefaultLimits are Envoy's defaults.
var DefaultLimits = Limits{MaxHeadersBytes: 60 << 10, MaxHeadersCount: 100}

// Message describes the message whose headers were just parsed: the framing the parser
// derived, which the connection manager needs without looking at headers again.
type Message struct {
	Version Version
	// Status is a response's status code; 0 for requests.
	Status int
	// Head and Connect say the request's method is HEAD or CONNECT.
	Head, Connect bool
	// KeepAlive: the connection may carry another message after this one (HTTP/1.1
	// without "Connection: close", or HTTP/1.0 with "Connection: keep-alive").
	KeepAlive bool
	Body      BodyKind
	// ContentLength is the declared length for BodyContentLength.
	ContentLength int64
	// Upgrade: "Connection: upgrade" with an Upgrade header (a websocket handshake, an
	// h2c upgrade); the header itself is in the map.
	Upgrade bool
	// Expect100: "Expect: 100-continue" (case-insensitive) on an HTTP/1.1 request (RFC
	// 9110 §10.1.1: a server ignores it from an HTTP/1.0 client).
	Expect100 bool
	// DroppedUnderscoreHeaders counts the request header (and trailer) fields dropped
	// under UnderscoreDropHeader, for Envoy's
	// downstream_rq_dropped_headers_with_underscores; trailers add to it before
	// OnComplete.
	DroppedUnderscoreHeaders int
}

// Handler receives a parser's events, in order: OnHeaders, any number of OnBody, then
// OnComplete. A response parser may deliver a 1xx informational message (headers then
// complete, no body) before the final response; after a 101 it stops and reports the
// rest as not consumed (the connection then carries another protocol).
type Handler interface {
	// OnHeaders: the header block is complete. h is the caller's map the parser filled
	// (see Parser.Init); it holds the pseudo-headers (":method", ":path", ":authority"
	// for requests, ":status" for responses) and the fields in order, names lower-case.
	OnHeaders(h *header.Map, m *Message)
	// OnBody: a piece of the body, de-chunked; valid only during the call.
	OnBody(data []byte)
	// OnComplete: the message ended. Parse returns right after it, so the caller decides
	// when to parse the next one (pipelined requests are answered in order).
	OnComplete()
}

// Error is a protocol error: the message cannot be parsed and the connection must be
// closed after answering Status (for requests; a response error makes the proxy answer
// 502/503 downstream). Detail is Envoy's response code details string
// ("http1.codec_error", "http1.invalid_characters", "http1.headers_too_large" ...).
type Error struct {
	Status int
	Detail string
	// Reason says what was wrong in words, for logs and tests ("content-length: not a
	// decimal number"); it never goes on the wire.
	Reason string
}

func (e *Error) Error() string {
	if e.Reason == "" {
		return e.Detail
	}
	return e.Detail + ": " + e.Reason
}

package http1

import (
	"bytes"
	"encoding/binary"
	"math"

	"github.com/portico-proxy/portico/http/header"
)

// Response code details the parser reports in Error.Detail (Envoy's
// Http1ResponseCodeDetails where Envoy has one). The connection manager puts them in the
// access log's %RESPONSE_CODE_DETAILS% and may count them.
const (
	DetailCodecError             = "http1.codec_error"           // malformed framing (request/status line, CRLF, EOF mid-message)
	DetailInvalidCharacters      = "http1.invalid_characters"    // bytes not allowed in a header name or value
	DetailHeadersTooLarge        = "http1.headers_too_large"     // head or trailers over MaxHeadersBytes
	DetailTooManyHeaders         = "http1.too_many_headers"      // over MaxHeadersCount fields
	DetailUnexpectedUnderscore   = "http1.unexpected_underscore" // UnderscoreRejectRequest
	DetailInvalidTransferEncode  = "http1.invalid_transfer_encoding"
	DetailChunkedContentLength   = "http1.content_length_and_chunked_not_allowed"
	DetailInvalidContentLength   = "http1.invalid_content_length"
	DetailInvalidURL             = "http1.invalid_url"
	DetailInvalidMethod          = "http1.invalid_method"
	DetailInvalidVersion         = "http1.invalid_http_version"
	DetailH2Preface              = "http1.h2_preface" // "PRI * HTTP/2.0": an h2 prior-knowledge client
	DetailHTTP10NotSupported     = "http1.http_10_not_supported"
	DetailMissingHost            = "http1.missing_host_header"
	DetailMultipleHost           = "http1.multiple_host_headers"
	DetailInvalidHost            = "http1.invalid_host"
	DetailObsFold                = "http1.obs_fold"
	DetailInvalidChunk           = "http1.invalid_chunk"
	DetailInvalidStatus          = "http1.invalid_status"
	DetailConnectWithBody        = "http1.connect_with_body"
	DetailTransferEncodingHTTP10 = "http1.transfer_encoding_http10"
)

// maxChunkExtBytes bounds one chunk line's extensions. They are rarely sent and never
// interpreted; the bound keeps a peer from streaming an endless chunk line that a
// limit-less parser would have to scan (nginx and llhttp do not bound them; Envoy's
// Balsa bounds the chunk line by its buffer).
const maxChunkExtBytes = 4096

type state uint8

const (
	stIdle        state = iota // between messages; nothing of the next one seen
	stLeadingLF                // saw the CR of an empty line before a request line
	stFirstLine                // request or status line
	stHeaders                  // header block
	stBodyLength               // Content-Length body
	stChunkSize                // hex digits of a chunk-size line
	stChunkBWS                 // whitespace after the size (only ';' may follow)
	stChunkExt                 // chunk extensions up to CR
	stChunkSizeLF              // LF ending the chunk-size line
	stChunkData                // chunk data
	stChunkDataCR              // CR after chunk data
	stChunkDataLF              // LF after chunk data
	stTrailers                 // trailer block after the last chunk
	stUntilClose               // a response body read until the server closes
	stUpgraded                 // after a 101 or CONNECT-2xx response: not HTTP any more
	stDead                     // a protocol error: Parse fails until Init
)

// msgState is what the parser learns about one message while reading its head; it is
// zeroed as the message starts.
type msgState struct {
	version   Version
	status    int
	pseudo    int  // pseudo-header fields at the map's front (":authority" goes after them)
	authority bool // ":authority" set from the request target (absolute-form, CONNECT)
	head      bool
	connect   bool

	hosts      int
	cls        int
	cl         int64
	tes        int
	teNotChunk bool // a Transfer-Encoding value other than exactly "chunked"

	connClose, connKeepAlive, connUpgrade bool
	upgrade                               bool
	expect100                             bool
}

// Parser is a resumable HTTP/1 request or response parser. Its zero value is unusable
// until InitRequest or InitResponse; Init again to reuse it for another connection.
type Parser struct {
	lim      Limits
	response bool
	state    state
	err      *Error

	hdr *header.Map
	own header.Map // headers go here when SetHeaderMap was never called

	// buf holds a line that has not ended yet when a Parse call's data runs out; it
	// grows to the longest such line (bounded by MaxHeadersBytes) and is reused.
	buf       []byte
	lineInBuf bool // the last line returned aliases buf: empty it before the next
	headBytes int  // bytes of the current head or trailer block
	fields    int  // fields of the current head or trailer block

	msg Message
	m   msgState

	// The request the next response answers (ExpectResponseTo).
	expHead, expConnect bool

	remaining   int64 // bytes left of a Content-Length body or of the current chunk
	chunkDigits int
	chunkExt    int
}

// InitRequest readies p to parse requests under l, forgetting any previous connection
// (its line buffer is kept for reuse).
func (p *Parser) InitRequest(l Limits) { p.init(l, false) }

// InitResponse readies p to parse responses under l.
func (p *Parser) InitResponse(l Limits) { p.init(l, true) }

func (p *Parser) init(l Limits, response bool) {
	// A zero limit would reject every message; read it as "Envoy's default" so a
	// partly filled Limits is not a trap.
	if l.MaxHeadersBytes <= 0 {
		l.MaxHeadersBytes = DefaultLimits.MaxHeadersBytes
	}
	if l.MaxHeadersCount <= 0 {
		l.MaxHeadersCount = DefaultLimits.MaxHeadersCount
	}
	*p = Parser{lim: l, response: response, hdr: p.hdr, buf: p.buf[:0], own: p.own}
	p.own.Reset()
}

// SetHeaderMap gives the map the next message's headers go into; the parser Resets it
// when that message's first byte arrives and keeps using it for later messages until
// told otherwise. It must be called before Parse sees a new message (it may be called
// again between messages); without it the parser uses a map of its own.
func (p *Parser) SetHeaderMap(h *header.Map) { p.hdr = h }

// ExpectResponseTo tells a response parser about the request the next response
// answers: head (no body whatever the headers say), connect (a 2xx ends the parse like
// a 101: the rest is tunnel bytes). It holds across 1xx responses until the final one.
func (p *Parser) ExpectResponseTo(head, connect bool) { p.expHead, p.expConnect = head, connect }

// Idle reports whether the parser is between messages and has seen no byte of the next
// (empty lines skipped before a request line do not count as bytes of it).
func (p *Parser) Idle() bool { return p.state == stIdle }

// Upgraded reports that a response parser stopped after a 101 or a 2xx to CONNECT: the
// connection now carries another protocol and Parse consumes nothing (returns 0, nil).
// A request parser never stops by itself: after an Upgrade or CONNECT request's
// OnComplete the caller decides whether the rest is tunnel bytes (Message.Upgrade,
// Message.Connect) and stops calling Parse.
func (p *Parser) Upgraded() bool { return p.state == stUpgraded }

func (p *Parser) fail(status int, detail, reason string) *Error {
	if p.response {
		// Any upstream protocol error is answered downstream as a bad gateway.
		status = 502
	}
	e := &Error{Status: status, Detail: detail, Reason: reason}
	p.err = e
	p.state = stDead
	return e
}

// Parse consumes data (valid only during the call), calling h. It returns how many
// bytes it consumed: all of data, or fewer when a message completed (it returns right
// after OnComplete so the caller controls pipelining) or after a 101/CONNECT-2xx
// response (the rest is not HTTP). err is *Error on a protocol error; the parser is
// then dead until Init again.
func (p *Parser) Parse(data []byte, h Handler) (n int, err error) {
	if p.state == stDead {
		return 0, p.err
	}
	for n < len(data) {
		switch p.state {
		case stIdle:
			if !p.response && data[n] == '\r' {
				// RFC 9112 §2.2: a server SHOULD ignore an empty line before the
				// request line (Envoy does, http1_balsa_allow_cr_or_lf_at_request_start).
				p.state = stLeadingLF
				n++
				continue
			}
			p.startMessage()
		case stLeadingLF:
			if data[n] != '\n' {
				return n, p.fail(400, DetailCodecError, "CR without LF before the request line")
			}
			p.state = stIdle
			n++
		case stFirstLine, stHeaders, stTrailers:
			line, used, ok, e := p.nextLine(data[n:])
			n += used
			if e != nil {
				return n, e
			}
			if !ok {
				return n, nil
			}
			switch p.state {
			case stFirstLine:
				// The state moves on first: a failing line sets stDead, which must stick.
				p.state = stHeaders
				if p.response {
					e = p.statusLine(line)
				} else {
					e = p.requestLine(line)
				}
			case stHeaders:
				if len(line) == 0 {
					done, e := p.endHead(h)
					if e != nil {
						return n, e
					}
					if done {
						return n, nil
					}
					continue
				}
				e = p.headerLine(line, false)
			case stTrailers:
				if len(line) == 0 {
					p.complete(h)
					return n, nil
				}
				e = p.headerLine(line, true)
			}
			if e != nil {
				return n, e
			}
		case stBodyLength:
			k := len(data) - n
			if int64(k) > p.remaining {
				k = int(p.remaining)
			}
			p.remaining -= int64(k)
			h.OnBody(data[n : n+k])
			n += k
			if p.remaining == 0 {
				p.complete(h)
				return n, nil
			}
		case stUntilClose:
			h.OnBody(data[n:])
			n = len(data)
		case stChunkData:
			k := len(data) - n
			if int64(k) > p.remaining {
				k = int(p.remaining)
			}
			p.remaining -= int64(k)
			h.OnBody(data[n : n+k])
			n += k
			if p.remaining == 0 {
				p.state = stChunkDataCR
			}
		case stChunkSize, stChunkBWS, stChunkExt, stChunkSizeLF, stChunkDataCR, stChunkDataLF:
			used, e := p.chunkFraming(data[n:])
			n += used
			if e != nil {
				return n, e
			}
		case stUpgraded:
			return n, nil
		}
	}
	return n, nil
}

// Finish tells the parser the peer ended its stream: it completes a BodyUntilClose
// response (OnComplete) and returns nil; a message cut short returns *Error (400 for
// requests, 502 for responses, DetailCodecError); idle (between messages, or after a
// 101) returns nil.
func (p *Parser) Finish(h Handler) error {
	switch p.state {
	case stIdle, stLeadingLF, stUpgraded:
		return nil
	case stDead:
		return p.err
	case stUntilClose:
		p.complete(h)
		return nil
	}
	return p.fail(400, DetailCodecError, "stream ended mid-message")
}

func (p *Parser) startMessage() {
	if p.hdr == nil {
		p.hdr = &p.own
	}
	p.hdr.Reset()
	p.m = msgState{}
	p.msg = Message{}
	p.headBytes, p.fields = 0, 0
	p.state = stFirstLine
}

// complete ends the message: OnComplete, then the state for what follows.
func (p *Parser) complete(h Handler) {
	p.state = stIdle
	if p.response {
		switch {
		case p.m.status == 101, p.m.connect && p.m.status/100 == 2:
			p.state = stUpgraded
		}
		if p.m.status >= 200 || p.m.status == 101 {
			// The final response answered the request the expectation was about.
			p.expHead, p.expConnect = false, false
		}
	}
	h.OnComplete()
}

// nextLine returns the next complete line of a head or trailer block without its CRLF,
// and how many bytes of data it used. ok is false when data ended mid-line: the bytes
// are kept in p.buf and all of data is used.
func (p *Parser) nextLine(data []byte) (line []byte, used int, ok bool, e *Error) {
	if p.lineInBuf {
		p.buf = p.buf[:0]
		p.lineInBuf = false
	}
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		// The limit is checked against the bytes so far, so a line that can no longer
		// fit fails now (not after MaxHeadersBytes more), with the verdict a
		// one-buffer parse reaches when it finds the line's end.
		if p.headBytes+len(p.buf)+len(data) > p.lim.MaxHeadersBytes {
			return nil, len(data), false, p.tooLarge()
		}
		p.buf = append(p.buf, data...)
		return nil, len(data), false, nil
	}
	used = i + 1
	if len(p.buf) > 0 {
		if p.headBytes+len(p.buf)+used > p.lim.MaxHeadersBytes {
			return nil, used, false, p.tooLarge()
		}
		p.buf = append(p.buf, data[:used]...)
		line = p.buf
		p.lineInBuf = true
	} else {
		line = data[:used]
	}
	p.headBytes += len(line)
	if p.headBytes > p.lim.MaxHeadersBytes {
		return nil, used, false, p.tooLarge()
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		// A bare LF ends a line for some parsers and not for others (Envoy's Balsa and
		// llhttp in strict mode reject it in the head): a desync vector.
		return nil, used, false, p.fail(400, DetailCodecError, "line ends in a bare LF")
	}
	return line[:len(line)-2], used, true, nil
}

func (p *Parser) tooLarge() *Error {
	status := 431
	return p.fail(status, DetailHeadersTooLarge, "head or trailers exceed MaxHeadersBytes")
}

// parseVersion reads "HTTP/d.d". ok: well formed; then v is 1.0 or 1.1, or supported
// is false.
func parseVersion(b []byte) (v Version, supported, ok bool) {
	if len(b) != 8 || string(b[:5]) != "HTTP/" || b[6] != '.' || !isDigit(b[5]) || !isDigit(b[7]) {
		return 0, false, false
	}
	switch string(b[5:]) {
	case "1.1":
		return HTTP11, true, true
	case "1.0":
		return HTTP10, true, true
	}
	return 0, false, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func (p *Parser) requestLine(line []byte) *Error {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return p.fail(400, DetailInvalidMethod, "request line: no method")
	}
	method := line[:sp]
	for _, c := range method {
		if charClass[c]&cToken == 0 {
			return p.fail(400, DetailInvalidMethod, "request line: method is not a token")
		}
	}
	rest := line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp < 0 {
		// "GET /" alone is HTTP/0.9, which Envoy does not speak.
		return p.fail(400, DetailCodecError, "request line: no HTTP version")
	}
	target, ver := rest[:sp], rest[sp+1:]
	if len(target) == 0 {
		return p.fail(400, DetailInvalidURL, "request line: empty request-target")
	}
	for _, c := range target {
		if charClass[c]&cTarget == 0 {
			return p.fail(400, DetailInvalidURL, "request line: byte not allowed in request-target")
		}
	}
	v, supported, ok := parseVersion(ver)
	if !ok {
		return p.fail(400, DetailInvalidVersion, "request line: malformed HTTP version")
	}
	if !supported {
		if string(method) == "PRI" && string(target) == "*" && string(ver) == "HTTP/2.0" {
			return p.fail(505, DetailH2Preface, "HTTP/2 connection preface on an HTTP/1 listener")
		}
		return p.fail(505, DetailInvalidVersion, "request line: HTTP version is neither 1.0 nor 1.1")
	}
	if v == HTTP10 && !p.lim.AcceptHTTP10 {
		return p.fail(426, DetailHTTP10NotSupported, "HTTP/1.0 is not accepted")
	}
	p.m.version = v
	p.m.head = string(method) == "HEAD"
	p.m.connect = string(method) == "CONNECT"
	h := p.hdr
	h.AddLower([]byte(":method"), method)
	switch {
	case p.m.connect:
		// RFC 9110 §9.3.6: CONNECT's target is authority-form, host:port, and nothing
		// else; it is the :authority and there is no :path (as in HTTP/2).
		if !validAuthorityForm(target) {
			return p.fail(400, DetailInvalidURL, "CONNECT: request-target is not host:port")
		}
		h.AddLower([]byte(":authority"), target)
		p.m.authority = true
		p.m.pseudo = 2
		return nil
	case target[0] == '/':
		h.AddLower([]byte(":path"), target)
	case len(target) == 1 && target[0] == '*':
		if string(method) != "OPTIONS" {
			return p.fail(400, DetailInvalidURL, "asterisk-form request-target is only for OPTIONS")
		}
		h.AddLower([]byte(":path"), target)
	default:
		authority, path, ok := splitAbsolute(target)
		if !ok {
			return p.fail(400, DetailInvalidURL, "request-target is not origin-, absolute-, authority- or asterisk-form")
		}
		if len(path) == 0 {
			h.AddLower([]byte(":path"), []byte{'/'})
		} else if path[0] == '?' {
			h.AddLower([]byte(":path"), []byte{'/'})
			h.AppendValue(":path", path, "")
		} else {
			h.AddLower([]byte(":path"), path)
		}
		// RFC 9112 §3.2.2: the absolute-form's authority replaces Host (Envoy sets
		// Host from the URL).
		h.AddLower([]byte(":authority"), authority)
		p.m.authority = true
		p.m.pseudo = 3
		return nil
	}
	p.m.pseudo = 2
	return nil
}

// splitAbsolute splits an absolute-form http(s) URI into authority and the rest (path
// and query). Userinfo is refused: RFC 9110 §4.2.4 deprecates it and "a@b" reads as
// different hosts to different parsers.
func splitAbsolute(t []byte) (authority, path []byte, ok bool) {
	var rest []byte
	switch {
	case len(t) > 7 && eqFold(t[:7], "http://"):
		rest = t[7:]
	case len(t) > 8 && eqFold(t[:8], "https://"):
		rest = t[8:]
	default:
		return nil, nil, false
	}
	end := len(rest)
	for i, c := range rest {
		if c == '/' || c == '?' {
			end = i
			break
		}
		if c == '@' || c == '#' {
			return nil, nil, false
		}
	}
	if end == 0 {
		return nil, nil, false
	}
	return rest[:end], rest[end:], true
}

// validAuthorityForm: host ":" port with a non-empty host and a decimal port.
func validAuthorityForm(t []byte) bool {
	i := bytes.LastIndexByte(t, ':')
	if i <= 0 || i == len(t)-1 || len(t)-i-1 > 5 {
		return false
	}
	for _, c := range t[i+1:] {
		if !isDigit(c) {
			return false
		}
	}
	for _, c := range t[:i] {
		switch c {
		case '/', '?', '#', '@':
			return false
		}
	}
	return true
}

func (p *Parser) statusLine(line []byte) *Error {
	if len(line) < 12 {
		return p.fail(502, DetailInvalidStatus, "status line too short")
	}
	v, supported, ok := parseVersion(line[:8])
	if !ok || !supported {
		return p.fail(502, DetailInvalidVersion, "status line: HTTP version is neither 1.0 nor 1.1")
	}
	if line[8] != ' ' || !isDigit(line[9]) || !isDigit(line[10]) || !isDigit(line[11]) {
		return p.fail(502, DetailInvalidStatus, "status line: no three-digit status code")
	}
	code := int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	if code < 100 || code > 599 {
		return p.fail(502, DetailInvalidStatus, "status code outside 100-599")
	}
	// RFC 9112 §4: SP then an optional reason phrase; "HTTP/1.1 200" without the SP
	// is common enough that llhttp and Envoy accept it.
	if len(line) > 12 {
		if line[12] != ' ' {
			return p.fail(502, DetailInvalidStatus, "status line: no SP after the status code")
		}
		for _, c := range line[13:] {
			if charClass[c]&cValue == 0 {
				return p.fail(502, DetailInvalidStatus, "status line: byte not allowed in reason phrase")
			}
		}
	}
	p.m.version = v
	p.m.status = code
	p.m.head, p.m.connect = p.expHead, p.expConnect
	p.hdr.AddLower([]byte(":status"), line[9:12])
	p.m.pseudo = 1
	return nil
}

// headerLine validates one field line and records it: in the map (head) or nowhere
// (trailers, which Envoy discards by default).
func (p *Parser) headerLine(line []byte, trailer bool) *Error {
	if line[0] == ' ' || line[0] == '\t' {
		// RFC 9112 §5.2 lets a server reject obs-fold with 400; unfolding it is where
		// parsers disagree (Envoy's codecs unfold, we do not).
		return p.fail(400, DetailObsFold, "obsolete line folding")
	}
	colon := -1
	underscore, upper := false, false
	for i, c := range line {
		if c == ':' {
			colon = i
			break
		}
		if charClass[c]&cToken == 0 {
			if c == ' ' || c == '\t' {
				// RFC 9112 §5.1: a server MUST reject whitespace before the colon.
				return p.fail(400, DetailInvalidCharacters, "whitespace between field name and colon")
			}
			return p.fail(400, DetailInvalidCharacters, "field name is not a token")
		}
		switch {
		case c == '_':
			underscore = true
		case 'A' <= c && c <= 'Z':
			upper = true
		}
	}
	if colon < 0 {
		return p.fail(400, DetailCodecError, "field line without a colon")
	}
	if colon == 0 {
		return p.fail(400, DetailInvalidCharacters, "empty field name")
	}
	name, v := line[:colon], line[colon+1:]
	i, j := 0, len(v)
	for i < j && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	for j > i && (v[j-1] == ' ' || v[j-1] == '\t') {
		j--
	}
	v = v[i:j]
	if !validValue(v) {
		return p.fail(400, DetailInvalidCharacters, "byte not allowed in field value")
	}
	p.fields++
	if p.fields > p.lim.MaxHeadersCount {
		return p.fail(431, DetailTooManyHeaders, "more than MaxHeadersCount fields")
	}
	if underscore && !p.response {
		switch p.lim.HeadersWithUnderscores {
		case UnderscoreRejectRequest:
			return p.fail(400, DetailUnexpectedUnderscore, "field name with an underscore")
		case UnderscoreDropHeader:
			p.msg.DroppedUnderscoreHeaders++
			return nil
		}
	}
	if trailer {
		return nil
	}
	switch len(name) {
	case 4:
		if !p.response && eqFold(name, "host") {
			return p.host(v)
		}
	case 6:
		if eqFold(name, "expect") {
			p.m.expect100 = eqFold(v, "100-continue")
		}
	case 7:
		if eqFold(name, "upgrade") {
			p.m.upgrade = true
		}
	case 10:
		if eqFold(name, "connection") {
			p.connection(v)
		}
	case 14:
		if eqFold(name, "content-length") {
			p.m.cls++
			if p.m.cls > 1 {
				// RFC 9112 §6.3 allows merging equal values; Envoy (and we) refuse any
				// second Content-Length, the simplest rule no peer can read differently.
				return p.fail(400, DetailInvalidContentLength, "more than one Content-Length")
			}
			n, ok := parseContentLength(v)
			if !ok {
				return p.fail(400, DetailInvalidContentLength, "Content-Length is not a decimal number that fits int64")
			}
			p.m.cl = n
		}
	case 17:
		if eqFold(name, "transfer-encoding") {
			p.m.tes++
			if !eqFold(v, "chunked") {
				p.m.teNotChunk = true
			}
		}
	}
	if upper {
		p.hdr.Add(name, v)
	} else {
		p.hdr.AddLower(name, v)
	}
	return nil
}

// host records a request's Host header as ":authority" right after the other
// pseudo-headers.
func (p *Parser) host(v []byte) *Error {
	p.m.hosts++
	if p.m.hosts > 1 {
		return p.fail(400, DetailMultipleHost, "more than one Host")
	}
	for _, c := range v {
		// Whitespace, userinfo, paths in a Host are read differently by different
		// hops (RFC 9110 §7.2: Host is uri-host [":" port]).
		switch c {
		case ' ', '\t', '/', '?', '#', '@', '\\':
			return p.fail(400, DetailInvalidHost, "byte not allowed in Host")
		}
	}
	if p.m.authority {
		// The request-target's authority wins (RFC 9112 §3.2.2).
		return nil
	}
	p.hdr.Insert(p.m.pseudo, []byte(":authority"), v)
	p.m.pseudo++
	p.m.authority = true
	return nil
}

// connection reads Connection's comma-separated tokens (RFC 9110 §7.6.1).
func (p *Parser) connection(v []byte) {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var tok []byte
		if i < 0 {
			tok, v = v, nil
		} else {
			tok, v = v[:i], v[i+1:]
		}
		tok = bytes.Trim(tok, " \t")
		switch len(tok) {
		case 5:
			if eqFold(tok, "close") {
				p.m.connClose = true
			}
		case 7:
			if eqFold(tok, "upgrade") {
				p.m.connUpgrade = true
			}
		case 10:
			if eqFold(tok, "keep-alive") {
				p.m.connKeepAlive = true
			}
		}
	}
}

// parseContentLength: 1*DIGIT, no sign, no list, no whitespace inside, fits int64.
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// eqFold compares b with a lower-case ASCII string, ignoring b's case. b holds token or
// field-value bytes, where only letters fold.
func eqFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// endHead derives the framing once the empty line ends the head, reports OnHeaders
// and, for a message without a body, OnComplete (done).
func (p *Parser) endHead(h Handler) (done bool, e *Error) {
	m := &p.m
	msg := &p.msg
	if p.response {
		e = p.responseFraming()
	} else {
		e = p.requestFraming()
	}
	if e != nil {
		return false, e
	}
	msg.Version = m.version
	msg.Status = m.status
	msg.Head, msg.Connect = m.head, m.connect
	msg.ContentLength = m.cl
	if m.version == HTTP11 {
		msg.KeepAlive = !m.connClose
	} else {
		msg.KeepAlive = m.connKeepAlive && !m.connClose
	}
	if msg.Body == BodyUntilClose {
		msg.KeepAlive = false
	}
	msg.Upgrade = m.connUpgrade && m.upgrade
	msg.Expect100 = m.expect100 && !p.response && m.version == HTTP11
	h.OnHeaders(p.hdr, msg)
	switch msg.Body {
	case BodyNone:
		p.complete(h)
		return true, nil
	case BodyContentLength:
		p.remaining = m.cl
		p.state = stBodyLength
	case BodyChunked:
		p.remaining, p.chunkDigits, p.chunkExt = 0, 0, 0
		p.state = stChunkSize
	case BodyUntilClose:
		p.state = stUntilClose
	}
	return false, nil
}

func (p *Parser) requestFraming() *Error {
	m := &p.m
	if !m.authority {
		switch {
		case m.version == HTTP11:
			// RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host.
			return p.fail(400, DetailMissingHost, "HTTP/1.1 request without Host")
		case p.lim.DefaultHostForHTTP10 != "":
			p.hdr.Insert(p.m.pseudo, []byte(":authority"), []byte(p.lim.DefaultHostForHTTP10))
			m.pseudo++
		}
	}
	if m.tes > 0 {
		if m.version == HTTP10 {
			// RFC 9112 §6.1: chunked is not defined for HTTP/1.0; a 1.0 hop behind us
			// would read the body by Content-Length or to the close.
			return p.fail(400, DetailTransferEncodingHTTP10, "Transfer-Encoding on an HTTP/1.0 request")
		}
		if m.tes > 1 || m.teNotChunk || m.connect {
			return p.fail(501, DetailInvalidTransferEncode, "Transfer-Encoding other than exactly chunked")
		}
		if m.cls > 0 {
			return p.fail(400, DetailChunkedContentLength, "both Content-Length and Transfer-Encoding")
		}
		p.msg.Body = BodyChunked
		return nil
	}
	if m.cls > 0 && m.cl > 0 {
		if m.connect {
			// A CONNECT's bytes after the head are the tunnel: a declared body would be
			// read as part of it by one hop and as a body by another.
			return p.fail(400, DetailConnectWithBody, "CONNECT with a Content-Length body")
		}
		p.msg.Body = BodyContentLength
	}
	return nil
}

func (p *Parser) responseFraming() *Error {
	m := &p.m
	if m.tes > 0 {
		// Same strictness as requests: RFC 9112 §6.3 would read an unknown coding to
		// the close, but an upstream that sends one is broken or hostile.
		if m.version == HTTP10 {
			return p.fail(502, DetailTransferEncodingHTTP10, "Transfer-Encoding on an HTTP/1.0 response")
		}
		if m.tes > 1 || m.teNotChunk {
			return p.fail(502, DetailInvalidTransferEncode, "Transfer-Encoding other than exactly chunked")
		}
		if m.cls > 0 {
			return p.fail(502, DetailChunkedContentLength, "both Content-Length and Transfer-Encoding")
		}
	}
	switch {
	case m.status < 200, m.status == 204, m.status == 304, m.head,
		m.connect && m.status/100 == 2:
		// RFC 9112 §6.3 rules 1 and 2: no body whatever the headers say.
		p.msg.Body = BodyNone
	case m.tes > 0:
		p.msg.Body = BodyChunked
	case m.cls > 0:
		if m.cl > 0 {
			p.msg.Body = BodyContentLength
		}
	default:
		p.msg.Body = BodyUntilClose
	}
	return nil
}

func unhex(c byte) int64 {
	switch {
	case '0' <= c && c <= '9':
		return int64(c - '0')
	case 'a' <= c && c <= 'f':
		return int64(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int64(c-'A') + 10
	}
	return -1
}

// chunkFraming reads the chunk-size line and the CRLF after chunk data, byte by byte
// (they are a few bytes; no buffering needed to resume anywhere in them).
func (p *Parser) chunkFraming(data []byte) (int, *Error) {
	for n, c := range data {
		switch p.state {
		case stChunkSize:
			if d := unhex(c); d >= 0 {
				if p.chunkDigits == 16 || p.remaining > math.MaxInt64>>4 {
					return n, p.fail(400, DetailInvalidChunk, "chunk size overflows int64")
				}
				p.remaining = p.remaining<<4 | d
				p.chunkDigits++
				continue
			}
			if p.chunkDigits == 0 {
				return n, p.fail(400, DetailInvalidChunk, "chunk size is not hex")
			}
			switch c {
			case '\r':
				p.state = stChunkSizeLF
			case ';':
				p.state = stChunkExt
			case ' ', '\t':
				p.state = stChunkBWS
			default:
				return n, p.fail(400, DetailInvalidChunk, "byte not allowed after chunk size")
			}
		case stChunkBWS:
			// RFC 9112 §7.1.1: BWS may only precede a ';' extension.
			switch c {
			case ' ', '\t':
			case ';':
				p.state = stChunkExt
			default:
				return n, p.fail(400, DetailInvalidChunk, "whitespace after chunk size without an extension")
			}
		case stChunkExt:
			if c == '\r' {
				p.state = stChunkSizeLF
				continue
			}
			// Extensions are ignored, as Envoy does; CTLs (a lone LF above all) are
			// where parsers disagree on where the line ends.
			if charClass[c]&cValue == 0 {
				return n, p.fail(400, DetailInvalidChunk, "byte not allowed in chunk extension")
			}
			p.chunkExt++
			if p.chunkExt > maxChunkExtBytes {
				return n, p.fail(400, DetailInvalidChunk, "chunk extensions too long")
			}
		case stChunkSizeLF:
			if c != '\n' {
				return n, p.fail(400, DetailInvalidChunk, "chunk-size line not ended by CRLF")
			}
			if p.remaining == 0 {
				p.state = stTrailers
				p.headBytes, p.fields = 0, 0
			} else {
				p.state = stChunkData
			}
			return n + 1, nil
		case stChunkDataCR:
			if c != '\r' {
				return n, p.fail(400, DetailInvalidChunk, "chunk data not followed by CRLF")
			}
			p.state = stChunkDataLF
		case stChunkDataLF:
			if c != '\n' {
				return n, p.fail(400, DetailInvalidChunk, "chunk data not followed by CRLF")
			}
			p.state = stChunkSize
			p.remaining, p.chunkDigits, p.chunkExt = 0, 0, 0
		}
	}
	return len(data), nil
}

// validValue reports whether every byte of a field value is allowed (HT, SP, VCHAR,
// obs-text). It checks eight bytes at a time: a word holds no byte below 0x20 and no DEL
// unless one of two carry tricks says it may (they never miss one, and may flag a word
// wrongly only when it holds such a byte or an HT), and only such a word is looked at
// byte by byte. Values are most of a header block's bytes, so this is most of its scan.
func validValue(v []byte) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	i := 0
	for ; i+8 <= len(v); i += 8 {
		x := binary.LittleEndian.Uint64(v[i:])
		below := (x - 0x20*ones) &^ x & highs // some byte < 0x20 (HT among them)
		d := x ^ 0x7f*ones
		del := (d - ones) &^ d & highs // some byte == 0x7f
		if below|del != 0 {
			for _, c := range v[i : i+8] {
				if charClass[c]&cValue == 0 {
					return false
				}
			}
		}
	}
	for _, c := range v[i:] {
		if charClass[c]&cValue == 0 {
			return false
		}
	}
	return true
}

package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/portico-proxy/portico/http/header"
)

// checker is a Handler that asserts the parser's invariants as events arrive.
type checker struct {
	t        *testing.T
	p        *Parser
	msg      Message
	inMsg    bool
	body     int64
	bodyData []byte
	messages int
}

func (c *checker) OnHeaders(h *header.Map, m *Message) {
	if c.inMsg {
		c.t.Fatal("OnHeaders twice without OnComplete")
	}
	c.inMsg, c.msg, c.body = true, *m, 0
	c.bodyData = c.bodyData[:0]
	// Pseudo-headers come first, then only lower-case token names and clean values.
	pseudo := true
	h.Range(func(name, value []byte) bool {
		if name[0] == ':' {
			if !pseudo {
				c.t.Fatalf("pseudo-header %s after a regular field", name)
			}
		} else {
			pseudo = false
			for _, b := range name {
				if charClass[b]&cToken == 0 || ('A' <= b && b <= 'Z') {
					c.t.Fatalf("field name %q", name)
				}
			}
		}
		for _, b := range value {
			if charClass[b]&cValue == 0 {
				c.t.Fatalf("field value %q of %s", value, name)
			}
		}
		if len(value) > 0 && name[0] != ':' && (value[0] == ' ' || value[len(value)-1] == ' ' || value[0] == '\t' || value[len(value)-1] == '\t') {
			c.t.Fatalf("untrimmed value %q", value)
		}
		return true
	})
	if m.Status == 0 {
		if v, ok := h.GetKnown(header.Method); !ok || len(v) == 0 {
			c.t.Fatal("request without :method")
		}
		if h.Count(":authority") > 1 || h.Has("host") {
			c.t.Fatal("host kept as a field or two :authority")
		}
	}
	if m.Body == BodyContentLength && m.ContentLength <= 0 {
		c.t.Fatalf("BodyContentLength with length %d", m.ContentLength)
	}
}

func (c *checker) OnBody(data []byte) {
	if !c.inMsg {
		c.t.Fatal("OnBody outside a message")
	}
	if len(data) == 0 {
		c.t.Fatal("empty OnBody")
	}
	c.body += int64(len(data))
	c.bodyData = append(c.bodyData, data...)
	if c.msg.Body == BodyNone {
		c.t.Fatal("body bytes for BodyNone")
	}
	if c.msg.Body == BodyContentLength && c.body > c.msg.ContentLength {
		c.t.Fatalf("body %d > Content-Length %d", c.body, c.msg.ContentLength)
	}
}

func (c *checker) OnComplete() {
	if !c.inMsg {
		c.t.Fatal("OnComplete without OnHeaders")
	}
	if c.msg.Body == BodyContentLength && c.body != c.msg.ContentLength {
		c.t.Fatalf("complete after %d of %d bytes", c.body, c.msg.ContentLength)
	}
	c.inMsg = false
	c.messages++
}

// fuzzParse drives one parser over data with all invariants checked.
func fuzzParse(t *testing.T, response bool, data []byte, head, connect bool) {
	var p Parser
	lim := Limits{MaxHeadersBytes: 4096, MaxHeadersCount: 20, AcceptHTTP10: true}
	if len(data) > 0 {
		// Let the input pick the underscore action too.
		lim.HeadersWithUnderscores = UnderscoreAction(data[0] % 3)
	}
	if response {
		p.InitResponse(lim)
		p.ExpectResponseTo(head, connect)
	} else {
		p.InitRequest(lim)
	}
	var m header.Map
	p.SetHeaderMap(&m)
	c := &checker{t: t, p: &p}
	rest := data
	for len(rest) > 0 {
		n, err := p.Parse(rest, c)
		if n < 0 || n > len(rest) {
			t.Fatalf("consumed %d of %d", n, len(rest))
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status < 400 || e.Detail == "" {
				t.Fatalf("bad error %#v", err)
			}
			if response && e.Status != 502 {
				t.Fatalf("response error status %d", e.Status)
			}
			if _, err2 := p.Parse(rest, c); err2 != err {
				t.Fatal("dead parser parsed again")
			}
			return
		}
		if n == 0 {
			if !p.Upgraded() {
				t.Fatal("consumed nothing without error or upgrade")
			}
			return
		}
		rest = rest[n:]
		if p.Idle() && c.inMsg {
			t.Fatal("Idle in the middle of a message")
		}
	}
	if err := p.Finish(c); err == nil && c.inMsg {
		t.Fatal("Finish accepted a message cut short")
	}
}

func addSeeds(f *testing.F, response bool) {
	for _, c := range validCorpus {
		if c.response == response {
			f.Add([]byte(c.in))
		}
	}
	for _, c := range policyCases {
		if c.response == response {
			f.Add([]byte(c.in))
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	addSeeds(f, false)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzParse(t, false, data, false, false) })
}

func FuzzParseResponse(f *testing.F) {
	addSeeds(f, true)
	f.Fuzz(func(t *testing.T, data []byte) {
		var head, connect bool
		if len(data) > 0 {
			head, connect = data[len(data)-1]&1 != 0, data[len(data)-1]&2 != 0
		}
		fuzzParse(t, true, data, head, connect)
	})
}

// FuzzSplit: any input cut at a fuzzed boundary (and at a second one) parses exactly as
// one buffer does.
func FuzzSplit(f *testing.F) {
	for i, c := range splitCorpus() {
		f.Add([]byte(c.in), uint16(i*7), uint16(i*13), c.response)
	}
	f.Fuzz(func(t *testing.T, data []byte, cut1, cut2 uint16, response bool) {
		lim := Limits{MaxHeadersBytes: 512, MaxHeadersCount: 10, AcceptHTTP10: true}
		want := transcript(parseAll(t, response, lim, [][]byte{data}))
		if len(data) == 0 {
			return
		}
		a, b := int(cut1)%(len(data)+1), int(cut2)%(len(data)+1)
		if a > b {
			a, b = b, a
		}
		if got := transcript(parseAll(t, response, lim, [][]byte{data[:a], data[a:]})); got != want {
			t.Fatalf("split at %d:\n%s\nwant\n%s", a, got, want)
		}
		if got := transcript(parseAll(t, response, lim, [][]byte{data[:a], data[a:b], data[b:]})); got != want {
			t.Fatalf("split at %d, %d:\n%s\nwant\n%s", a, b, got, want)
		}
	})
}

// ourRequest is what Portico made of the first request in the input.
type ourRequest struct {
	err                     *Error
	seen, complete          bool
	method, path, authority string
	msg                     Message
	body                    []byte
}

func (o *ourRequest) OnHeaders(h *header.Map, m *Message) {
	o.seen, o.msg = true, *m
	v, _ := h.GetKnown(header.Method)
	o.method = string(v)
	v, _ = h.GetKnown(header.Path)
	o.path = string(v)
	v, _ = h.GetKnown(header.Authority)
	o.authority = string(v)
}
func (o *ourRequest) OnBody(b []byte) { o.body = append(o.body, b...) }
func (o *ourRequest) OnComplete()     { o.complete = true }

func parseOurs(data []byte) *ourRequest {
	var p Parser
	p.InitRequest(Limits{MaxHeadersBytes: 1 << 20, MaxHeadersCount: 1 << 16, AcceptHTTP10: true})
	o := &ourRequest{}
	for len(data) > 0 && !o.complete {
		n, err := p.Parse(data, o)
		if err != nil {
			errors.As(err, &o.err)
			return o
		}
		data = data[n:]
	}
	return o
}

// Named differences between Portico's policy and net/http's http.ReadRequest (which
// leaves several checks to http.Server, and is lenient where policy.go is strict). A
// disagreement the fuzzer finds must match one of these or it is a bug.
const (
	exBareLF         = "bare LF line ends: net/textproto accepts them; we refuse (policy: bare LF)"
	exObsFold        = "obs-fold: net/textproto unfolds; we refuse"
	exServerChecks   = "Host presence/count/syntax: checked by http.Server, not ReadRequest"
	exVersion        = "HTTP/x.y other than 1.0/1.1: ReadRequest parses any; we answer 505"
	exCLTE           = "CL with TE: Go lets chunked win and drops CL; we refuse"
	exDupCL          = "repeated equal Content-Length: Go merges; we refuse"
	exTE10           = "TE on HTTP/1.0: Go ignores TE there; we refuse"
	exTarget         = "request-target forms: Go's ParseRequestURI accepts targets we refuse (non-ASCII, other schemes, userinfo, * for any method, CONNECT forms)"
	exLeadingCRLF    = "empty lines before the request line: we skip them (RFC 9112 §2.2); Go refuses"
	exFieldBytes     = "field bytes: net/textproto keeps names we refuse (SP/HT before the colon becomes part of another name) and value bytes we refuse"
	exChunk          = "chunk framing: Go's chunked reader differs on extensions/whitespace"
	exChunkBWS       = "BWS between chunk size and ';': RFC 9112 §7.1.1 allows it, we accept; Go refuses (\"invalid byte in chunk length\")"
	exChunkLine      = "chunk line length: Go caps the whole chunk line at 4 KiB, we cap its extensions at 4 KiB (\"header line too long\")"
	exConnect        = "CONNECT framing: Go reads a CONNECT body; we refuse TE/CL bodies on CONNECT"
	exEmptyTE        = "empty Transfer-Encoding: Go ignores it; we answer 501"
	exTrailers       = "trailer fields: Go validates less / applies framing; we validate like headers and discard"
	exMethodAsterisk = "OPTIONS * and PRI: Go's URL for * differs"
)

func headOf(data []byte) []byte {
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		return data[:i+4]
	}
	if i := bytes.Index(data, []byte("\n\n")); i >= 0 {
		return data[:i+2]
	}
	return data
}

func hasBareLF(b []byte) bool {
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			return true
		}
	}
	return false
}

// explainReject: we refused, Go accepted.
func explainReject(o *ourRequest, data []byte) string {
	head := headOf(data)
	switch {
	case hasBareLF(head) || hasBareLF(data) && o.err.Detail == DetailCodecError:
		return exBareLF
	case bytes.Contains(head, []byte("\n ")) || bytes.Contains(head, []byte("\n\t")):
		return exObsFold
	}
	switch o.err.Detail {
	case DetailMissingHost, DetailMultipleHost, DetailInvalidHost:
		return exServerChecks
	case DetailInvalidVersion, DetailH2Preface:
		return exVersion
	case DetailChunkedContentLength:
		return exCLTE
	case DetailInvalidContentLength:
		if bytes.Count(bytes.ToLower(head), []byte("content-length")) > 1 {
			return exDupCL
		}
	case DetailTransferEncodingHTTP10:
		return exTE10
	case DetailInvalidURL:
		return exTarget
	case DetailInvalidCharacters:
		return exFieldBytes
	case DetailInvalidChunk:
		return exChunk
	case DetailConnectWithBody:
		return exConnect
	case DetailInvalidTransferEncode:
		if bytes.Contains(head, []byte("CONNECT")) {
			return exConnect
		}
		if bytes.Contains(bytes.ToLower(head), []byte("transfer-encoding:\r\n")) || bytes.Contains(bytes.ToLower(head), []byte("transfer-encoding: \r\n")) {
			return exEmptyTE
		}
	case DetailObsFold:
		return exObsFold
	}
	if o.seen {
		// Refused in the trailers, after the head was accepted.
		return exTrailers
	}
	return ""
}

// chunkBWS: some chunk-size line has SP/HT after its digits.
func chunkBWS(data []byte) bool {
	body := data[len(headOf(data)):]
	for _, line := range bytes.Split(body, []byte("\n")) {
		i := 0
		for i < len(line) && unhex(line[i]) >= 0 {
			i++
		}
		if i > 0 && i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			return true
		}
	}
	return false
}

func FuzzDifferentialNetHTTP(f *testing.F) {
	addSeeds(f, false)
	for _, v := range loadVectors(f, "testdata/smuggling.txt") {
		f.Add([]byte(v.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		o := parseOurs(data)
		req, gerr := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		var gbody []byte
		var berr error
		if gerr == nil {
			gbody, berr = io.ReadAll(io.LimitReader(req.Body, 1<<20))
		}
		switch {
		case o.err != nil && !o.seen:
			if gerr == nil {
				if ex := explainReject(o, data); ex == "" {
					t.Fatalf("we refuse (%v), net/http accepts %s %q", o.err, req.Method, req.RequestURI)
				}
			}
			return
		case !o.seen:
			return // incomplete head for us; Go may error on EOF or accept a bare-LF head
		case gerr != nil:
			switch {
			case bytes.HasPrefix(data, []byte("\r\n")):
				return // exLeadingCRLF
			case o.method == "OPTIONS" && o.path == "*", o.msg.Connect:
				return // exMethodAsterisk, exConnect
			}
			if strings.Contains(gerr.Error(), "unsupported transfer encoding") || strings.Contains(gerr.Error(), "too many transfer encodings") {
				t.Fatalf("we accept a TE net/http refuses: %v", gerr)
			}
			t.Fatalf("we accept %s %q, net/http refuses: %v", o.method, o.path, gerr)
		}
		// Both accepted the head: the same request?
		if req.Method != o.method {
			t.Fatalf("method %q vs net/http %q", o.method, req.Method)
		}
		if !o.msg.Connect && !strings.Contains(req.RequestURI, "://") && req.RequestURI != o.path {
			t.Fatalf(":path %q vs net/http %q", o.path, req.RequestURI)
		}
		if req.Host != o.authority && o.authority != "" {
			t.Fatalf(":authority %q vs net/http Host %q", o.authority, req.Host)
		}
		chunked := len(req.TransferEncoding) == 1 && req.TransferEncoding[0] == "chunked"
		if chunked != (o.msg.Body == BodyChunked) && !(o.msg.Version == HTTP10) {
			t.Fatalf("chunked: ours %v, net/http %v", o.msg.Body == BodyChunked, chunked)
		}
		if o.msg.Body == BodyContentLength && req.ContentLength != o.msg.ContentLength {
			t.Fatalf("content length %d vs net/http %d", o.msg.ContentLength, req.ContentLength)
		}
		switch {
		case o.err != nil && berr == nil:
			// We refused the body or trailers net/http read.
			switch o.err.Detail {
			case DetailInvalidChunk: // exChunk
			case DetailCodecError, DetailInvalidCharacters, DetailObsFold, DetailTooManyHeaders, DetailHeadersTooLarge:
				// exTrailers (and exBareLF inside the trailers)
			default:
				t.Fatalf("we refuse a body net/http reads (%q): %v", gbody, o.err)
			}
		case o.complete && o.err == nil && berr != nil && !errors.Is(berr, io.ErrUnexpectedEOF):
			if o.msg.Body == BodyChunked && (berr.Error() == "invalid byte in chunk length" && chunkBWS(data) ||
				berr.Error() == "header line too long") {
				return // exChunkBWS, exChunkLine
			}
			t.Fatalf("we accept a body net/http refuses (%q): %v", o.body, berr)
		case o.complete && o.err == nil && berr == nil && !bytes.Equal(o.body, gbody):
			t.Fatalf("body %q vs net/http %q", o.body, gbody)
		}
	})
}

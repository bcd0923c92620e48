package http1

import (
	"strings"
	"testing"
)

type policyCase struct {
	name     string
	response bool
	lim      Limits
	in       string
	status   int    // 0: accepted
	detail   string // expected Error.Detail
}

func bigHeaders(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("X-H")
		b.WriteByte(byte('a' + i%26))
		b.WriteString(": v\r\n")
	}
	return b.String()
}

func limSmall() Limits { return Limits{MaxHeadersBytes: 64, MaxHeadersCount: 3} }

func limReject() Limits {
	l := DefaultLimits
	l.HeadersWithUnderscores = UnderscoreRejectRequest
	return l
}

// policyCases: one or more inputs per rule of policy.go, with the verdict.
var policyCases = []policyCase{
	// framing
	{name: "CL and TE", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400, detail: DetailChunkedContentLength},
	{name: "TE and CL", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", status: 400, detail: DetailChunkedContentLength},
	{name: "two CL equal", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", status: 400, detail: DetailInvalidContentLength},
	{name: "two CL differ", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", status: 400, detail: DetailInvalidContentLength},
	{name: "CL list", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello", status: 400, detail: DetailInvalidContentLength},
	{name: "CL empty", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", status: 400, detail: DetailInvalidContentLength},
	{name: "CL signed +", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello", status: 400, detail: DetailInvalidContentLength},
	{name: "CL negative", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", status: 400, detail: DetailInvalidContentLength},
	{name: "CL hex", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n", status: 400, detail: DetailInvalidContentLength},
	{name: "CL inner space", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 0\r\n\r\n", status: 400, detail: DetailInvalidContentLength},
	{name: "CL max int64 ok", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775807\r\n\r\n", status: 0},
	{name: "CL overflow", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775808\r\n\r\n", status: 400, detail: DetailInvalidContentLength},
	{name: "CL overflow 2^64", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551616\r\n\r\n", status: 400, detail: DetailInvalidContentLength},
	{name: "TE gzip, chunked", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", status: 501, detail: DetailInvalidTransferEncode},
	{name: "TE chunked, chunked", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", status: 501, detail: DetailInvalidTransferEncode},
	{name: "TE twice", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", status: 501, detail: DetailInvalidTransferEncode},
	{name: "TE identity", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", status: 501, detail: DetailInvalidTransferEncode},
	{name: "TE xchunked", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", status: 501, detail: DetailInvalidTransferEncode},
	{name: "TE chunked;q", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", status: 501, detail: DetailInvalidTransferEncode},
	{name: "TE empty", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n", status: 501, detail: DetailInvalidTransferEncode},
	{name: "TE and gzip and CL", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n", status: 501, detail: DetailInvalidTransferEncode},
	{name: "TE on HTTP/1.0", lim: lim10(), in: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400, detail: DetailTransferEncodingHTTP10},
	{name: "TE on CONNECT", in: "CONNECT h:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", status: 501, detail: DetailInvalidTransferEncode},
	{name: "CL on CONNECT", in: "CONNECT h:443 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", status: 400, detail: DetailConnectWithBody},
	{name: "CL 0 on CONNECT ok", in: "CONNECT h:443 HTTP/1.1\r\nContent-Length: 0\r\n\r\n", status: 0},

	// field syntax
	{name: "obs-fold", in: "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", status: 400, detail: DetailObsFold},
	{name: "obs-fold tab", in: "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n", status: 400, detail: DetailObsFold},
	{name: "first line folded", in: "GET / HTTP/1.1\r\n Host: h\r\n\r\n", status: 400, detail: DetailObsFold},
	{name: "space before colon", in: "GET / HTTP/1.1\r\nHost : h\r\n\r\n", status: 400, detail: DetailInvalidCharacters},
	{name: "tab before colon", in: "GET / HTTP/1.1\r\nHost: h\r\nContent-Length\t: 0\r\n\r\n", status: 400, detail: DetailInvalidCharacters},
	{name: "empty name", in: "GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n", status: 400, detail: DetailInvalidCharacters},
	{name: "no colon", in: "GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", status: 400, detail: DetailCodecError},
	{name: "NUL in value", in: "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", status: 400, detail: DetailInvalidCharacters},
	{name: "CR in value", in: "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", status: 400, detail: DetailInvalidCharacters},
	{name: "BEL in value", in: "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x07\r\n\r\n", status: 400, detail: DetailInvalidCharacters},
	{name: "DEL in value", in: "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7f\r\n\r\n", status: 400, detail: DetailInvalidCharacters},
	{name: "brackets in name", in: "GET / HTTP/1.1\r\nHost: h\r\nX-Invalid[]: test\r\n\r\n", status: 400, detail: DetailInvalidCharacters},
	{name: "non-ASCII in name", in: "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encod\xc4\xb1ng: chunked\r\n\r\n", status: 400, detail: DetailInvalidCharacters},
	{name: "CTL in name", in: "GET / HTTP/1.1\r\nHost: h\r\n\x01Content-Length: 1\r\n\r\n", status: 400, detail: DetailInvalidCharacters},
	{name: "bare LF line end", in: "GET / HTTP/1.1\nHost: h\n\n", status: 400, detail: DetailCodecError},
	{name: "bare LF in headers", in: "GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", status: 400, detail: DetailCodecError},
	{name: "bare CR line", in: "GET / HTTP/1.1\r\nHost: h\r\n\rX: y\r\n\r\n", status: 400, detail: DetailInvalidCharacters},
	{name: "CR before request line alone", in: "\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, detail: DetailCodecError},

	// limits
	{name: "too many headers", lim: limSmall(), in: "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", status: 431, detail: DetailTooManyHeaders},
	{name: "headers at count limit", lim: limSmall(), in: "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n", status: 0},
	{name: "head too large", lim: limSmall(), in: "GET / HTTP/1.1\r\nHost: h\r\nX-Long: " + strings.Repeat("a", 60) + "\r\n\r\n", status: 431, detail: DetailHeadersTooLarge},
	{name: "request line too large", lim: limSmall(), in: "GET /" + strings.Repeat("a", 80) + " HTTP/1.1\r\n\r\n", status: 431, detail: DetailHeadersTooLarge},
	{name: "head exactly at byte limit", lim: Limits{MaxHeadersBytes: 28, MaxHeadersCount: 3}, in: "GET / HTTP/1.1\r\nHost: hh\r\n\r\n", status: 0},
	{name: "head one over byte limit", lim: Limits{MaxHeadersBytes: 27, MaxHeadersCount: 3}, in: "GET / HTTP/1.1\r\nHost: hh\r\n\r\n", status: 431, detail: DetailHeadersTooLarge},
	{name: "default count limit", in: "GET / HTTP/1.1\r\nHost: h\r\n" + bigHeaders(100) + "\r\n", status: 431, detail: DetailTooManyHeaders},
	{name: "trailers count limit", lim: limSmall(), in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", status: 431, detail: DetailTooManyHeaders},
	{name: "trailers byte limit", lim: limSmall(), in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + strings.Repeat("t", 70) + "\r\n\r\n", status: 431, detail: DetailHeadersTooLarge},
	{name: "trailer obs-fold", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n 2\r\n\r\n", status: 400, detail: DetailObsFold},
	{name: "trailer bad char", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: \x01\r\n\r\n", status: 400, detail: DetailInvalidCharacters},
	{name: "underscore reject", lim: limReject(), in: "GET / HTTP/1.1\r\nHost: h\r\nX_Foo: 1\r\n\r\n", status: 400, detail: DetailUnexpectedUnderscore},
	{name: "underscore reject trailer", lim: limReject(), in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT_R: 1\r\n\r\n", status: 400, detail: DetailUnexpectedUnderscore},

	// request line
	{name: "HTTP/1.1 without Host", in: "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", status: 400, detail: DetailMissingHost},
	{name: "two Host", in: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", status: 400, detail: DetailMultipleHost},
	{name: "two Host equal", in: "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", status: 400, detail: DetailMultipleHost},
	{name: "two Host absolute-form", in: "GET http://x/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", status: 400, detail: DetailMultipleHost},
	{name: "Host with space", in: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", status: 400, detail: DetailInvalidHost},
	{name: "Host with userinfo", in: "GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", status: 400, detail: DetailInvalidHost},
	{name: "Host with path", in: "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", status: 400, detail: DetailInvalidHost},
	{name: "HTTP/1.0 rejected", in: "GET / HTTP/1.0\r\n\r\n", status: 426, detail: DetailHTTP10NotSupported},
	{name: "HTTP/1.2", in: "GET / HTTP/1.2\r\nHost: h\r\n\r\n", status: 505, detail: DetailInvalidVersion},
	{name: "HTTP/9.9", in: "GET / HTTP/9.9\r\nHost: h\r\n\r\n", status: 505, detail: DetailInvalidVersion},
	{name: "HTTP/2.0", in: "GET / HTTP/2.0\r\nHost: h\r\n\r\n", status: 505, detail: DetailInvalidVersion},
	{name: "h2 preface", in: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", status: 505, detail: DetailH2Preface},
	{name: "lower-case version", in: "GET / http/1.1\r\nHost: h\r\n\r\n", status: 400, detail: DetailInvalidVersion},
	{name: "version HTTP/1.10", in: "GET / HTTP/1.10\r\nHost: h\r\n\r\n", status: 400, detail: DetailInvalidVersion},
	{name: "HTTP/0.9", in: "GET /\r\n\r\n", status: 400, detail: DetailCodecError},
	{name: "no version", in: "GET / \r\n\r\n", status: 400, detail: DetailInvalidVersion},
	{name: "double space", in: "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, detail: DetailInvalidURL},
	{name: "trailing space", in: "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", status: 400, detail: DetailInvalidVersion},
	{name: "tab separator", in: "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, detail: DetailInvalidMethod},
	{name: "method not token", in: "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, detail: DetailInvalidMethod},
	{name: "bad method ctl", in: "bad_method\x01 / HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, detail: DetailInvalidMethod},
	{name: "leading space", in: " GET / HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, detail: DetailInvalidMethod},
	{name: "garbage prefix", in: "Extra lineGET / HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, detail: DetailInvalidVersion},
	{name: "target non-ASCII", in: "GET /caf\xe9 HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, detail: DetailInvalidURL},
	{name: "target relative", in: "GET index.html HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, detail: DetailInvalidURL},
	{name: "asterisk not OPTIONS", in: "GET * HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, detail: DetailInvalidURL},
	{name: "authority-form not CONNECT", in: "GET h:80 HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, detail: DetailInvalidURL},
	{name: "CONNECT origin-form", in: "CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, detail: DetailInvalidURL},
	{name: "CONNECT no port", in: "CONNECT example.com HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, detail: DetailInvalidURL},
	{name: "CONNECT absolute", in: "CONNECT http://h:80/ HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, detail: DetailInvalidURL},
	{name: "absolute userinfo", in: "GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, detail: DetailInvalidURL},
	{name: "absolute empty authority", in: "GET http:/// HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, detail: DetailInvalidURL},
	{name: "absolute other scheme", in: "GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, detail: DetailInvalidURL},

	// chunked body
	{name: "chunk size overflow", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n8000000000000000\r\n", status: 400, detail: DetailInvalidChunk},
	{name: "chunk size 17 digits", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000001\r\nx\r\n0\r\n\r\n", status: 400, detail: DetailInvalidChunk},
	{name: "chunk size max ok", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\nabc", status: 0},
	{name: "chunk size not hex", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n", status: 400, detail: DetailInvalidChunk},
	{name: "chunk size empty", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", status: 400, detail: DetailInvalidChunk},
	{name: "chunk size signed", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", status: 400, detail: DetailInvalidChunk},
	{name: "chunk size 0x", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", status: 400, detail: DetailInvalidChunk},
	{name: "chunk size trailing space", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", status: 400, detail: DetailInvalidChunk},
	{name: "chunk line bare LF", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", status: 400, detail: DetailInvalidChunk},
	{name: "chunk ext bare LF", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n", status: 400, detail: DetailInvalidChunk},
	{name: "chunk ext CTL", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x00\r\nhello\r\n0\r\n\r\n", status: 400, detail: DetailInvalidChunk},
	{name: "chunk ext too long", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;" + strings.Repeat("e", maxChunkExtBytes+1) + "\r\nhello\r\n0\r\n\r\n", status: 400, detail: DetailInvalidChunk},
	{name: "chunk ext at limit ok", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;" + strings.Repeat("e", maxChunkExtBytes) + "\r\nhello\r\n0\r\n\r\n", status: 0},
	{name: "chunk data too long", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", status: 400, detail: DetailInvalidChunk},
	{name: "chunk data no CRLF", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello0\r\n\r\n", status: 400, detail: DetailInvalidChunk},
	{name: "chunk data LF only", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", status: 400, detail: DetailInvalidChunk},
	{name: "last chunk bare LF end", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n", status: 400, detail: DetailCodecError},

	// responses
	{name: "resp CL and TE", response: true, in: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", status: 502, detail: DetailChunkedContentLength},
	{name: "resp TE gzip", response: true, in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", status: 502, detail: DetailInvalidTransferEncode},
	{name: "resp TE on 1.0", response: true, in: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 502, detail: DetailTransferEncodingHTTP10},
	{name: "resp two CL", response: true, in: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", status: 502, detail: DetailInvalidContentLength},
	{name: "resp bad CL", response: true, in: "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nx", status: 502, detail: DetailInvalidContentLength},
	{name: "resp obs-fold", response: true, in: "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", status: 502, detail: DetailObsFold},
	{name: "resp bad status", response: true, in: "HTTP/1.1 2x0 OK\r\n\r\n", status: 502, detail: DetailInvalidStatus},
	{name: "resp status 99", response: true, in: "HTTP/1.1 099 Low\r\n\r\n", status: 502, detail: DetailInvalidStatus},
	{name: "resp status 600", response: true, in: "HTTP/1.1 600 High\r\n\r\n", status: 502, detail: DetailInvalidStatus},
	{name: "resp status 4 digits", response: true, in: "HTTP/1.1 2000 OK\r\n\r\n", status: 502, detail: DetailInvalidStatus},
	{name: "resp HTTP/2", response: true, in: "HTTP/2.0 200 OK\r\n\r\n", status: 502, detail: DetailInvalidVersion},
	{name: "resp garbage", response: true, in: "hello world\r\n\r\n", status: 502, detail: DetailInvalidStatus},
	{name: "resp leading CRLF", response: true, in: "\r\nHTTP/1.1 200 OK\r\n\r\n", status: 502, detail: DetailInvalidStatus},
	{name: "resp bare LF", response: true, in: "HTTP/1.1 200 OK\nContent-Length: 0\n\n", status: 502, detail: DetailCodecError},
	{name: "resp too large", response: true, lim: limSmall(), in: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 80) + "\r\n\r\n", status: 502, detail: DetailHeadersTooLarge},
	{name: "resp reason CTL", response: true, in: "HTTP/1.1 200 O\x01K\r\n\r\n", status: 502, detail: DetailInvalidStatus},
}

func TestPolicy(t *testing.T) {
	for _, c := range policyCases {
		t.Run(c.name, func(t *testing.T) {
			ev := parseAll(t, c.response, c.lim, one(c.in))
			last := ev[len(ev)-1]
			if strings.HasPrefix(last, "rest ") {
				last = ev[len(ev)-2]
			}
			if c.status == 0 {
				for _, e := range ev {
					if strings.HasPrefix(e, "error") {
						t.Fatalf("rejected: %s", transcript(ev))
					}
				}
				return
			}
			want := "error " + itoa(c.status) + " " + c.detail
			if !strings.HasSuffix(last, want) || strings.HasPrefix(last, "finish") {
				t.Fatalf("got\n%s\nwant %s", transcript(ev), want)
			}
		})
	}
}

func itoa(n int) string {
	var b [8]byte
	i := len(b)
	for n > 0 || i == len(b) {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// TestDeadStaysDead: after any error, Parse and Finish keep returning it, whatever
// else arrives (a regression: a refused request line used to leave the parser reading
// headers).
func TestDeadStaysDead(t *testing.T) {
	for _, c := range policyCases {
		if c.status == 0 {
			continue
		}
		var p Parser
		if c.response {
			p.InitResponse(c.lim)
		} else {
			p.InitRequest(c.lim)
		}
		r := &recorder{}
		data := []byte(c.in)
		var err error
		for len(data) > 0 && err == nil {
			var n int
			n, err = p.Parse(data, r)
			data = data[n:]
		}
		if err == nil {
			continue // refused only at Finish
		}
		before := len(r.events)
		n, err2 := p.Parse([]byte("GET / HTTP/1.1\r\nHost: h\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"), r)
		if n != 0 || err2 != err || p.Finish(r) != err || len(r.events) != before {
			t.Errorf("%s: parser revived after %v: n=%d err=%v events=%v", c.name, err, n, err2, r.events[before:])
		}
	}
}

package http1

// corpusCase is one input and what the parser must make of it. The same corpus drives
// the table test (one buffer), the split tests and the fuzz seeds.
type corpusCase struct {
	name     string
	response bool
	lim      Limits
	expect   [][2]bool // ExpectResponseTo(head, connect) per response, last repeats
	in       string
}

func lim10() Limits { l := DefaultLimits; l.AcceptHTTP10 = true; return l }

func lim10Host() Limits { l := lim10(); l.DefaultHostForHTTP10 = "default.local"; return l }

func limDrop() Limits { l := DefaultLimits; l.HeadersWithUnderscores = UnderscoreDropHeader; return l }

var validCorpus = []corpusCase{
	{name: "simple GET", in: "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n"},
	{name: "host late, mixed case names, OWS", in: "GET / HTTP/1.1\r\nX-A:  a b \t\r\nACCEPT:\t*/*\r\nhOsT: example.com:8080\r\n\r\n"},
	{name: "empty value", in: "GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Sp:   \r\n\r\n"},
	{name: "obs-text value", in: "GET / HTTP/1.1\r\nHost: h\r\nX-Latin: caf\xe9\r\n\r\n"},
	{name: "absolute-form overrides Host", in: "GET http://upstream.example:8080/p?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n"},
	{name: "absolute-form no Host", in: "GET HTTPS://a.example HTTP/1.1\r\n\r\n"},
	{name: "absolute-form query only", in: "GET http://a.example?x=y HTTP/1.1\r\nHost: a.example\r\n\r\n"},
	{name: "CONNECT authority-form", in: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"},
	{name: "CONNECT IPv6", in: "CONNECT [::1]:8443 HTTP/1.1\r\n\r\ntunnel bytes"},
	{name: "OPTIONS asterisk", in: "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"},
	{name: "HTTP/1.0 no host", lim: lim10(), in: "GET / HTTP/1.0\r\n\r\n"},
	{name: "HTTP/1.0 default host", lim: lim10Host(), in: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"},
	{name: "HTTP/1.0 keep-alive with host", lim: lim10Host(), in: "GET / HTTP/1.0\r\nHost: given\r\nConnection: Keep-Alive\r\n\r\n"},
	{name: "Connection close", in: "GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, CLOSE\r\n\r\n"},
	{name: "websocket upgrade", in: "GET /chat HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"},
	{name: "upgrade header without connection token", in: "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\n\r\n"},
	{name: "expect 100-continue", in: "PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\nabc"},
	{name: "POST content-length", in: "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world"},
	{name: "content-length zero", in: "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"},
	{name: "GET with content-length body", in: "GET /p HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi"},
	{name: "chunked", in: "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n6;name=val;x\r\n world\r\nA \t;ext\r\n0123456789\r\n0\r\n\r\n"},
	{name: "chunked with trailers", in: "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Trailer: 1\r\nChecksum: abc\r\n\r\n"},
	{name: "chunked hex sizes", in: "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000a\r\n0123456789\r\nF\r\n0123456789abcde\r\n000\r\n\r\n"},
	{name: "pipelined", in: "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcPOST /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nT: t\r\n\r\nGET /4 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"},
	{name: "leading empty lines", in: "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n"},
	{name: "underscore dropped", lim: limDrop(), in: "POST / HTTP/1.1\r\nHost: h\r\nX_Foo: 1\r\nX-Bar: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT_R: 1\r\n\r\n"},
	{name: "underscore allowed", in: "GET / HTTP/1.1\r\nHost: h\r\nX_Foo: 1\r\n\r\n"},
	{name: "custom method", in: "PURGE /x HTTP/1.1\r\nHost: h\r\n\r\n"},
	{name: "incomplete head then EOF", in: "GET / HTTP/1.1\r\nHost: h\r\n"},
	{name: "incomplete body then EOF", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc"},

	{name: "response content-length", response: true, in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: s\r\n\r\nhello"},
	{name: "response no reason", response: true, in: "HTTP/1.1 204\r\n\r\n"},
	{name: "response empty reason", response: true, in: "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n"},
	{name: "response chunked trailers", response: true, in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\nExpires: never\r\n\r\n"},
	{name: "response until close", response: true, in: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of this until the close"},
	{name: "response 1.0 keep-alive", response: true, in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"},
	{name: "response to HEAD", response: true, expect: [][2]bool{{true, false}}, in: "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
	{name: "response 304 with length", response: true, in: "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"},
	{name: "response 100 then 200", response: true, in: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{name: "response 101", response: true, in: "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"},
	{name: "response CONNECT 200", response: true, expect: [][2]bool{{false, true}}, in: "HTTP/1.1 200 Connection established\r\n\r\ntunnel"},
	{name: "response CONNECT 407 has body", response: true, expect: [][2]bool{{false, true}}, in: "HTTP/1.1 407 Proxy Auth\r\nContent-Length: 2\r\n\r\nno"},
	{name: "response pipelined HEAD then GET", response: true, expect: [][2]bool{{true, false}, {false, false}}, in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"},
	{name: "response header underscore kept", response: true, lim: Limits{HeadersWithUnderscores: UnderscoreRejectRequest}, in: "HTTP/1.1 200 OK\r\nX_Y: 1\r\nContent-Length: 0\r\n\r\n"},
	{name: "response incomplete body", response: true, in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel"},
}

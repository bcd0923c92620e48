package http1

import (
	"bytes"
	"strconv"

	"github.com/portico-proxy/portico/http/header"
)

// Framing bytes for chunked bodies: each chunk is AppendChunkHeader, the data, CRLF;
// the body ends with LastChunk (no trailers).
const (
	CRLF      = "\r\n"
	LastChunk = "0\r\n\r\n"
)

// AppendRequestHead appends "<:method> <:path> HTTP/1.1\r\n", "host: <:authority>\r\n"
// (when there is an :authority), every non-pseudo field as "name: value\r\n" in order,
// and the empty line. A CONNECT (no :path) gets its :authority as the request-target.
func AppendRequestHead(dst []byte, h *header.Map) []byte {
	method, _ := h.GetKnown(header.Method)
	authority, hasAuthority := h.GetKnown(header.Authority)
	path, hasPath := h.GetKnown(header.Path)
	dst = append(dst, method...)
	dst = append(dst, ' ')
	switch {
	case hasPath:
		dst = append(dst, path...)
	case hasAuthority:
		dst = append(dst, authority...)
	default:
		dst = append(dst, '/')
	}
	dst = append(dst, " HTTP/1.1\r\n"...)
	if hasAuthority {
		dst = append(dst, "host: "...)
		dst = appendValue(dst, authority)
		dst = append(dst, CRLF...)
	}
	return appendFields(dst, h)
}

// AppendResponseHead appends the status line for :status with its standard reason
// phrase ("Unknown" for codes without one), the non-pseudo fields and the empty line.
// A missing or malformed :status is written as 500: the encoder has no error to return
// and a 500 is what such a response means.
func AppendResponseHead(dst []byte, h *header.Map, v Version) []byte {
	status, _ := h.GetKnown(header.Status)
	code := 0
	if len(status) == 3 && isDigit(status[0]) && isDigit(status[1]) && isDigit(status[2]) {
		code = int(status[0]-'0')*100 + int(status[1]-'0')*10 + int(status[2]-'0')
	}
	if code < 100 {
		code = 500
	}
	if v == HTTP10 {
		dst = append(dst, "HTTP/1.0 "...)
	} else {
		dst = append(dst, "HTTP/1.1 "...)
	}
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	dst = append(dst, reasonPhrase(code)...)
	dst = append(dst, CRLF...)
	return appendFields(dst, h)
}

func appendFields(dst []byte, h *header.Map) []byte {
	for i, n := 0, h.Fields(); i < n; i++ {
		name, value, ok := h.At(i)
		if !ok || len(name) == 0 || name[0] == ':' {
			continue
		}
		dst = append(dst, name...)
		dst = append(dst, ": "...)
		dst = appendValue(dst, value)
		dst = append(dst, CRLF...)
	}
	return append(dst, CRLF...)
}

// appendValue copies a field value, replacing CR, LF and NUL with SP (RFC 9110 §5.5
// allows exactly that). Parsed values never hold them, but values set by filters or
// config might, and one CRLF would let them inject a header or split the response.
func appendValue(dst, v []byte) []byte {
	if bytes.IndexByte(v, '\r') < 0 && bytes.IndexByte(v, '\n') < 0 && bytes.IndexByte(v, 0) < 0 {
		return append(dst, v...)
	}
	for _, c := range v {
		if c == '\r' || c == '\n' || c == 0 {
			c = ' '
		}
		dst = append(dst, c)
	}
	return dst
}

// AppendChunkHeader appends a chunk-size line: n in hex and CRLF.
func AppendChunkHeader(dst []byte, n int) []byte {
	dst = strconv.AppendUint(dst, uint64(n), 16)
	return append(dst, CRLF...)
}

// reasonPhrase is the IANA registry's phrase for code, as Go's net/http writes it
// (encode_test.go checks them against http.StatusText); the package does not import
// net/http for one table.
func reasonPhrase(code int) string {
	switch code {
	case 100:
		return "Continue"
	case 101:
		return "Switching Protocols"
	case 102:
		return "Processing"
	case 103:
		return "Early Hints"
	case 200:
		return "OK"
	case 201:
		return "Created"
	case 202:
		return "Accepted"
	case 203:
		return "Non-Authoritative Information"
	case 204:
		return "No Content"
	case 205:
		return "Reset Content"
	case 206:
		return "Partial Content"
	case 207:
		return "Multi-Status"
	case 208:
		return "Already Reported"
	case 226:
		return "IM Used"
	case 300:
		return "Multiple Choices"
	case 301:
		return "Moved Permanently"
	case 302:
		return "Found"
	case 303:
		return "See Other"
	case 304:
		return "Not Modified"
	case 305:
		return "Use Proxy"
	case 307:
		return "Temporary Redirect"
	case 308:
		return "Permanent Redirect"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 402:
		return "Payment Required"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 406:
		return "Not Acceptable"
	case 407:
		return "Proxy Authentication Required"
	case 408:
		return "Request Timeout"
	case 409:
		return "Conflict"
	case 410:
		return "Gone"
	case 411:
		return "Length Required"
	case 412:
		return "Precondition Failed"
	case 413:
		return "Request Entity Too Large"
	case 414:
		return "Request URI Too Long"
	case 415:
		return "Unsupported Media Type"
	case 416:
		return "Requested Range Not Satisfiable"
	case 417:
		return "Expectation Failed"
	case 418:
		return "I'm a teapot"
	case 421:
		return "Misdirected Request"
	case 422:
		return "Unprocessable Entity"
	case 423:
		return "Locked"
	case 424:
		return "Failed Dependency"
	case 425:
		return "Too Early"
	case 426:
		return "Upgrade Required"
	case 428:
		return "Precondition Required"
	case 429:
		return "Too Many Requests"
	case 431:
		return "Request Header Fields Too Large"
	case 451:
		return "Unavailable For Legal Reasons"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 505:
		return "HTTP Version Not Supported"
	case 506:
		return "Variant Also Negotiates"
	case 507:
		return "Insufficient Storage"
	case 508:
		return "Loop Detected"
	case 510:
		return "Not Extended"
	case 511:
		return "Network Authentication Required"
	}
	return "Unknown"
}

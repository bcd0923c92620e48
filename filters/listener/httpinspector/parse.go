package httpinspector

import "bytes"

// Protocol is what Parse detected.
type Protocol int

const (
	// ProtocolNone: nothing detected (with NeedMore or NotHTTP).
	ProtocolNone Protocol = iota
	// HTTP10 is any HTTP/1 request line whose version is not exactly HTTP/1.1
	// (HTTP/1.0, HTTP/0.9 without a version, HTTP/2.0 written as a request line, ...).
	HTTP10
	// HTTP11 is a request line ending in HTTP/1.1.
	HTTP11
	// H2C is the HTTP/2 prior-knowledge connection preface.
	H2C
)

// ALPN returns the application protocol Envoy's http_inspector records for p.
func (p Protocol) ALPN() string {
	switch p {
	case HTTP10:
		return "http/1.0"
	case HTTP11:
		return "http/1.1"
	case H2C:
		return "h2c"
	}
	return ""
}

// Status is the outcome of Parse.
type Status int

const (
	// NeedMore: the bytes may still become an HTTP request line or the h2 preface.
	NeedMore Status = iota
	// NotHTTP: no continuation of the bytes can be HTTP.
	NotHTTP
	// Done: the protocol is known.
	Done
)

func (s Status) String() string {
	switch s {
	case NeedMore:
		return "NeedMore"
	case NotHTTP:
		return "NotHTTP"
	case Done:
		return "Done"
	}
	return "Status(?)"
}

// h2Preface is the HTTP/2 client connection preface (RFC 9113 3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Parse classifies the first bytes of a plaintext connection as Envoy's http_inspector
// does with its HTTP/1 (Balsa) parser: the h2 preface wins; otherwise the first line up
// to '\n' must be a request line "METHOD SP URI [SP HTTP/d.d]". Envoy waits for the '\n'
// before judging; Parse rejects as soon as no continuation could be valid, which gives
// the same verdict earlier. It does not allocate.
func Parse(data []byte) (Protocol, Status) {
	if len(data) == 0 {
		return ProtocolNone, NeedMore
	}
	n := min(len(data), len(h2Preface))
	if string(data[:n]) == h2Preface[:n] {
		if n < len(h2Preface) {
			return ProtocolNone, NeedMore
		}
		return H2C, Done
	}
	if data[0] == '\r' || data[0] == '\n' {
		return ProtocolNone, NotHTTP
	}
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return parseRequestLine(data[:i])
	}
	if !mayBeRequestLine(data) {
		return ProtocolNone, NotHTTP
	}
	return ProtocolNone, NeedMore
}

// isSpace is Balsa's notion of the whitespace between first-line "islands": any byte up
// to and including ' '.
func isSpace(c byte) bool { return c <= ' ' }

// island returns the first run of non-space bytes in b and what follows it.
func island(b []byte) (tok, rest []byte) {
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	j := i
	for j < len(b) && !isSpace(b[j]) {
		j++
	}
	return b[i:j], b[j:]
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// parseRequestLine judges a complete first line (without its '\n'): method, URI, and a
// version that is the rest of the line, which must be empty or HTTP/d.d.
func parseRequestLine(line []byte) (Protocol, Status) {
	line = trimSpace(line)
	method, rest := island(line)
	uri, rest := island(rest)
	version := trimSpace(rest)
	if !validMethod(method) || !validURL(uri, string(method) == "CONNECT") || !validVersion(version) {
		return ProtocolNone, NotHTTP
	}
	// Envoy asks whether the whole first line ends in "HTTP/1.1" (so "GET /HTTP/1.1"
	// counts too); every other version is reported as HTTP/1.0.
	if bytes.HasSuffix(line, []byte("HTTP/1.1")) {
		return HTTP11, Done
	}
	return HTTP10, Done
}

// mayBeRequestLine reports whether some continuation of partial (no '\n' yet) could be a
// valid request line. It is conservative: true when unsure.
func mayBeRequestLine(partial []byte) bool {
	b := partial
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	method, rest := island(b)
	if !allTchar(method) {
		return false
	}
	if len(rest) == 0 {
		return true // method still growing
	}
	uri, rest := island(rest)
	if len(rest) == 0 {
		// URI may still be growing: only its character set can be judged.
		for _, c := range uri {
			if c < '!' || c > '~' {
				return false
			}
		}
		return true
	}
	if !validURL(uri, string(method) == "CONNECT") {
		return false
	}
	return mayBeVersion(rest)
}

// mayBeVersion reports whether rest (what follows the URI so far) can still become
// "[spaces] HTTP/d.d [spaces]".
func mayBeVersion(rest []byte) bool {
	for len(rest) > 0 && isSpace(rest[0]) {
		rest = rest[1:]
	}
	const prefix = "HTTP/"
	for i, c := range rest {
		switch {
		case i < len(prefix):
			if c != prefix[i] {
				return false
			}
		case i == 5 || i == 7:
			if c < '0' || c > '9' {
				return false
			}
		case i == 6:
			if c != '.' {
				return false
			}
		default:
			if !isSpace(c) {
				return false
			}
		}
	}
	return true
}

func validVersion(v []byte) bool {
	return len(v) == 0 || (len(v) == 8 && string(v[:5]) == "HTTP/" &&
		isDigit(v[5]) && v[6] == '.' && isDigit(v[7]))
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isAlpha(c byte) bool { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }

// validMethod: Envoy's inspector runs Balsa with custom methods allowed, so any RFC 9110
// token is a method.
func validMethod(m []byte) bool { return len(m) > 0 && allTchar(m) }

func allTchar(b []byte) bool {
	for _, c := range b {
		if !isTchar(c) {
			return false
		}
	}
	return true
}

func isTchar(c byte) bool {
	if isAlpha(c) || isDigit(c) {
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func isPathChar(c byte) bool { return c == 9 || c == 12 || ('!' <= c && c <= '~') }

func isHostChar(c byte) bool {
	if isAlpha(c) || isDigit(c) {
		return true
	}
	switch c {
	case '!', '$', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', ':', ';', '=', '@', '[', ']', '_', '~':
		return true
	}
	return false
}

// validURL follows Envoy's Balsa wrapper, which mimics http-parser: origin form ("/..."
// or "*..."), absolute form (scheme "://" host [path]), or for CONNECT authority form.
func validURL(u []byte, connect bool) bool {
	if len(u) == 0 {
		return false
	}
	if u[0] == '/' || u[0] == '*' {
		for _, c := range u[1:] {
			if !isPathChar(c) {
				return false
			}
		}
		return true
	}
	if !connect {
		if !isAlpha(u[0]) {
			return false
		}
		i := 1
		for i < len(u) && (isAlpha(u[i]) || isDigit(u[i]) || u[i] == '+' || u[i] == '-' || u[i] == '.') {
			i++
		}
		u = u[i:]
		if !bytes.HasPrefix(u, []byte("://")) {
			return false
		}
		u = u[3:]
	}
	hostEnd := bytes.IndexAny(u, "/?")
	if hostEnd < 0 {
		hostEnd = len(u)
	}
	host, pathQuery := u[:hostEnd], u[hostEnd:]
	for _, c := range host {
		if !isHostChar(c) {
			return false
		}
	}
	if bytes.Contains(host, []byte("@@")) {
		return false
	}
	for _, c := range pathQuery {
		if !isPathChar(c) {
			return false
		}
	}
	return true
}

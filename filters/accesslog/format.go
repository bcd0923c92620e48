package accesslog

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultFormat is Envoy's default access-log format. On a TCP connection the HTTP
// operators print "-", as they do in Envoy.
const DefaultFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ` +
	`%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ` +
	`%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" ` +
	`"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"` + "\n"

// part is a literal or one command operator of a compiled format.
type part struct {
	lit string
	op  func(b []byte, e *Entry) []byte
}

// Format is a compiled format string.
type Format struct{ parts []part }

// operators maps Envoy's command operators to how Portico renders them from an Entry.
func operator(name string) (func(b []byte, e *Entry) []byte, bool) {
	addr := func(get func(e *Entry) string) func([]byte, *Entry) []byte {
		return func(b []byte, e *Entry) []byte { return appendOrDash(b, get(e)) }
	}
	switch name {
	case "START_TIME":
		return func(b []byte, e *Entry) []byte {
			return e.StartTime.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
		}, true
	case "DURATION":
		return func(b []byte, e *Entry) []byte {
			return strconv.AppendInt(b, e.Duration.Milliseconds(), 10)
		}, true
	case "BYTES_RECEIVED":
		return func(b []byte, e *Entry) []byte { return strconv.AppendUint(b, e.BytesReceived, 10) }, true
	case "BYTES_SENT":
		return func(b []byte, e *Entry) []byte { return strconv.AppendUint(b, e.BytesSent, 10) }, true
	case "RESPONSE_FLAGS":
		return func(b []byte, e *Entry) []byte { return appendOrDash(b, e.ResponseFlags) }, true
	case "RESPONSE_CODE":
		return func(b []byte, _ *Entry) []byte { return append(b, '0') }, true
	case "PROTOCOL":
		return func(b []byte, _ *Entry) []byte { return append(b, '-') }, true
	case "DOWNSTREAM_REMOTE_ADDRESS":
		return addr(func(e *Entry) string { return addrString(e.DownstreamRemoteAddress.String()) }), true
	case "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT":
		return addr(func(e *Entry) string { return e.DownstreamRemoteAddress.Addr().String() }), true
	case "DOWNSTREAM_DIRECT_REMOTE_ADDRESS":
		return addr(func(e *Entry) string { return addrString(e.DownstreamDirectRemoteAddress.String()) }), true
	case "DOWNSTREAM_LOCAL_ADDRESS":
		return addr(func(e *Entry) string { return addrString(e.DownstreamLocalAddress.String()) }), true
	case "REQUESTED_SERVER_NAME":
		return addr(func(e *Entry) string { return e.RequestedServerName }), true
	case "FILTER_CHAIN_NAME":
		return addr(func(e *Entry) string { return e.FilterChainName }), true
	case "UPSTREAM_HOST":
		return addr(func(e *Entry) string { return addrString(e.UpstreamHost.String()) }), true
	case "UPSTREAM_CLUSTER":
		return addr(func(e *Entry) string { return e.UpstreamCluster }), true
	case "CONNECTION_TERMINATION_DETAILS":
		return addr(func(e *Entry) string { return e.TerminationDetails }), true
	}
	if strings.HasPrefix(name, "REQ(") || strings.HasPrefix(name, "RESP(") ||
		strings.HasPrefix(name, "TRAILER(") {
		// Header operators have no value on a TCP connection.
		return func(b []byte, _ *Entry) []byte { return append(b, '-') }, true
	}
	return nil, false
}

func addrString(s string) string {
	if s == "invalid AddrPort" {
		return ""
	}
	return s
}

func appendOrDash(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return append(b, s...)
}

// Compile parses an Envoy text format. An unknown operator is an error naming it.
func Compile(format string) (*Format, error) {
	if format == "" {
		format = DefaultFormat
	}
	f := &Format{}
	rest := format
	for rest != "" {
		i := strings.IndexByte(rest, '%')
		if i < 0 {
			f.parts = append(f.parts, part{lit: rest})
			break
		}
		if i > 0 {
			f.parts = append(f.parts, part{lit: rest[:i]})
		}
		rest = rest[i+1:]
		if strings.HasPrefix(rest, "%") { // "%%" is a literal percent sign
			f.parts = append(f.parts, part{lit: "%"})
			rest = rest[1:]
			continue
		}
		j := strings.IndexByte(rest, '%')
		if j < 0 {
			return nil, fmt.Errorf("access log format: unterminated operator at %q", "%"+rest)
		}
		name := rest[:j]
		// A trailing ":N" truncates in Envoy; accept it and ignore the length.
		if k := strings.LastIndexByte(name, ':'); k > 0 && !strings.Contains(name, "(") {
			if _, err := strconv.Atoi(name[k+1:]); err == nil {
				name = name[:k]
			}
		}
		op, ok := operator(name)
		if !ok {
			return nil, fmt.Errorf("access log format: operator %%%s%% is not supported", name)
		}
		f.parts = append(f.parts, part{op: op})
		rest = rest[j+1:]
	}
	return f, nil
}

// Append renders e into b.
func (f *Format) Append(b []byte, e *Entry) []byte {
	for _, p := range f.parts {
		if p.op != nil {
			b = p.op(b, e)
		} else {
			b = append(b, p.lit...)
		}
	}
	return b
}

// flushEvery bounds how long a line waits in memory before it reaches the file.
const flushEvery = 100 * time.Millisecond

package accesslog

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
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

// op appends one command operator's value for e to b; false (with b unchanged) when the
// value is absent, which the format prints as "-" (access logs) or nothing (header
// values), as Envoy does with its empty optional.
type op func(b []byte, e *Entry) ([]byte, bool)

// part is a literal or one command operator of a compiled format.
type part struct {
	lit string
	op  op
	max int // %OP:N%: bytes of the value kept; -1 all
}

// Format is a compiled format string. It is immutable and safe for concurrent use;
// rendering it does not allocate.
type Format struct {
	parts  []part
	absent string // what an absent value prints
}

// Command syntax, as Envoy's CommandSyntaxChecker: what an operator accepts besides its
// name.
const (
	commandOnly    = 0
	paramsRequired = 1 << iota
	paramsOptional
	lengthAllowed
)

// Compile parses an Envoy text format for an access log; "" is DefaultFormat. An unknown
// operator, or one given parameters or a length it does not take, is an error naming it,
// as in Envoy.
func Compile(format string) (*Format, error) {
	if format == "" {
		format = DefaultFormat
	}
	return compile("access log format", format, "-")
}

// CompileHeaderValue parses a header value of request_headers_to_add (and the other
// *_headers_to_add) the way Envoy's header parser does: the access-log operators, but an
// operator without a value prints nothing (Envoy then skips the header unless
// keep_empty_value). A value without operators is a literal: see IsLiteral.
func CompileHeaderValue(value string) (*Format, error) {
	return compile("header value format", value, "")
}

// IsLiteral reports whether the format has no operators, so that its output is Literal
// whatever the entry: a caller sets such a header value once instead of formatting it.
func (f *Format) IsLiteral() bool {
	for i := range f.parts {
		if f.parts[i].op != nil {
			return false
		}
	}
	return true
}

// Literal is a literal format's text ("%%" unescaped); "" if the format has operators.
func (f *Format) Literal() string {
	if !f.IsLiteral() || len(f.parts) == 0 {
		return ""
	}
	return f.parts[0].lit // literals are merged: a literal format is one part
}

// Append renders e into b. e may be nil for a literal format.
func (f *Format) Append(b []byte, e *Entry) []byte {
	for i := range f.parts {
		p := &f.parts[i]
		if p.op == nil {
			b = append(b, p.lit...)
			continue
		}
		n := len(b)
		var ok bool
		if b, ok = p.op(b, e); !ok {
			b = append(b[:n], f.absent...)
		} else if p.max >= 0 && len(b)-n > p.max {
			b = b[:n+p.max] // Envoy truncates bytes, not characters
		}
	}
	return b
}

func compile(what, format, absent string) (*Format, error) {
	f := &Format{absent: absent}
	var lit []byte
	flush := func() {
		if len(lit) > 0 {
			f.parts = append(f.parts, part{lit: string(lit)})
			lit = lit[:0]
		}
	}
	var host *hostname // looked up once per format, if it asks
	for pos := 0; pos < len(format); {
		c := format[pos]
		if c != '%' {
			lit = append(lit, c)
			pos++
			continue
		}
		if pos+1 < len(format) && format[pos+1] == '%' { // "%%" is a literal percent sign
			lit = append(lit, '%')
			pos += 2
			continue
		}
		cmd, sub, length, n, err := scanCommand(format[pos:])
		if err != nil {
			return nil, fmt.Errorf("%s: %w at position %d of %q", what, err, pos, format)
		}
		o, err := operator(cmd, sub, length, &host)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		flush()
		f.parts = append(f.parts, part{op: o, max: length})
		pos += n
	}
	flush()
	return f, nil
}

// scanCommand reads Envoy's %COMMAND(SUBCOMMAND):LENGTH% at the start of s (s[0] is the
// opening '%'): COMMAND of A-Z, 0-9 and _, SUBCOMMAND without ')', LENGTH digits. It
// returns the length -1 if none is given and how many bytes the command took.
func scanCommand(s string) (cmd, sub string, length, n int, err error) {
	i := 1
	for i < len(s) && (s[i] >= 'A' && s[i] <= 'Z' || s[i] >= '0' && s[i] <= '9' || s[i] == '_') {
		i++
	}
	bad := errors.New("no valid command")
	if i == 1 {
		return "", "", 0, 0, bad
	}
	cmd = s[1:i]
	if i < len(s) && s[i] == '(' {
		j := strings.IndexByte(s[i+1:], ')')
		if j < 0 {
			return "", "", 0, 0, bad
		}
		sub = s[i+1 : i+1+j]
		i += j + 2
	}
	length = -1
	if i < len(s) && s[i] == ':' {
		j := i + 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == i+1 {
			return "", "", 0, 0, bad
		}
		v, err := strconv.ParseInt(s[i+1:j], 10, 32)
		if err != nil {
			return "", "", 0, 0, fmt.Errorf("length must be an integer, given %s", s[i+1:j])
		}
		length, i = int(v), j
	}
	if i >= len(s) || s[i] != '%' {
		return "", "", 0, 0, bad
	}
	return cmd, sub, length, i + 1, nil
}

// hostname is os.Hostname, read once.
type hostname struct {
	name string
	ok   bool
}

// operator builds cmd's renderer after checking its syntax as Envoy does.
func operator(cmd, sub string, length int, host **hostname) (op, error) {
	syntax, o := simpleOperator(cmd)
	if o == nil {
		switch cmd {
		case "REQ", "RESP", "TRAILER":
			syntax = paramsRequired | lengthAllowed
		case "START_TIME":
			syntax = paramsOptional
		case "DYNAMIC_METADATA", "CLUSTER_METADATA", "UPSTREAM_METADATA":
			syntax = paramsRequired
		case "FILTER_STATE", "UPSTREAM_FILTER_STATE":
			syntax = paramsOptional | lengthAllowed
		case "ENVIRONMENT":
			syntax = paramsRequired | lengthAllowed
		case "HOSTNAME":
			syntax = commandOnly
		default:
			return nil, fmt.Errorf("operator %%%s%% is not supported", cmd)
		}
	}
	switch {
	case syntax == commandOnly && (sub != "" || length >= 0):
		return nil, fmt.Errorf("%s does not take any parameters or length", cmd)
	case syntax&paramsRequired != 0 && sub == "":
		return nil, fmt.Errorf("%s requires parameters", cmd)
	case syntax&lengthAllowed == 0 && length >= 0:
		return nil, fmt.Errorf("%s does not allow length to be specified", cmd)
	}
	if o != nil {
		return o, nil
	}
	switch cmd {
	case "REQ", "RESP":
		return headerOperator(sub, cmd == "RESP")
	case "TRAILER":
		if _, err := headerOperator(sub, true); err != nil {
			return nil, err
		}
		return absentOp, nil // Portico keeps no trailers
	case "START_TIME":
		return startTime(sub)
	case "ENVIRONMENT":
		v, ok := os.LookupEnv(sub) // Envoy reads it once, when the format is built
		return func(b []byte, _ *Entry) ([]byte, bool) { return append(b, v...), ok }, nil
	case "HOSTNAME":
		if *host == nil {
			h := &hostname{}
			h.name, _ = os.Hostname()
			h.ok = h.name != ""
			*host = h
		}
		h := *host
		return func(b []byte, _ *Entry) ([]byte, bool) { return append(b, h.name...), h.ok }, nil
	}
	// Metadata and filter state: Portico has neither yet, so they have no value.
	return absentOp, nil
}

func absentOp(b []byte, _ *Entry) ([]byte, bool) { return b, false }

// headerOperator is %REQ(X?Y)% or %RESP(X?Y)%: header X, else Y, by lower-case name.
func headerOperator(sub string, resp bool) (op, error) {
	main, alt, _ := strings.Cut(sub, "?")
	if strings.Contains(alt, "?") {
		return nil, fmt.Errorf("more than 1 alternative header specified in token: %s", sub)
	}
	if strings.ContainsAny(sub, "\r\n\x00") {
		return nil, fmt.Errorf("invalid header configuration: %q contains a newline or NUL", sub)
	}
	main, alt = strings.ToLower(main), strings.ToLower(alt)
	return func(b []byte, e *Entry) ([]byte, bool) {
		h := e.RequestHeaders
		if resp {
			h = e.ResponseHeaders
		}
		if h == nil {
			return b, false
		}
		v, ok := h.Get(main)
		if !ok && alt != "" {
			v, ok = h.Get(alt)
		}
		return append(b, v...), ok
	}, nil
}

// simpleOperator returns the renderer of an operator that takes no parameters, or nil.
func simpleOperator(name string) (int, op) {
	str := func(get func(e *Entry) string) op {
		return func(b []byte, e *Entry) ([]byte, bool) {
			s := get(e)
			return append(b, s...), s != ""
		}
	}
	addr := func(get func(e *Entry) netip.AddrPort, how int) op {
		return func(b []byte, e *Entry) ([]byte, bool) { return appendAddr(b, get(e), how) }
	}
	// HTTP timings have no value on TCP (no protocol) nor when not reached (negative).
	dur := func(get func(e *Entry) time.Duration) op {
		return func(b []byte, e *Entry) ([]byte, bool) {
			d := get(e)
			if e.Protocol == "" || d < 0 {
				return b, false
			}
			return strconv.AppendInt(b, d.Milliseconds(), 10), true
		}
	}
	downstreamRemote := func(e *Entry) netip.AddrPort { return e.DownstreamRemoteAddress }
	downstreamDirect := func(e *Entry) netip.AddrPort { return e.DownstreamDirectRemoteAddress }
	downstreamLocal := func(e *Entry) netip.AddrPort { return e.DownstreamLocalAddress }
	upstreamHost := func(e *Entry) netip.AddrPort { return e.UpstreamHost }
	upstreamLocal := func(e *Entry) netip.AddrPort { return e.UpstreamLocalAddress }
	var o op
	switch name {
	case "DURATION":
		o = func(b []byte, e *Entry) ([]byte, bool) {
			return strconv.AppendInt(b, e.Duration.Milliseconds(), 10), true
		}
	case "REQUEST_DURATION":
		o = dur(func(e *Entry) time.Duration { return e.RequestDuration })
	case "RESPONSE_DURATION":
		o = dur(func(e *Entry) time.Duration { return e.ResponseDuration })
	case "RESPONSE_TX_DURATION":
		o = dur(func(e *Entry) time.Duration { return e.ResponseTxDuration })
	case "BYTES_RECEIVED":
		o = func(b []byte, e *Entry) ([]byte, bool) { return strconv.AppendUint(b, e.BytesReceived, 10), true }
	case "BYTES_SENT":
		o = func(b []byte, e *Entry) ([]byte, bool) { return strconv.AppendUint(b, e.BytesSent, 10), true }
	case "RESPONSE_FLAGS":
		// Envoy prints its "none" flag, "-", as a value (in header values too).
		o = func(b []byte, e *Entry) ([]byte, bool) {
			if e.ResponseFlags == "" {
				return append(b, '-'), true
			}
			return append(b, e.ResponseFlags...), true
		}
	case "RESPONSE_CODE":
		// 0 when no response was sent, as Envoy's value_or(0).
		o = func(b []byte, e *Entry) ([]byte, bool) { return strconv.AppendInt(b, int64(e.ResponseCode), 10), true }
	case "RESPONSE_CODE_DETAILS":
		o = str(func(e *Entry) string { return e.ResponseCodeDetails })
	case "PROTOCOL":
		o = str(func(e *Entry) string { return e.Protocol })
	case "ROUTE_NAME":
		o = str(func(e *Entry) string { return e.RouteName })
	case "UPSTREAM_REQUEST_ATTEMPT_COUNT":
		o = func(b []byte, e *Entry) ([]byte, bool) {
			return strconv.AppendInt(b, int64(e.UpstreamRequestAttemptCount), 10), true
		}
	case "UPSTREAM_TRANSPORT_FAILURE_REASON":
		o = str(func(e *Entry) string { return e.UpstreamTransportFailureReason })
	case "DOWNSTREAM_REMOTE_ADDRESS":
		o = addr(downstreamRemote, withPort)
	case "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT":
		o = addr(downstreamRemote, withoutPort)
	case "DOWNSTREAM_REMOTE_PORT":
		o = addr(downstreamRemote, justPort)
	case "DOWNSTREAM_DIRECT_REMOTE_ADDRESS":
		o = addr(downstreamDirect, withPort)
	case "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT":
		o = addr(downstreamDirect, withoutPort)
	case "DOWNSTREAM_DIRECT_REMOTE_PORT":
		o = addr(downstreamDirect, justPort)
	case "DOWNSTREAM_LOCAL_ADDRESS":
		o = addr(downstreamLocal, withPort)
	case "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT":
		o = addr(downstreamLocal, withoutPort)
	case "DOWNSTREAM_LOCAL_PORT":
		o = addr(downstreamLocal, justPort)
	case "UPSTREAM_HOST", "UPSTREAM_REMOTE_ADDRESS":
		o = addr(upstreamHost, withPort)
	case "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT":
		o = addr(upstreamHost, withoutPort)
	case "UPSTREAM_REMOTE_PORT":
		o = addr(upstreamHost, justPort)
	case "UPSTREAM_LOCAL_ADDRESS":
		o = addr(upstreamLocal, withPort)
	case "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT":
		o = addr(upstreamLocal, withoutPort)
	case "UPSTREAM_LOCAL_PORT":
		o = addr(upstreamLocal, justPort)
	case "REQUESTED_SERVER_NAME":
		o = str(func(e *Entry) string { return e.RequestedServerName })
	case "FILTER_CHAIN_NAME":
		o = str(func(e *Entry) string { return e.FilterChainName })
	case "UPSTREAM_CLUSTER":
		o = str(func(e *Entry) string { return e.UpstreamCluster })
	case "DOWNSTREAM_TLS_VERSION":
		o = tlsStr(TLSInfo.TLSVersion)
	case "DOWNSTREAM_TLS_CIPHER":
		o = tlsStr(TLSInfo.TLSCipher)
	case "DOWNSTREAM_TLS_SESSION_ID":
		o = tlsStr(TLSInfo.TLSSessionID)
	case "DOWNSTREAM_PEER_SUBJECT":
		o = tlsStr(TLSInfo.PeerSubject)
	case "DOWNSTREAM_PEER_ISSUER":
		o = tlsStr(TLSInfo.PeerIssuer)
	case "DOWNSTREAM_PEER_FINGERPRINT_256":
		o = tlsStr(TLSInfo.PeerFingerprintSHA256)
	case "CONNECTION_TERMINATION_DETAILS":
		o = str(func(e *Entry) string { return e.TerminationDetails })
	}
	return commandOnly, o
}

// tlsStr renders one of the downstream TLS strings; none without TLS.
func tlsStr(get func(TLSInfo) string) op {
	return func(b []byte, e *Entry) ([]byte, bool) {
		if e.DownstreamTLS == nil {
			return b, false
		}
		s := get(e.DownstreamTLS)
		return append(b, s...), s != ""
	}
}

// How an address prints: "10.0.0.1:80" / "[::1]:80", the address alone, the port alone.
const (
	withPort = iota
	withoutPort
	justPort
)

// appendAddr appends a without allocating; a zero address has no value.
func appendAddr(b []byte, a netip.AddrPort, how int) ([]byte, bool) {
	if !a.IsValid() {
		return b, false
	}
	switch how {
	case withoutPort:
		return a.Addr().AppendTo(b), true
	case justPort:
		return strconv.AppendUint(b, uint64(a.Port()), 10), true
	}
	return a.AppendTo(b), true
}

// flushEvery bounds how long a line waits in memory before it reaches the file.
const flushEvery = 100 * time.Millisecond

// Package accesslog writes Envoy-style access log lines for connections.
package accesslog

import (
	"net/netip"
	"time"
)

// Entry is what a network filter knows about a finished connection.
type Entry struct {
	StartTime                     time.Time
	Duration                      time.Duration
	DownstreamRemoteAddress       netip.AddrPort
	DownstreamDirectRemoteAddress netip.AddrPort
	DownstreamLocalAddress        netip.AddrPort
	RequestedServerName           string
	FilterChainName               string
	UpstreamHost                  netip.AddrPort
	UpstreamCluster               string
	BytesReceived                 uint64
	BytesSent                     uint64
	// ResponseFlags are Envoy's short flags, e.g. "UF" (upstream connection failure),
	// "UO" (overflow), "-" when none.
	ResponseFlags string
	// TerminationDetails says why the connection ended, when known.
	TerminationDetails string
	// DownstreamTLS is the downstream connection's TLS, nil when it is not TLS terminated
	// here (the %DOWNSTREAM_TLS_*% and %DOWNSTREAM_PEER_*% operators then print "-").
	DownstreamTLS TLSInfo
	// HTTP, zero on TCP connections: the HTTP operators then print "-" as in Envoy (an
	// empty Protocol is what tells a TCP entry's zero durations from measured ones).

	// Protocol is "HTTP/1.1" or "HTTP/1.0" (%PROTOCOL%).
	Protocol string
	// ResponseCode is the status sent downstream, 0 if none was (%RESPONSE_CODE%).
	ResponseCode int
	// ResponseCodeDetails is Envoy's details string ("via_upstream", "route_not_found" ...).
	ResponseCodeDetails string
	// RequestHeaders and ResponseHeaders hold the request's headers (pseudo-headers
	// ":method", ":path", ":authority", ":scheme" included) and the response's, for
	// %REQ(X)% and %RESP(X)%; nil when absent (a nil *header.Map must be stored as a nil
	// interface). Names are lower-case.
	RequestHeaders, ResponseHeaders Headers
	// RouteName is the name of the route taken (%ROUTE_NAME%).
	RouteName string
	// UpstreamLocalAddress is the local address of the upstream connection used.
	UpstreamLocalAddress netip.AddrPort
	// UpstreamTransportFailureReason says why the upstream connection failed, if it did.
	UpstreamTransportFailureReason string
	// RequestDuration is from the start to the last byte of the request received
	// (%REQUEST_DURATION%); ResponseDuration to the first byte of the response from
	// upstream (%RESPONSE_DURATION%); ResponseTxDuration from that first byte to the last
	// byte sent downstream (%RESPONSE_TX_DURATION%). Negative: not reached.
	RequestDuration, ResponseDuration, ResponseTxDuration time.Duration
	// UpstreamRequestAttemptCount is how many upstream attempts were made (retries + 1).
	UpstreamRequestAttemptCount int
	// Worker is the id of the worker that logs the entry (engine.Worker.ID). A Writer keeps
	// one buffer per worker so that workers never wait for one another; entries from
	// other goroutines may use any id, preferably a small one of their own.
	Worker int
}

// Headers is a header block an access log reads: *header.Map implements it.
type Headers interface {
	// Get returns the first value of the header with the given lower-case name.
	Get(name string) ([]byte, bool)
}

// TLSInfo is what an access log reads of a TLS connection; engine.TLSInfo implements
// it (the access log imports no engine).
type TLSInfo interface {
	TLSVersion() string            // "TLSv1.2", "TLSv1.3"
	TLSCipher() string             // BoringSSL's name
	TLSSessionID() string          // hex, "" if none
	PeerSubject() string           // RFC 2253, "" without a peer certificate
	PeerIssuer() string            // RFC 2253, "" without a peer certificate
	PeerFingerprintSHA256() string // lower-case hex, "" without a peer certificate
}

// Logger receives entries. Log runs on a worker: it must not block, and it must not keep e
// after it returns.
type Logger interface {
	Log(e *Entry)
}

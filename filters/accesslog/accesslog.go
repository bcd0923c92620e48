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
}

// Logger receives entries. Log runs on a worker: it must not block.
type Logger interface {
	Log(e *Entry)
}

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
	// Worker is the id of the worker that logs the entry (engine.Worker.ID). A Writer keeps
	// one buffer per worker so that workers never wait for one another; entries from
	// other goroutines may use any id, preferably a small one of their own.
	Worker int
}

// Logger receives entries. Log runs on a worker: it must not block, and it must not keep e
// after it returns.
type Logger interface {
	Log(e *Entry)
}

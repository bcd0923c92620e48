package engine

import (
	"math"
	"net/netip"
	"time"
)

// ListenerConfig is one listener, translated from Envoy's Listener message.
type ListenerConfig struct {
	Name    string
	Address netip.AddrPort
	// StatPrefix names the listener's stats (listener.<StatPrefix>.…) when set; otherwise
	// they are named after the listener.
	StatPrefix string
	// NoBindToPort (Envoy's bind_to_port: false): the listener never binds or listens; it
	// only receives sockets handed off by a use_original_dst listener. The zero value
	// binds, as Envoy's default does.
	NoBindToPort bool
	// NoReusePort (Envoy's enable_reuse_port: false): one socket dup'ed into every worker's
	// epoll. The zero value gives each worker its own SO_REUSEPORT socket, Envoy's default.
	NoReusePort bool
	// ExactBalance hands each accepted socket to the worker with the fewest connections.
	ExactBalance bool
	// Backlog for listen(2); 0 means the kernel's somaxconn.
	Backlog int
	// UseOriginalDst hands a socket whose destination was restored to the listener bound to
	// that destination.
	UseOriginalDst bool
	// ListenerFilters run in order on each accepted socket.
	ListenerFilters []ListenerFilter
	// ListenerFiltersTimeout bounds the listener-filter phase; 0 disables it.
	ListenerFiltersTimeout time.Duration
	// ContinueOnListenerFiltersTimeout creates the connection at the timeout instead of
	// closing the socket.
	ContinueOnListenerFiltersTimeout bool
	// FilterChains selects the network filters for each socket.
	FilterChains FilterChainManager
	// PerConnectionBufferLimit is the high watermark of each connection's write buffer
	// (Envoy's per_connection_buffer_limit_bytes): 0 means DefaultBufferLimit,
	// NoBufferLimit means none.
	PerConnectionBufferLimit int
	// MaxAcceptPerEvent caps the accept4 batch per readiness event.
	MaxAcceptPerEvent int
	// DrainModifyOnly (Envoy's drain_type: MODIFY_ONLY): the listener's connections drain
	// only when the listener itself is updated or removed, not in a server-wide drain
	// sequence (hot restart, /drain_listeners?graceful) nor while health checks fail.
	DrainModifyOnly bool
	// Transparent and Freebind set IP_TRANSPARENT and IP_FREEBIND before bind.
	Transparent bool
	Freebind    bool
}

// DefaultListenerFiltersTimeout is Envoy's listener_filters_timeout default.
const DefaultListenerFiltersTimeout = 15 * time.Second

// DefaultBufferLimit is Envoy's per_connection_buffer_limit_bytes default.
const DefaultBufferLimit = 1 << 20

// NoBufferLimit turns the write-buffer watermarks off, as an explicit
// per_connection_buffer_limit_bytes of 0 does in Envoy.
const NoBufferLimit = -1

// watermark turns a buffer limit into the high watermark (the low one is half of it).
func watermark(limit int) int32 {
	switch {
	case limit == NoBufferLimit:
		return math.MaxInt32
	case limit <= 0:
		limit = DefaultBufferLimit
	case limit > 1<<30:
		limit = 1 << 30
	}
	return int32(limit)
}

// defaultMaxAccept bounds one accept batch so a flood of connections cannot starve the
// other fds of the loop.
const defaultMaxAccept = 64

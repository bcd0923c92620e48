package engine

// FilterStatus tells the framework whether to go on to the next filter.
type FilterStatus int

const (
	// Continue runs the next filter.
	Continue FilterStatus = iota
	// StopIteration pauses the chain: a listener filter waits for more bytes, a network
	// filter has consumed the data.
	StopIteration
)

// ListenerFilter runs on an accepted socket before any Connection exists (Envoy's
// Network::ListenerFilter). One instance serves every socket of every worker, so an
// implementation keeps no per-socket state in itself: what it learns goes into the
// ActiveSocket's SocketInfo, and whatever it must re-derive it re-parses from the bytes
// it is shown, which always start at the first byte the peer sent (after any a filter
// drained).
type ListenerFilter interface {
	// Name is the filter's Envoy name, for logs and stats.
	Name() string
	// OnAccept is called once. Return Continue when done, StopIteration to wait for data
	// (MaxReadBytes must then be > 0). A filter that rejects the socket calls s.Fail.
	OnAccept(s *ActiveSocket) FilterStatus
	// MaxReadBytes is how many bytes OnData wants to see at most; 0 means none.
	MaxReadBytes() int
	// OnData is called with the bytes read so far, from the first one, each time more
	// arrive. The engine reads each byte from the kernel once into a buffer of the
	// socket's (like Envoy's ListenerFilterBuffer), and what the filters do not Drain is
	// handed to the connection as its first read, so nothing is lost or read twice. data is
	// valid only during the call. Return StopIteration to wait for more (WantBytes says how
	// many are needed, if the filter knows). If data already holds MaxReadBytes bytes and
	// the filter still returns StopIteration, the socket is closed.
	OnData(s *ActiveSocket, data []byte) FilterStatus
}

// FilterChain is what a FilterChainManager selects: a name, the transport socket and the
// network filters to build for the connection.
type FilterChain struct {
	Name    string
	Filters []NetworkFilterFactory
	// TransportSocket makes each connection's transport socket (Envoy's
	// filter_chains[].transport_socket); nil is raw_buffer.
	TransportSocket TransportSocketFactory
}

// FilterChainManager selects the filter chain for a socket after the listener filters
// (Envoy's Network::FilterChainManager). It must not allocate and must be safe for
// concurrent use by all workers (it is immutable after config load).
type FilterChainManager interface {
	// FindFilterChain returns the chain for the socket or nil (the socket is closed and
	// no_filter_chain_match counted).
	FindFilterChain(info *SocketInfo) *FilterChain
	// NeedsLocalAddress reports whether selection looks at the destination IP or source
	// type, so the engine calls getsockname on wildcard listeners only when needed.
	NeedsLocalAddress() bool
}

// SingleChain is a FilterChainManager that always returns one chain.
type SingleChain struct{ Chain *FilterChain }

// FindFilterChain implements FilterChainManager.
func (s SingleChain) FindFilterChain(*SocketInfo) *FilterChain { return s.Chain }

// NeedsLocalAddress implements FilterChainManager.
func (SingleChain) NeedsLocalAddress() bool { return false }

// ReadFilter is a network filter on the read path of a Connection (Envoy's
// Network::ReadFilter).
type ReadFilter interface {
	// OnNewConnection is called once the connection exists, before any data.
	OnNewConnection() FilterStatus
	// OnData is called with bytes read from the socket. data lives in the worker's scratch
	// buffer and is valid only during the call; endStream reports the peer's FIN (data may
	// then be empty).
	OnData(data []byte, endStream bool) FilterStatus
}

// NetworkFilterFactory creates a network filter for a new connection.
type NetworkFilterFactory interface {
	// Name is the filter's Envoy name.
	Name() string
	// CreateFilter builds the filter for c. It runs on c's worker.
	CreateFilter(c *Connection) ReadFilter
}

// Package engine is Portico's event-loop engine: pinned epoll workers that accept, inspect
// and serve TCP connections without a goroutine per connection, built after Envoy's
// listener architecture. Portico's proxy is made of it; it serves just as well for a server
// of your own.
//
// # Threads
//
// A Server owns N workers. Each Worker is one goroutine locked to its OS thread, with its
// own epoll instance, task queue (Post) and timers (Timer). Everything a worker owns —
// its sockets, connections, timers, the upstream connections it dials — is touched only
// on that goroutine, so filters need no locks. Other goroutines talk to a worker with
// Post. A listener is bound once, on the caller's goroutine, before any worker runs (an
// address in use fails AddListener), and then served by every worker: each with its own
// SO_REUSEPORT socket (the default), or all sharing one socket (NoReusePort), optionally
// with ExactBalance.
//
// # The life of a connection
//
//	accept4 ─> ActiveSocket ─> ListenerFilters ─> FilterChainManager ─> Connection ─> ReadFilters
//	           (fd + SocketInfo)  read, decide      picks a FilterChain    epoll, ET      OnData
//
// An accepted socket first runs its listener's ListenerFilters (tls_inspector,
// proxy_protocol, ... or your own), which look at its first bytes and fill in its
// SocketInfo. The engine reads those bytes once, into a buffer of the socket's; what the
// filters do not drain becomes the connection's first read. The listener's FilterChainManager then picks a FilterChain,
// whose NetworkFilterFactory values build the Connection's ReadFilters. From then on every
// read lands in the worker's scratch buffer and is handed to OnData, valid only during the
// call; Connection.Write sends at once and buffers only what the kernel refuses.
//
// # Transport sockets
//
// A FilterChain may carry a TransportSocketFactory (Envoy's transport_socket): its
// TransportSocket then sits between the socket and the read filters, which are built only
// once it reports TransportReady, and which read and write plaintext (package
// transport/tls terminates TLS this way, with the handshake on a short-lived goroutine and
// the established connection driven by the worker). Without one, a connection is
// raw_buffer: bytes go straight between the fd and the filters, and bulk transfers may
// splice.
//
// A ClusterConfig may carry an UpstreamTransportSocketFactory (TLS origination): each
// upstream connection gets its socket when the connect starts, so that what the filters
// write before the handshake is held by it (and counted in the watermarks); the socket
// starts at the TCP connect's end (OnConnected), Connected is raised only when it calls
// TransportReady, and connect_timeout covers both. A socket that fails first
// (TransportFailed, or the peer leaving mid-handshake) closes the connection as a connect
// failure, FailureTransport. Cluster.ConnectHostWith passes per-connection
// TransportOptions (the SNI and name of auto_sni and auto_san_validation).
//
// # Flow control
//
// A Connection's write buffer has a high watermark (ListenerConfig.PerConnectionBufferLimit,
// 1 MiB by default) and a low one at half of it. Crossing them calls the connection's
// ConnectionCallbacks, whose job is to pause and resume whoever feeds it
// (Connection.ReadDisable): a filter that writes what it reads must do so, or a peer that
// does not read grows the buffer without bound. The echo and tcp_proxy filters show how.
//
// # Panics
//
// A panic in filter code (listener filters, chain selection, network filters and their
// factories, callbacks, timer handlers, posted tasks) is recovered where the engine called
// it: the connection it was serving is reset, its callbacks see LocalClose (so a proxy
// closes the other side), the panic is logged with its stack and counted
// (ServerStats.FilterPanics, ListenerStats.DownstreamCxFilterPanic), and the worker goes
// on with its other connections.
//
// # Time
//
// Each worker reads a monotonic clock once per loop turn (Worker.NowNanos). Timers run on
// it: a step of the wall clock changes nothing, an overlong duration is clamped, and a
// timer re-armed for now from its own handler fires on the next turn, never in a loop.
//
// # Changes while running
//
// Listeners and clusters change while the server runs, with Envoy's LDS and CDS
// semantics. AddListener binds and adds a listener to every worker; UpdateListenerChains
// swaps a listener's filter chains in place (connections on the chains it keeps are
// untouched, those on the dropped chains drain); UpdateListener replaces the rest of a
// listener and carries its bound sockets into the new version, never closing and
// re-binding them, so nothing queued is lost; RemoveListener stops accepting and drains.
// A drain tells filters (DrainObserver, Connection.DrainClose, by the DrainStrategy) and
// closes what is left after ServerOptions.DrainTime. Filters name clusters and look them
// up per connection in the ClusterRegistry, so AddCluster, UpdateCluster and
// RemoveCluster take effect for new connections while live ones finish on the version
// they started with. The Server methods are called from one goroutine at a time.
//
// # Writing a filter
//
// A network filter implements ReadFilter and is made per connection by a
// NetworkFilterFactory; see the Server example for an echo server and the
// NetworkFilterFactory example for a line protocol. Filters keep per-connection state in
// themselves, per-worker state indexed by Worker.ID, and never block: work that may block
// goes to another goroutine, whose result comes back with Worker.Post.
//
// The package builds only on Linux.
package engine

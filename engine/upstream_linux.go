package engine

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/poller"
)

// LBPolicy picks an endpoint of a cluster.
type LBPolicy int

// Load-balancing policies (Envoy's Cluster.LbPolicy subset).
const (
	RoundRobin LBPolicy = iota
	LeastRequest
)

func (p LBPolicy) String() string {
	if p == LeastRequest {
		return "LEAST_REQUEST"
	}
	return "ROUND_ROBIN"
}

// Endpoint is one upstream address of a STATIC cluster.
type Endpoint struct {
	Address netip.AddrPort
	Weight  uint32
	// Hostname is the endpoint's hostname (Envoy's endpoint.hostname), used by
	// auto_host_rewrite; "" for none.
	Hostname string
}

// ClusterConfig is one STATIC cluster.
type ClusterConfig struct {
	Name           string
	ConnectTimeout time.Duration
	LBPolicy       LBPolicy
	Endpoints      []Endpoint
	// PerConnectionBufferLimit is the upstream connections' high watermark.
	PerConnectionBufferLimit int
	// CircuitBreakers are the default-priority thresholds (zero fields take Envoy's
	// defaults: 1024 connections, pending requests and requests, 3 retries).
	CircuitBreakers Thresholds
	// HTTP holds what HTTP connection pools need to know of the cluster (Envoy's
	// HttpProtocolOptions); filters that do not pool ignore it.
	HTTP HTTPOptions
	// KeepAlive, when set, turns TCP keep-alive on for upstream sockets
	// (upstream_connection_options.tcp_keepalive).
	KeepAlive *KeepAlive
	// OriginalDst, if set, makes this an ORIGINAL_DST cluster (original_dst_linux.go):
	// Endpoints are ignored, hosts are made per connection from its original destination.
	OriginalDst *OriginalDstConfig
	// TransportSocket makes the transport socket of each upstream connection (Envoy's
	// cluster transport_socket: TLS origination); nil is raw_buffer, on the unchanged path.
	TransportSocket UpstreamTransportSocketFactory
}

// KeepAlive is TCP keep-alive for upstream sockets: SO_KEEPALIVE, and each non-zero field
// sets its socket option (zero keeps the system's default, as in Envoy).
type KeepAlive struct {
	Probes   int           // TCP_KEEPCNT
	Idle     time.Duration // TCP_KEEPIDLE, whole seconds
	Interval time.Duration // TCP_KEEPINTVL, whole seconds
}

// apply sets the options on fd; errors are ignored, as Envoy logs and goes on.
func (k *KeepAlive) apply(fd int) {
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	if k.Probes > 0 {
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, k.Probes)
	}
	if s := int(k.Idle / time.Second); s > 0 {
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, s)
	}
	if s := int(k.Interval / time.Second); s > 0 {
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, s)
	}
}

// HTTPOptions are a cluster's upstream HTTP settings
// (envoy.extensions.upstreams.http.v3.HttpProtocolOptions).
type HTTPOptions struct {
	// IdleTimeout closes a pooled connection idle this long (common_http_protocol_options
	// idle_timeout; Envoy's default is 1 h). Negative: never.
	IdleTimeout time.Duration
	// MaxRequestsPerConnection closes a connection after this many requests; 0: no limit.
	MaxRequestsPerConnection int
	// MaxConnectionDuration closes a connection this long after it was opened (once idle);
	// 0: no limit.
	MaxConnectionDuration time.Duration
	// AutoSNI sends the request's host as the SNI of its upstream connection, and
	// AutoSANValidation checks the upstream's certificate against it
	// (upstream_http_protocol_options): connections are then pooled per host name.
	AutoSNI, AutoSANValidation bool
}

// DefaultHTTPIdleTimeout is Envoy's upstream idle_timeout default.
const DefaultHTTPIdleTimeout = time.Hour

// DefaultConnectTimeout is Envoy's cluster connect_timeout default.
const DefaultConnectTimeout = 5 * time.Second

// Cluster is a set of upstream hosts. Load-balancer state is per worker, as in Envoy,
// so choosing a host takes no lock. The host set can change while the server runs
// (UpdateHosts: DNS, health checks): each worker gets the new set as a posted, immutable
// value.
type Cluster struct {
	cfg       ClusterConfig
	perWorker []clusterWorker
	workers   int
	breakers  Breakers

	mu      sync.Mutex
	current *hostSet // the latest set (admin, the next worker to go live)
	srv     *Server  // set by AddCluster; host-set updates are posted once it started
	live    bool     // the workers run: updates are posted, not written

	ext clusterExt // health checking, outlier detection, ORIGINAL_DST (cluster_ext_linux.go)
	// attachment is what a filter package keeps per cluster (the router's HTTP pools),
	// set before the cluster is published and read-only after.
	attachment any
}

// SetAttachment stores a filter package's per-cluster state (the router's HTTP side). Call
// it before the cluster is added to a server or registry: it is read without a lock.
func (c *Cluster) SetAttachment(v any) { c.attachment = v }

// Attachment is what SetAttachment stored.
func (c *Cluster) Attachment() any { return c.attachment }

// Breakers returns the cluster's circuit breakers, shared by all workers.
func (c *Cluster) Breakers() *Breakers { return &c.breakers }

type clusterWorker struct {
	stats  ClusterStats
	io     byteCounters // points into stats, shared by this worker's connections
	rr     uint64
	set    *hostSet // this worker's view of the hosts
	worker int
	_      [80]byte // to 192 bytes: each worker's state on its own cache lines
}

// NewCluster builds a cluster for the given number of workers, with cfg.Endpoints as its
// first hosts. A cluster may have no hosts (Envoy's BlackHoleCluster, or a DNS cluster
// before its first answer): its connections then fail as "no healthy upstream".
func NewCluster(cfg ClusterConfig, workers int) (*Cluster, error) {
	if workers <= 0 {
		return nil, fmt.Errorf("cluster %q: worker count %d", cfg.Name, workers)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	cfg.Endpoints = append([]Endpoint(nil), cfg.Endpoints...)
	if cfg.HTTP.IdleTimeout == 0 {
		cfg.HTTP.IdleTimeout = DefaultHTTPIdleTimeout
	}
	c := &Cluster{cfg: cfg, perWorker: make([]clusterWorker, workers), workers: workers}
	c.breakers.init(cfg.CircuitBreakers)
	for i := range c.perWorker {
		st := &c.perWorker[i].stats
		c.perWorker[i].io = byteCounters{&st.UpstreamCxRxBytesTotal, &st.UpstreamCxTxBytesTotal}
		c.perWorker[i].worker = i
	}
	if cfg.OriginalDst != nil {
		c.initOriginalDst(*cfg.OriginalDst)
		cfg.Endpoints = nil
	}
	hosts := make([]*Host, len(cfg.Endpoints))
	for i, e := range cfg.Endpoints {
		hosts[i] = NewHost(e.Address, e.Weight, e.Hostname, workers)
	}
	c.UpdateHosts(hosts)
	return c, nil
}

// Name is the cluster's name.
func (c *Cluster) Name() string { return c.cfg.Name }

// Config returns the cluster's configuration.
func (c *Cluster) Config() ClusterConfig { return c.cfg }

// Stats returns the cluster's stats on worker i.
func (c *Cluster) Stats(worker int) *ClusterStats { return &c.perWorker[worker].stats }

// Workers is the number of workers the cluster was built for (NewHost needs it).
func (c *Cluster) Workers() int { return c.workers }

// Hosts returns the latest host set (safe from any goroutine; do not modify it).
func (c *Cluster) Hosts() []*Host {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current.hosts
}

// UpdateHosts replaces the cluster's hosts (safe from any goroutine: a DNS resolver, a
// health checker). Hosts kept from the old set should be passed as the same *Host so that
// their connections and pools live on. Each worker switches to the new set on its next
// loop turn; hosts that left run their OnRemoved hooks there.
func (c *Cluster) UpdateHosts(hosts []*Host) {
	c.mu.Lock()
	defer c.mu.Unlock()
	hosts = c.beforeHostUpdate(hosts) // health checking and outlier detection (cluster_ext_linux.go)
	hs := newHostSet(append([]*Host(nil), hosts...))
	var gone []*Host
	if old := c.current; old != nil {
		for _, h := range old.hosts {
			if !containsHost(hs.hosts, h) {
				h.removed.Store(true)
				gone = append(gone, h)
			}
		}
	}
	for _, h := range hs.hosts {
		h.removed.Store(false)
	}
	c.current = hs
	if !c.live {
		for i := range c.perWorker {
			c.perWorker[i].set = hs
		}
		return
	}
	for _, w := range c.srv.workers {
		w.Post(func() {
			c.perWorker[w.ID].set = hs
			for _, h := range gone {
				if fn := h.local[w.ID].OnRemoved; fn != nil && h.Removed() {
					fn()
				}
			}
		})
	}
}

// goLive is called by Server.Start: from now on host sets are posted to the workers.
func (c *Cluster) goLive() {
	c.mu.Lock()
	c.live = true
	c.mu.Unlock()
}

func containsHost(hs []*Host, h *Host) bool {
	for _, x := range hs {
		if x == h {
			return true
		}
	}
	return false
}

// connClosed accounts for a closed upstream connection of this worker.
func (st *clusterWorker) connClosed(c *Connection) {
	if c.host != nil {
		c.host.local[c.w.ID].Active--
	}
	st.stats.UpstreamCxActive.Dec()
	st.stats.UpstreamCxDestroy.Inc()
	switch c.failure {
	case FailureConnectRefused, FailureTransport:
		st.stats.UpstreamCxConnectFail.Inc()
	case FailureConnectTimeout:
		st.stats.UpstreamCxConnectFail.Inc()
		st.stats.UpstreamCxConnectTimeout.Inc()
	case FailureOverflow:
		// The proxy ran out of its own resources: not the backend's failure.
		st.stats.UpstreamCxOverflow.Inc()
	case FailureNoHealthyUpstream:
		st.stats.UpstreamCxNoneHealthy.Inc()
	}
}

// ChooseHost picks a host for a new connection or request on worker w, with the cluster's
// load-balancing policy, among its healthy hosts. When fewer than half are healthy it
// picks among all of them (Envoy's default healthy_panic_threshold of 50%). It returns nil
// when the cluster has no hosts. skip, if not nil, excludes hosts (a retry's previous
// hosts); ChooseHost then tries a few more picks and returns the last one if every pick
// was excluded, as Envoy's host_selection_retry_max_attempts does.
func (c *Cluster) ChooseHost(w *Worker, skip func(*Host) bool) *Host {
	st := &c.perWorker[w.ID]
	hs := st.set
	n := len(hs.hosts)
	if n == 0 {
		return nil
	}
	if n == 1 {
		return hs.hosts[0]
	}
	healthy := 0
	for _, h := range hs.hosts {
		if h.Healthy() {
			healthy++
		}
	}
	all := healthy*2 < n // panic mode: every host takes traffic
	h := c.pick(st, hs, all, healthy)
	if skip != nil {
		for try := 0; try < 2*n && skip(h); try++ {
			h = c.pick(st, hs, all, healthy)
		}
	}
	return h
}

// pick chooses among the usable hosts: all, or the healthy ones.
func (c *Cluster) pick(st *clusterWorker, hs *hostSet, all bool, healthy int) *Host {
	n := len(hs.hosts)
	usable := func(h *Host) bool { return all || h.Healthy() }
	if c.cfg.LBPolicy == LeastRequest {
		// Envoy picks two at random and keeps the less loaded; with small host sets a
		// full scan from a rotating start is as cheap and exact. Weights divide the load,
		// as Envoy's weighted least-request does.
		start := int(st.rr % uint64(n))
		st.rr++
		var best *Host
		for i := 0; i < n; i++ {
			h := hs.hosts[(start+i)%n]
			if usable(h) && (best == nil || load(h, st) < load(best, st)) {
				best = h
			}
		}
		return best
	}
	if all || healthy == n {
		if hs.totalWeight == uint64(n) {
			h := hs.hosts[st.rr%uint64(n)]
			st.rr++
			return h
		}
		return weighted(hs.hosts, hs.totalWeight, st, nil)
	}
	var total uint64
	for _, h := range hs.hosts {
		if h.Healthy() {
			total += uint64(h.weight)
		}
	}
	return weighted(hs.hosts, total, st, (*Host).Healthy)
}

// weighted is weighted round robin: every total picks give each host its weight.
func weighted(hosts []*Host, total uint64, st *clusterWorker, ok func(*Host) bool) *Host {
	x := st.rr % total
	st.rr++
	var last *Host
	for _, h := range hosts {
		if ok != nil && !ok(h) {
			continue
		}
		if x < uint64(h.weight) {
			return h
		}
		x -= uint64(h.weight)
		last = h
	}
	return last
}

// load is a host's active connections on this worker scaled by its weight.
func load(h *Host, st *clusterWorker) float64 {
	return float64(h.local[st.worker].Active+1) / float64(h.weight)
}

// Connect opens a non-blocking connection to one of the cluster's hosts on worker w. The
// connection raises Connected when the handshake completes, or RemoteClose with a
// FailureReason when it is refused or times out (connect_timeout), when the proxy has no
// fd or memory for its socket (FailureOverflow), or when the cluster has no host
// (FailureNoHealthyUpstream).
func (c *Cluster) Connect(w *Worker, cb ConnectionCallbacks) *Connection {
	return c.ConnectHost(w, c.ChooseHost(w, nil), cb)
}

// ConnectHost is Connect to host h (from ChooseHost; nil fails as no healthy upstream).
func (c *Cluster) ConnectHost(w *Worker, h *Host, cb ConnectionCallbacks) *Connection {
	return c.ConnectHostWith(w, h, cb, nil)
}

// ConnectHostWith is ConnectHost with per-connection options for the cluster's transport
// socket (o may be nil; a raw_buffer cluster ignores it). With a transport socket the
// connection raises Connected only once the socket is ready (the TLS handshake done), and
// connect_timeout covers the TCP connect and the handshake together, as in Envoy.
func (c *Cluster) ConnectHostWith(w *Worker, h *Host, cb ConnectionCallbacks, o *TransportOptions) *Connection {
	st := &c.perWorker[w.ID]
	st.stats.UpstreamCxTotal.Inc()
	var conn *Connection
	if h == nil {
		conn = &Connection{fd: -1, w: w, state: stateClosed, failure: FailureNoHealthyUpstream}
	} else {
		conn = dialTCP(w, h.addr, c.cfg.PerConnectionBufferLimit, c.cfg.KeepAlive)
		h.local[w.ID].Active++
	}
	conn.AddCallbacks(cb)
	conn.io = &st.io
	st.stats.UpstreamCxActive.Inc()
	conn.owner, conn.host = st, h
	if conn.state == stateConnecting {
		conn.timer = &Timer{}
		conn.timer.Init(w, (*connectTimeout)(conn))
		conn.timer.Reset(c.cfg.ConnectTimeout)
		if f := c.cfg.TransportSocket; f != nil {
			// Made now, not at the connect's end, so that whatever the filters write from
			// here on goes through it (held until the handshake is done).
			conn.ts = f.NewUpstreamTransportSocket(conn, o)
			conn.tsPending = conn.ts != nil
		}
	} else if conn.state == stateClosed {
		// The socket could not even be created, or there is no host: report it on the
		// next loop turn so the caller sees the same asynchronous failure as a refused
		// connect.
		w.Post(func() {
			st.connClosed(conn)
			conn.raise(RemoteClose)
		})
	}
	return conn
}

// connectTimeout is a connecting Connection seen as the handler of its connect timer.
type connectTimeout Connection

func (t *connectTimeout) OnTimer() {
	if c := (*Connection)(t); c.state == stateConnecting || c.tsPending && c.state == stateOpen {
		c.failure = FailureConnectTimeout
		c.closeSocket(RemoteClose)
	}
}

// dialTCP starts a non-blocking connect. On an immediate error the returned connection is
// already closed, with FailureOverflow if the socket could not be created for lack of
// local resources and FailureConnectRefused otherwise, and no callbacks raised.
func dialTCP(w *Worker, addr netip.AddrPort, limit int, ka *KeepAlive) *Connection {
	conn := &Connection{fd: -1, w: w, state: stateClosed, failure: FailureConnectRefused}
	conn.Info.RemoteAddr = addr
	conn.high = watermark(limit)
	family := unix.AF_INET
	if addr.Addr().Is6() && !addr.Addr().Is4In6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if localResourceError(err) {
			conn.failure = FailureOverflow
		}
		return conn
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if ka != nil {
		ka.apply(fd)
	}
	err = connectRaw(fd, addr)
	if err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		if localResourceError(err) || err == unix.EADDRNOTAVAIL {
			// No memory, or no local port left: the proxy's own resources again.
			conn.failure = FailureOverflow
		}
		return conn
	}
	conn.fd = fd
	conn.failure = FailureNone
	conn.state = stateConnecting
	// Registered once for good: the first EPOLLOUT edge says the connect finished.
	if err := w.register(fd, connEvents, conn); err != nil {
		unix.Close(fd)
		conn.fd, conn.state, conn.failure = -1, stateClosed, FailureConnectRefused
	}
	return conn
}

// onConnectReady handles the first events of a connecting socket. EPOLLERR/EPOLLHUP
// mean the connect failed; EPOLLOUT alone means it succeeded, so no getsockopt(SO_ERROR)
// is spent on the common path. It reports whether the connection is now open (the caller
// then handles the rest of ev, such as bytes the server sent at once).
func (c *Connection) onConnectReady(ev uint32) bool {
	if ev&(poller.Err|poller.Hup) != 0 {
		c.failure = FailureConnectRefused
		c.closeSocket(RemoteClose)
		return false
	}
	if ev&poller.Out == 0 {
		return false
	}
	c.state = stateOpen
	if c.tsPending {
		// The transport socket's handshake comes first: the connect timer keeps running,
		// and Connected waits for TransportReady.
		c.startUpstreamTransport()
		return c.state == stateOpen
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.raise(Connected)
	if c.state == stateClosed {
		return false
	}
	if c.pending() > 0 {
		c.flush()
	} else {
		c.afterWrite()
	}
	return c.state == stateOpen
}

// localResourceError reports an errno that means the process or the kernel ran out of
// something the proxy needed (fds, socket buffers, memory), not that a peer failed.
func localResourceError(err error) bool {
	switch err {
	case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
		return true
	}
	return false
}

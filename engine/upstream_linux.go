package engine

import (
	"fmt"
	"net/netip"
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
}

// DefaultHTTPIdleTimeout is Envoy's upstream idle_timeout default.
const DefaultHTTPIdleTimeout = time.Hour

// DefaultConnectTimeout is Envoy's cluster connect_timeout default.
const DefaultConnectTimeout = 5 * time.Second

// Cluster is a set of upstream endpoints. Load-balancer state is per worker, as in Envoy,
// so choosing a host takes no lock.
type Cluster struct {
	cfg         ClusterConfig
	perWorker   []clusterWorker
	workers     int
	totalWeight uint64
	breakers    Breakers
}

// Breakers returns the cluster's circuit breakers, shared by all workers.
func (c *Cluster) Breakers() *Breakers { return &c.breakers }

type clusterWorker struct {
	stats  ClusterStats
	io     byteCounters // points into stats, shared by this worker's connections
	rr     uint64
	active []int    // active connections per endpoint, for least-request
	_      [72]byte // to 192 bytes: each worker's state on its own cache lines
}

// NewCluster builds a cluster for the given number of workers.
func NewCluster(cfg ClusterConfig, workers int) (*Cluster, error) {
	if workers <= 0 {
		return nil, fmt.Errorf("cluster %q: worker count %d", cfg.Name, workers)
	}
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("cluster %q: no endpoints", cfg.Name)
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
	for i := range c.cfg.Endpoints {
		if c.cfg.Endpoints[i].Weight == 0 {
			c.cfg.Endpoints[i].Weight = 1
		}
		c.totalWeight += uint64(c.cfg.Endpoints[i].Weight)
	}
	for i := range c.perWorker {
		c.perWorker[i].active = make([]int, len(cfg.Endpoints))
		st := &c.perWorker[i].stats
		c.perWorker[i].io = byteCounters{&st.UpstreamCxRxBytesTotal, &st.UpstreamCxTxBytesTotal}
	}
	return c, nil
}

// Name is the cluster's name.
func (c *Cluster) Name() string { return c.cfg.Name }

// Config returns the cluster's configuration.
func (c *Cluster) Config() ClusterConfig { return c.cfg }

// Stats returns the cluster's stats on worker i.
func (c *Cluster) Stats(worker int) *ClusterStats { return &c.perWorker[worker].stats }

// connClosed accounts for a closed upstream connection of this worker.
func (st *clusterWorker) connClosed(c *Connection) {
	st.active[c.endpoint]--
	st.stats.UpstreamCxActive.Dec()
	st.stats.UpstreamCxDestroy.Inc()
	switch c.failure {
	case FailureConnectRefused:
		st.stats.UpstreamCxConnectFail.Inc()
	case FailureConnectTimeout:
		st.stats.UpstreamCxConnectFail.Inc()
		st.stats.UpstreamCxConnectTimeout.Inc()
	case FailureOverflow:
		// The proxy ran out of its own resources: not the backend's failure.
		st.stats.UpstreamCxOverflow.Inc()
	}
}

// ChooseEndpoint picks an endpoint for a new connection or request on worker w, with the
// cluster's load-balancing policy, and returns its index (see Endpoint). An HTTP pool
// picks first and then reuses or dials a connection to that endpoint. skip, if not nil,
// excludes endpoints (a retry's previous hosts); ChooseEndpoint then tries a few more
// picks and returns the last one if every pick was excluded, as Envoy's
// host_selection_retry_max_attempts does.
func (c *Cluster) ChooseEndpoint(w *Worker, skip func(endpoint int) bool) int {
	i := c.chooseEndpoint(w)
	if skip == nil || len(c.cfg.Endpoints) == 1 {
		return i
	}
	for try := 0; try < 2*len(c.cfg.Endpoints) && skip(i); try++ {
		i = c.chooseEndpoint(w)
	}
	return i
}

// Endpoint returns endpoint i of the cluster.
func (c *Cluster) Endpoint(i int) Endpoint { return c.cfg.Endpoints[i] }

// Endpoints is the number of endpoints.
func (c *Cluster) Endpoints() int { return len(c.cfg.Endpoints) }

// chooseEndpoint runs on worker w.
func (c *Cluster) chooseEndpoint(w *Worker) int {
	st := &c.perWorker[w.ID]
	n := len(c.cfg.Endpoints)
	if n == 1 {
		return 0
	}
	if c.cfg.LBPolicy == LeastRequest {
		// Envoy picks two at random and keeps the less loaded; with the small endpoint
		// sets of STATIC clusters a full scan from a rotating start is as cheap and exact.
		// Weights divide the load, as Envoy's weighted least-request does.
		start := int(st.rr % uint64(n))
		st.rr++
		best := start
		for i := 1; i < n; i++ {
			j := (start + i) % n
			if c.load(st, j) < c.load(st, best) {
				best = j
			}
		}
		return best
	}
	if c.totalWeight == uint64(n) {
		i := int(st.rr % uint64(n))
		st.rr++
		return i
	}
	// Weighted round robin: every totalWeight picks give each endpoint its weight.
	x := st.rr % c.totalWeight
	st.rr++
	for i, e := range c.cfg.Endpoints {
		if x < uint64(e.Weight) {
			return i
		}
		x -= uint64(e.Weight)
	}
	return n - 1
}

// load is an endpoint's active connections scaled by its weight.
func (c *Cluster) load(st *clusterWorker, i int) float64 {
	return float64(st.active[i]+1) / float64(c.cfg.Endpoints[i].Weight)
}

// Connect opens a non-blocking connection to one of the cluster's endpoints on worker w.
// The connection raises Connected when the handshake completes, or RemoteClose with a
// FailureReason when it is refused or times out (connect_timeout), or when the proxy has
// no fd or memory for its socket (FailureOverflow).
func (c *Cluster) Connect(w *Worker, cb ConnectionCallbacks) *Connection {
	return c.ConnectEndpoint(w, c.chooseEndpoint(w), cb)
}

// ConnectEndpoint is Connect to endpoint idx (from ChooseEndpoint).
func (c *Cluster) ConnectEndpoint(w *Worker, idx int, cb ConnectionCallbacks) *Connection {
	st := &c.perWorker[w.ID]
	addr := c.cfg.Endpoints[idx].Address
	st.stats.UpstreamCxTotal.Inc()
	conn := dialTCP(w, addr, c.cfg.PerConnectionBufferLimit)
	conn.AddCallbacks(cb)
	conn.io = &st.io
	st.active[idx]++
	st.stats.UpstreamCxActive.Inc()
	conn.owner, conn.endpoint = st, int32(idx)
	if conn.state == stateConnecting {
		conn.timer = &Timer{}
		conn.timer.Init(w, (*connectTimeout)(conn))
		conn.timer.Reset(c.cfg.ConnectTimeout)
	} else if conn.state == stateClosed {
		// The socket could not even be created: report it on the next loop turn so the
		// caller sees the same asynchronous failure as a refused connect.
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
	if c := (*Connection)(t); c.state == stateConnecting {
		c.failure = FailureConnectTimeout
		c.closeSocket(RemoteClose)
	}
}

// dialTCP starts a non-blocking connect. On an immediate error the returned connection is
// already closed, with FailureOverflow if the socket could not be created for lack of
// local resources and FailureConnectRefused otherwise, and no callbacks raised.
func dialTCP(w *Worker, addr netip.AddrPort, limit int) *Connection {
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
	if c.timer != nil {
		c.timer.Stop()
	}
	c.state = stateOpen
	c.raise(Connected)
	if c.state == stateClosed {
		return false
	}
	if c.BufferedBytes() > 0 {
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

package manager

import (
	"context"
	ctls "crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-proxy/portico/config"
	"github.com/portico-proxy/portico/config/xds"
	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/transport/tls"
)

// xDS over gRPC: the bootstrap's ads_config and lds/cds config sources that name a
// management server. Each server gets one config/xds client (ADS: one stream for every
// type; an api_config_source: one stream for its type). A response is translated by
// config's per-resource readers and applied on the manager's goroutine like a file's new
// version, so a server's update and a file's follow the same rules: per resource, last
// good version kept, NACK in Envoy's words.

// xdsState is the manager's xDS side.
type xdsState struct {
	version string // Portico's, for the node's user agent
	mu      sync.Mutex
	clients map[string]*xdsClient // by server key (serverKey)
	// first[typeURL] is closed once the first response of the type has been handled
	// (applied or rejected: either ends Envoy's initial fetch of a subscription).
	first map[string]chan struct{}
	// subscribed[typeURL] is set once the type has a subscription (EDS and RDS only
	// have one once a cluster or listener names something).
	subscribed map[string]*atomic.Bool
	cp         controlPlaneStats
}

type xdsClient struct {
	c      *xds.Client
	server *config.XDSServer
	types  []string
}

// controlPlaneStats are Envoy's control_plane.* stats.
type controlPlaneStats struct{ x *xdsState }

func (controlPlaneStats) StatsFamily() string      { return "control_plane" }
func (controlPlaneStats) StatsProcessWide() bool   { return true }
func (controlPlaneStats) StatsLabels() [][2]string { return nil }

// VisitStats reports connected_state: 1 when every management server's stream is up.
func (s controlPlaneStats) VisitStats(_ int, v engine.StatVisitor) {
	s.x.mu.Lock()
	connected := len(s.x.clients) > 0
	for _, c := range s.x.clients {
		if !c.c.Stats().ConnectedState {
			connected = false
		}
	}
	s.x.mu.Unlock()
	st := 0.0
	if connected {
		st = 1
	}
	v("connected_state", engine.KindGauge, st)
}

// xdsTypes are the types an ADS stream carries, in Envoy's order.
var xdsTypes = []string{xds.ClusterType, xds.EndpointType, xds.ListenerType, xds.RouteType}

// HasXDS reports whether the configuration subscribes to a management server.
func (m *Manager) HasXDS() bool {
	// ads_config alone: EDS clusters (static, or of a CDS file) subscribe on its stream
	// (eds.go).
	return m.cfg.LDSXDS != nil || m.cfg.CDSXDS != nil || m.cfg.ADS != nil || len(m.staticRouteNames()) > 0 // rds.go
}

// StartXDS starts the subscriptions to management servers (none without them) and the
// manager's goroutine, which applies what they receive; it may run before the server
// starts (see WaitInitial). version is Portico's, sent in the node's user agent.
func (m *Manager) StartXDS(version string) error {
	if !m.HasXDS() {
		return nil
	}
	x := &m.xds
	x.version = version
	x.clients = map[string]*xdsClient{}
	x.first = map[string]chan struct{}{}
	x.subscribed = map[string]*atomic.Bool{}
	for _, t := range xdsTypes {
		x.first[t] = make(chan struct{})
		x.subscribed[t] = &atomic.Bool{}
	}
	x.cp.x = x
	m.srv.AddStatsSource(x.cp)
	m.startLoop()
	for _, s := range []struct {
		sub *config.XDSSubscription
		typ string
	}{{m.cfg.CDSXDS, xds.ClusterType}, {m.cfg.LDSXDS, xds.ListenerType}} {
		if s.sub == nil {
			continue
		}
		x.subscribed[s.typ].Store(true)
		if _, err := m.xdsClientFor(s.sub.Server, s.typ); err != nil {
			return err
		}
	}
	if err := m.startEDS(); err != nil { // eds.go: the endpoints of the EDS clusters there are already
		return err
	}
	return m.startRoutes() // rds.go: the static listeners' route configs
}

// serverKey tells management servers apart: ADS is one stream for every type; each
// api_config_source a stream for its type.
func serverKey(s *config.XDSServer, typeURL string) string {
	if s.Aggregated {
		return "ads"
	}
	return fmt.Sprintf("%s|%t|%s", s.Cluster, s.Delta, typeURL)
}

// xdsClientFor returns the client for server carrying typeURL, starting it at first use.
func (m *Manager) xdsClientFor(s *config.XDSServer, typeURL string) (*xdsClient, error) {
	x := &m.xds
	key := serverKey(s, typeURL)
	x.mu.Lock()
	defer x.mu.Unlock()
	if c := x.clients[key]; c != nil {
		return c, nil
	}
	types := []string{typeURL}
	if s.Aggregated {
		// The ADS stream carries LDS and CDS only when lds_config / cds_config say
		// `ads: {}` (their wildcard request would otherwise ask for every listener
		// and cluster); EDS and RDS by name, once something names them.
		types = nil
		for _, t := range xdsTypes {
			switch {
			case t == xds.ClusterType && !onADS(m.cfg.CDSXDS), t == xds.ListenerType && !onADS(m.cfg.LDSXDS):
			default:
				types = append(types, t)
			}
		}
	}
	node := proto.Clone(m.cfg.NodeProto).(*corev3.Node)
	if node.GetUserAgentName() == "" {
		node.UserAgentName = "portico"
		node.UserAgentVersionType = &corev3.Node_UserAgentVersion{UserAgentVersion: x.version}
	}
	authority := s.Authority
	if authority == "" {
		authority = s.Cluster // Envoy's :authority for envoy_grpc
	}
	o := xds.Options{
		Target: "passthrough:///" + s.Cluster,
		Node:   node,
		Types:  types,
		Logger: m.log.With("xds_server", s.Field),
		DialOptions: []grpc.DialOption{
			grpc.WithContextDialer(m.dialCluster(s.Cluster)),
			grpc.WithAuthority(authority),
		},
	}
	if s.KeepaliveInterval > 0 {
		// gRPC raises an interval under 10 s to 10 s (a server may punish more).
		o.DialOptions = append(o.DialOptions, grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: s.KeepaliveInterval, Timeout: s.KeepaliveTimeout, PermitWithoutStream: true}))
	}
	if s.InitialStreamWindow > 0 {
		o.DialOptions = append(o.DialOptions, grpc.WithInitialWindowSize(int32(min(s.InitialStreamWindow, 1<<31-1))))
	}
	if s.InitialConnWindow > 0 {
		o.DialOptions = append(o.DialOptions, grpc.WithInitialConnWindowSize(int32(min(s.InitialConnWindow, 1<<31-1))))
	}
	if rl := s.RateLimit; rl != nil {
		o.RateLimit = &xds.RateLimit{MaxTokens: rl.MaxTokens, FillRate: rl.FillRate}
	}
	o.Delta, o.NodeOnEveryRequest, o.PerType = s.Delta, s.NodeOnEveryRequest, !s.Aggregated
	// Envoy counts update_failure on each subscription of a stream that fails.
	o.OnStreamFailure = func(error) {
		for _, typ := range types {
			if !x.subscribed[typ].Load() {
				continue
			}
			switch typ {
			case xds.ListenerType:
				m.lm.lds.updateFailure.Inc()
			case xds.ClusterType:
				m.cm.cds.updateFailure.Inc()
			case xds.RouteType:
				m.routeStreamFailure() // rds.go
			case xds.EndpointType:
				m.endpointStreamFailure(s) // eds.go
			}
		}
	}
	c := &xdsClient{server: s, types: types}
	c.c = xds.New(o, m.handleXDS)
	x.clients[key] = c
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := c.c.Run(m.ctx); err != nil && !errors.Is(err, context.Canceled) {
			m.log.Error("xds: the subscription stopped", "server", s.Field, "err", err)
		}
	}()
	return c, nil
}

// onADS reports whether a subscription rides the ADS stream.
func onADS(s *config.XDSSubscription) bool { return s != nil && s.Server.Aggregated }

// dialCluster dials the management server's static cluster: each attempt takes the next
// of its hosts (a DNS cluster's current ones), so a reconnect tries another server.
func (m *Manager) dialCluster(name string) func(context.Context, string) (net.Conn, error) {
	var next atomic.Uint64
	return func(ctx context.Context, _ string) (net.Conn, error) {
		c := m.srv.ClusterRegistry().Get(name)
		if c == nil {
			return nil, fmt.Errorf("xds: cluster %q is not defined", name)
		}
		hosts := c.Hosts()
		if len(hosts) == 0 {
			return nil, fmt.Errorf("xds: cluster %q has no hosts", name)
		}
		h := hosts[int(next.Add(1)-1)%len(hosts)]
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", h.Address().String())
		if err != nil {
			return nil, err
		}
		f, ok := c.Config().TransportSocket.(*tls.UpstreamFactory)
		if !ok {
			return conn, nil
		}
		// The cluster's transport_socket (UpstreamTlsContext): its certificates,
		// validation and SNI; ALPN h2 when it names none, as Envoy offers for an
		// HTTP/2 cluster (gRPC servers require it).
		cfg := f.ClientConfig()
		if len(cfg.NextProtos) == 0 {
			cfg.NextProtos = []string{"h2"}
		}
		tc := ctls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("xds: TLS to %s (cluster %q): %w", h.Address(), name, err)
		}
		return tc, nil
	}
}

// resubscribe sets the names requested of typeURL (EDS: the clusters' service names; RDS:
// the listeners' route configs) on the ADS stream. nil or empty names end the
// subscription.
func (m *Manager) resubscribe(typeURL string, names []string) {
	x := &m.xds
	if x.clients == nil || m.cfg.ADS == nil {
		return
	}
	x.mu.Lock()
	c := x.clients["ads"]
	x.mu.Unlock()
	if c == nil {
		return
	}
	if len(names) > 0 {
		x.subscribed[typeURL].Store(true)
	}
	c.c.Subscribe(typeURL, names)
}

// handleXDS is every client's Handler: it applies one response and returns the NACK's
// error, or nil to ACK. It runs on the client's goroutine; the change itself runs on the
// manager's.
func (m *Manager) handleXDS(typeURL, version string, res []*anypb.Any) (err error) {
	defer func() {
		if ch := m.xds.first[typeURL]; ch != nil {
			select {
			case <-ch:
			default:
				close(ch)
			}
		}
	}()
	switch typeURL {
	case xds.ClusterType:
		u, perr := config.ParseClusterResources("cds", version, res, m.workers, m.opts, m.currentClusters())
		if perr != nil {
			m.cm.cds.updateAttempt.Inc()
			m.cm.cds.updateRejected.Inc()
			return perr
		}
		return m.ApplyClusters(u) // which also requests the endpoints its clusters need
	case xds.ListenerType:
		u, perr := config.ParseListenerResources("lds", version, res, m.workers, m.opts, m.currentListeners())
		if perr != nil {
			m.lm.lds.updateAttempt.Inc()
			m.lm.lds.updateRejected.Inc()
			return perr
		}
		return m.ApplyListeners(u) // which also requests the routes its listeners need
	case xds.EndpointType:
		return m.applyEndpoints(version, res) // eds.go
	case xds.RouteType:
		return m.applyRoutes(version, res) // rds.go
	}
	return fmt.Errorf("unexpected type %q", typeURL)
}

// WaitInitial waits for the first version of each subscription, in Envoy's order (CDS,
// then the endpoints its clusters asked for, LDS, then the route configs its listeners
// asked for), each for at most its initial_fetch_timeout (0: no bound), as Envoy's
// server does before it starts its workers. It reports what timed out.
func (m *Manager) WaitInitial() []string {
	if !m.HasXDS() {
		return nil
	}
	var late []string
	wait := func(typ string, d time.Duration) {
		if !m.xds.subscribed[typ].Load() {
			return
		}
		ch := m.xds.first[typ]
		if d <= 0 {
			select {
			case <-ch:
			case <-m.ctx.Done():
			}
			return
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ch:
		case <-t.C:
			late = append(late, typ)
		case <-m.ctx.Done():
		}
	}
	if s := m.cfg.CDSXDS; s != nil {
		wait(xds.ClusterType, s.InitialFetchTimeout)
		wait(xds.EndpointType, s.InitialFetchTimeout)
	} else if s := m.edsSource(); s != nil { // eds.go: static EDS clusters, or a CDS file's
		wait(xds.EndpointType, s.InitialFetchTimeout)
	}
	if s := m.cfg.LDSXDS; s != nil {
		wait(xds.ListenerType, s.InitialFetchTimeout)
		wait(xds.RouteType, s.InitialFetchTimeout)
	} else {
		wait(xds.RouteType, m.routeFetchTimeout()) // rds.go: static listeners' routes
	}
	return late
}

// XDSStats are the clients' counters, by server field, for tests and the admin.
func (m *Manager) XDSStats() map[string]xds.Stats {
	out := map[string]xds.Stats{}
	m.xds.mu.Lock()
	defer m.xds.mu.Unlock()
	for k, c := range m.xds.clients {
		out[k] = c.c.Stats()
	}
	return out
}

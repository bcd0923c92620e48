package config

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/chain"
	"github.com/portico-proxy/portico/filters/http/router"
	"github.com/portico-proxy/portico/filters/listener/httpinspector"
	"github.com/portico-proxy/portico/filters/listener/tlsinspector"
	"github.com/portico-proxy/portico/filters/network/httpconnmgr"
)

// translator turns a validated Bootstrap into Config. It reports problems through c with
// canonical paths and keeps going, so one run lists them all; what it builds from a
// configuration with errors is discarded by Parse.
type translator struct {
	c         *collector
	workers   int
	checkOnly bool // see Options.CheckOnly
	registry  *engine.ClusterRegistry
	cfg       *Config
	// clusters by name; a cluster that failed to build maps to nil so that references
	// to it do not add a second, misleading "not defined" error.
	clusters map[string]*engine.Cluster
	defined  string            // definedClusters, once made: the clusters are all read before it is needed
	up       *router.Upstreams // the HTTP pools, made for the first router (see upstreams)
	dyn      *resourceState    // resources.go: set when translating one LDS resource
	// grpcClusters are the static clusters the bootstrap's gRPC services name, by name,
	// with where (xds_source.go): they, and only they, may speak HTTP/2.
	grpcClusters  map[string]string
	grpcH2        map[string]*corev3.Http2ProtocolOptions // their HTTP/2 options, by name
	adsConfigured bool                                    // dynamic_resources.ads_config is set (even if wrong)
	// eds.go: the EDS clusters' settings, by engine cluster; their eds_config, read once
	// ads_config is known; edsStandalone: no bootstrap to know it (a CDS file checked alone).
	eds           map[*engine.Cluster]*EDSConfig
	pendingEDS    []pendingEDS
	edsStandalone bool
	// routes are the process's RDS route providers (rds.go), shared by every connection
	// manager naming the same route configuration.
	routes *httpconnmgr.RouteProviders
}

// warnf records a warning: something accepted that does not do what it says in Envoy.
func (t *translator) warnf(path, format string, args ...any) {
	t.cfg.Warnings = append(t.cfg.Warnings, t.c.userPath(path)+": "+fmt.Sprintf(format, args...))
}

func (t *translator) errorf(path, format string, args ...any) {
	t.c.addCanonical(path, format, args...)
}

// unsupported reports a feature Portico lacks at path; value names the refused value
// when only some are (see FieldError.Feature).
func (t *translator) unsupported(path, value, format string, args ...any) {
	t.c.unsupported(path, value, format, args...)
}

func (t *translator) bootstrap(bs *bootstrapv3.Bootstrap) *Config {
	t.cfg = &Config{Chains: make(map[string]*chain.Manager, len(bs.GetStaticResources().GetListeners()))}
	t.cfg.RouteProviders = t.routes
	t.clusters = map[string]*engine.Cluster{}
	t.grpcClusters = grpcClusterNames(bs) // xds_source.go
	t.grpcH2 = map[string]*corev3.Http2ProtocolOptions{}
	if a := bs.GetAdmin(); a.GetAddress() != nil {
		if ap, ok := t.socketAddress(a.GetAddress(), "admin.address", true); ok {
			t.cfg.Admin = ap
		}
	}
	t.bootstrapCompat(bs)
	sr := bs.GetStaticResources()
	// Clusters first: listeners' tcp_proxy filters refer to them by name.
	clusterAt := map[string]string{}
	for i, cl := range sr.GetClusters() {
		at := index("static_resources.clusters", i)
		name := cl.GetName()
		if prev, dup := clusterAt[name]; dup && name != "" {
			t.errorf(field(at, "name"), "duplicate cluster name %q (also %s)", name, t.c.userPath(prev))
			continue
		}
		clusterAt[name] = at
		m := t.mark()
		c := t.cluster(cl, at)
		if name != "" {
			t.clusters[name] = c
		}
		if c != nil {
			t.cfg.Clusters = append(t.cfg.Clusters, c)
			t.staticCluster(cl, c, m) // resources.go
		}
	}
	t.dynamicClusters(bs) // dynamic.go: node, dynamic_resources, the CDS file
	t.resolveEDS()        // eds.go: the static EDS clusters' eds_config, now that ads_config is read
	t.cfg.grpcClusters, t.cfg.grpcH2 = t.grpcClusters, t.grpcH2
	const listenersAt = "static_resources.listeners"
	listeners := sr.GetListeners()
	listenerAt := make(map[string]int, len(listeners)) // by name
	addrAt := make(map[netip.AddrPort]int, len(listeners))
	t.cfg.Listeners = make([]engine.ListenerConfig, 0, len(listeners))
	names := listenerNames(listeners)
	for i, l := range listeners {
		at := index(listenersAt, i)
		name := l.GetName()
		if name == "" {
			// Envoy makes up a UUID; Portico's stats, logs and `explain` need a stable
			// name, so it takes the one Istio gives (ADDRESS_PORT).
			name = names[i]
			l.Name = name
		} else if prev, dup := listenerAt[name]; dup {
			t.errorf(field(at, "name"), "duplicate listener name %q (also %s)", name, t.c.userPath(index(listenersAt, prev)))
		} else {
			listenerAt[name] = i
		}
		m := t.mark()
		if lc, ok := t.listener(l, at); ok {
			// Two listeners may not share a concrete address, binding or not (Envoy
			// rejects it too); port 0 asks the kernel for a fresh port each time.
			if lc.Address.Port() != 0 {
				if prev, dup := addrAt[lc.Address]; dup {
					t.errorf(field(at, "address"), "address %s is already used by %s", lc.Address, t.c.userPath(index(listenersAt, prev)))
				} else {
					addrAt[lc.Address] = i
				}
			}
			t.cfg.Listeners = append(t.cfg.Listeners, lc)
			if name != "" {
				t.cfg.Chains[name] = lc.FilterChains.(*chain.Manager)
			}
			t.staticListener(l, lc, m) // resources.go
		}
		if !t.c.errorsUnder(at) {
			// Nothing more is read from this listener's proto (result walks the
			// bootstrap only along the paths of errors): let it be collected while the
			// remaining listeners are translated.
			listeners[i] = nil
		}
	}
	t.dynamicListeners() // dynamic.go: the LDS file, after the static names are known
	return t.cfg
}

// listenerNames gives each listener without a name a stable one, ADDRESS_PORT as Istio
// names its listeners (`0.0.0.0_10000`), made unique against every other name with a
// suffix (`_2`, `_3` ...) in the order of the file.
func listenerNames(ls []*listenerv3.Listener) []string {
	names := make([]string, len(ls))
	taken := make(map[string]bool, len(ls))
	for _, l := range ls {
		if l.GetName() != "" {
			taken[l.GetName()] = true
		}
	}
	for i, l := range ls {
		if l.GetName() != "" {
			names[i] = l.GetName()
			continue
		}
		base := "listener_" + strconv.Itoa(i)
		if sa := l.GetAddress().GetSocketAddress(); sa != nil {
			base = sa.GetAddress() + "_" + strconv.FormatUint(uint64(sa.GetPortValue()), 10)
		}
		name := base
		for n := 2; taken[name]; n++ {
			name = base + "_" + strconv.Itoa(n)
		}
		taken[name] = true
		names[i] = name
	}
	return names
}

// socketAddress reads an Address that must be an IP literal and a port. A missing
// socket_address is reported only when the oneof is empty: another member (pipe,
// envoy_internal_address) was already reported as unsupported.
func (t *translator) socketAddress(a *corev3.Address, at string, portZeroOK bool) (netip.AddrPort, bool) {
	if a.GetAddress() == nil {
		t.errorf(at, "socket_address is required")
		return netip.AddrPort{}, false
	}
	sa := a.GetSocketAddress()
	if sa == nil {
		return netip.AddrPort{}, false
	}
	at = field(at, "socket_address")
	ok := true
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		t.unsupported(field(at, "protocol"), sa.GetProtocol().String(), "%s is not supported by Portico (TCP only)", sa.GetProtocol())
		ok = false
	}
	ip, err := netip.ParseAddr(sa.GetAddress())
	if err != nil {
		if sa.GetAddress() != "" { // empty: protoc-gen-validate already said it is required
			t.errorf(field(at, "address"), "%q is not an IP address (Portico does not resolve names here)", sa.GetAddress())
		}
		ok = false
	}
	if _, named := sa.GetPortSpecifier().(*corev3.SocketAddress_NamedPort); named {
		return netip.AddrPort{}, false // reported as unsupported
	}
	if sa.GetPortSpecifier() == nil {
		return netip.AddrPort{}, false // protoc-gen-validate: one of port_value, named_port
	}
	port := sa.GetPortValue()
	if port > 65535 {
		return netip.AddrPort{}, false // reported by protoc-gen-validate
	}
	if port == 0 && !portZeroOK {
		t.errorf(field(at, "port_value"), "a port is required")
		ok = false
	}
	return netip.AddrPortFrom(ip, uint16(port)), ok
}

// MaxDuration is the longest duration Portico accepts for a timeout it translates into
// the engine (connect_timeout, idle_timeout, listener_filters_timeout). The engine keeps a
// timer's deadline as int64 Unix nanoseconds, now+d, which overflows for d beyond about 230
// years from today, while google.protobuf.Duration allows ±10,000 years. Ten years is far
// past any real timeout (the longest in 110 published Envoy bootstraps is 3600s; "never" is
// written 0s where a field allows it) and leaves the engine two centuries of headroom.
const MaxDuration = 10 * 365 * 24 * time.Hour

const maxDurationText = "87600h (10 years)"

// timeout translates a Duration the engine arms a timer with: unset gives def, and a value
// above MaxDuration is an error at `at` (def is used). A negative one is an error too when
// checkNegative is set; fields with a protoc-gen-validate bound (connect_timeout > 0s) have
// it reported there already.
func (t *translator) timeout(d *durationpb.Duration, def time.Duration, at string, checkNegative bool) time.Duration {
	if d == nil {
		return def
	}
	s, n := d.GetSeconds(), d.GetNanos()
	if s < 0 || n < 0 {
		if checkNegative {
			t.errorf(at, "%s is negative (0s turns the timeout off)", formatDuration(d))
		}
		return def
	}
	if maxS := int64(MaxDuration / time.Second); s > maxS || s == maxS && n > 0 {
		t.errorf(at, "%s is above the maximum of %s", formatDuration(d), maxDurationText)
		return def
	}
	return d.AsDuration()
}

// formatDuration writes d as in the file: seconds with a fraction only when there is one.
func formatDuration(d *durationpb.Duration) string {
	s, n := d.GetSeconds(), d.GetNanos()
	sign := ""
	if s < 0 || n < 0 {
		sign, s, n = "-", -s, -n
	}
	out := sign + strconv.FormatInt(s, 10)
	if n != 0 {
		out += "." + strings.TrimRight(fmt.Sprintf("%09d", n), "0")
	}
	return out + "s"
}

func (t *translator) cluster(cl *clusterv3.Cluster, at string) *engine.Cluster {
	t.edsConfigUnused(cl, at) // eds.go
	if cl.GetClusterType() == nil && cl.GetType() == clusterv3.Cluster_ORIGINAL_DST {
		return t.originalDstCluster(cl, at) // cluster_health.go
	}
	ok := true
	typeOK := true
	dnsc := t.dnsCluster(cl, at) // nil unless STRICT_DNS or LOGICAL_DNS (cluster_dns.go)
	eds := cl.GetClusterType() == nil && cl.GetType() == clusterv3.Cluster_EDS
	if cl.GetClusterType() == nil && cl.GetType() != clusterv3.Cluster_STATIC && dnsc == nil && !eds {
		t.unsupported(field(at, "type"), cl.GetType().String(), "%s clusters are not supported by Portico (STATIC, STRICT_DNS, LOGICAL_DNS or EDS)", cl.GetType())
		ok, typeOK = false, false
	}
	cc := engine.ClusterConfig{
		Name:                     cl.GetName(),
		ConnectTimeout:           engine.DefaultConnectTimeout,
		PerConnectionBufferLimit: engine.DefaultBufferLimit,
	}
	cc.ConnectTimeout = t.timeout(cl.GetConnectTimeout(), engine.DefaultConnectTimeout, field(at, "connect_timeout"), false)
	if v := cl.GetPerConnectionBufferLimitBytes(); v != nil {
		cc.PerConnectionBufferLimit = bufferLimit(v.GetValue())
	}
	switch lp := cl.GetLoadBalancingPolicy(); {
	case lp != nil:
		// It replaces lb_policy (whose LOAD_BALANCING_POLICY_CONFIG only says so).
		var lpOK bool
		if cc.LBPolicy, lpOK = t.lbPolicy(lp, at); !lpOK {
			ok = false
		}
	case cl.GetLbPolicy() == clusterv3.Cluster_ROUND_ROBIN:
		cc.LBPolicy = engine.RoundRobin
	case cl.GetLbPolicy() == clusterv3.Cluster_LEAST_REQUEST:
		cc.LBPolicy = engine.LeastRequest
	default:
		t.unsupported(field(at, "lb_policy"), cl.GetLbPolicy().String(), "%s is not supported by Portico (ROUND_ROBIN or LEAST_REQUEST)", cl.GetLbPolicy())
		ok = false
	}
	if !typeOK || cl.GetClusterType() != nil {
		// The endpoints of a cluster type Portico lacks (cluster_type) are not read: errors
		// about them would only follow from the type.
		return nil
	}
	if eds {
		return t.edsCluster(cl, &cc, at, ok) // eds.go: no hosts until its endpoints arrive
	}
	// A STATIC cluster without load_assignment, or with no endpoints in it, has no hosts
	// (Istio's BlackHoleCluster): its connections fail as "no healthy upstream".
	eps, eok := t.endpoints(cl.GetLoadAssignment(), field(at, "load_assignment"), dnsc, false)
	if !eok {
		ok = false
	}
	cc.Endpoints = eps
	c := t.newCluster(cl, &cc, at, ok)
	if c == nil {
		return nil
	}
	dnsc.attach(c)
	if !t.clusterHealth(cl, c, at) { // health_checks, outlier_detection (cluster_health.go)
		return nil
	}
	return c
}

// newCluster translates what every kind of cluster shares (HTTP options, the accepted
// compatibility fields, the transport socket) onto cc and makes the engine cluster; ok is
// what the caller's own part of the translation found. It returns nil after an error.
func (t *translator) newCluster(cl *clusterv3.Cluster, cc *engine.ClusterConfig, at string, ok bool) *engine.Cluster {
	if !t.clusterHTTP(cl, cc, at) {
		ok = false
	}
	if !t.clusterCompat(cl, cc, at) { // compat.go: tcp_keepalive, warnings
		ok = false
	}
	if !t.clusterTransport(cl, cc, at) { // tls_upstream.go
		ok = false
	}
	if !ok {
		return nil
	}
	c, err := engine.NewCluster(*cc, t.workers)
	if err != nil {
		t.errorf(at, "%v", err)
		return nil
	}
	// Every cluster gets its HTTP side (pools, HTTP stats) now, so that a router finds it
	// whenever the cluster is published, also one that arrives at run time.
	router.Attach(c)
	return c
}

func (t *translator) listener(l *listenerv3.Listener, at string) (engine.ListenerConfig, bool) {
	ok := true
	lc := engine.ListenerConfig{
		Name:                             l.GetName(),
		StatPrefix:                       l.GetStatPrefix(),
		ListenerFiltersTimeout:           engine.DefaultListenerFiltersTimeout,
		ContinueOnListenerFiltersTimeout: l.GetContinueOnListenerFiltersTimeout(),
		PerConnectionBufferLimit:         engine.DefaultBufferLimit,
		Transparent:                      l.GetTransparent().GetValue(),
		Freebind:                         l.GetFreebind().GetValue(),
		ExactBalance:                     l.GetConnectionBalanceConfig().GetExactBalance() != nil,
		Backlog:                          int(l.GetTcpBacklogSize().GetValue()),
		MaxAcceptPerEvent:                int(l.GetMaxConnectionsToAcceptPerSocketEvent().GetValue()),
		UseOriginalDst:                   l.GetUseOriginalDst().GetValue(),
		DrainModifyOnly:                  l.GetDrainType() == listenerv3.Listener_MODIFY_ONLY,
	}
	if l.GetAddress() == nil {
		// An internal listener has none (it is reported as unsupported).
		if !t.c.reported(field(at, "internal_listener")) {
			t.errorf(field(at, "address"), "required")
		}
		ok = false
	} else if ap, aok := t.socketAddress(l.GetAddress(), field(at, "address"), true); aok {
		lc.Address = ap
	} else {
		ok = false
	}
	if v := l.GetBindToPort(); v != nil {
		lc.NoBindToPort = !v.GetValue()
	}
	// Envoy: enable_reuse_port wins when set; otherwise the deprecated reuse_port can only
	// turn it on, and the default is on.
	if v := l.GetEnableReusePort(); v != nil {
		lc.NoReusePort = !v.GetValue()
	}
	lc.ListenerFiltersTimeout = t.timeout(l.GetListenerFiltersTimeout(), engine.DefaultListenerFiltersTimeout, field(at, "listener_filters_timeout"), true)
	if v := l.GetPerConnectionBufferLimitBytes(); v != nil {
		lc.PerConnectionBufferLimit = bufferLimit(v.GetValue())
	}

	for i, lf := range l.GetListenerFilters() {
		f, fok := t.listenerFilter(lf, index(field(at, "listener_filters"), i))
		if !fok {
			ok = false
			continue
		}
		lc.ListenerFilters = append(lc.ListenerFilters, f)
	}
	if lc.UseOriginalDst {
		// As Envoy's buildOriginalDstListenerFilter: use_original_dst appends an
		// original_dst filter after the configured ones, whether or not one is listed.
		lc.ListenerFilters = append(lc.ListenerFilters, newOriginalDst())
	}

	if len(l.GetFilterChains()) == 0 && l.GetDefaultFilterChain() == nil {
		// A UDP listener has none (UDP is reported as unsupported).
		udp := l.GetAddress().GetSocketAddress().GetProtocol() == corev3.SocketAddress_UDP
		if !udp && !t.c.reported(field(at, "filter_chains")) && !t.c.reported(field(at, "default_filter_chain")) {
			t.errorf(at, "no filter chains specified (need filter_chains or default_filter_chain)")
		}
		return lc, false
	}
	t.inspectorWarnings(l, lc.ListenerFilters, at)
	var chains []chain.Chain
	for i, fc := range l.GetFilterChains() {
		cat := index(field(at, "filter_chains"), i)
		m, mok := t.match(fc.GetFilterChainMatch(), field(cat, "filter_chain_match"))
		fch, fok := t.chainFor(fc, cat, statName(&lc)) // resources.go: reuses an unchanged chain
		if !mok || !fok {
			ok = false
			continue
		}
		chains = append(chains, chain.Chain{Name: fc.GetName(), Match: m, Chain: fch})
	}
	var def *engine.FilterChain
	if dfc := l.GetDefaultFilterChain(); dfc != nil {
		dat := field(at, "default_filter_chain")
		if m := dfc.GetFilterChainMatch(); m != nil && proto.Size(m) != 0 {
			// Envoy ignores it; ignoring silently would hide a mistake. An empty one
			// (`filter_chain_match: {}`, as Istio writes) says nothing: accepted.
			t.errorf(field(dat, "filter_chain_match"), "has no effect on the default filter chain; remove it")
			ok = false
		}
		fch, fok := t.chainFor(dfc, dat, statName(&lc))
		if !fok {
			ok = false
		}
		def = fch
	}
	if !ok || l.GetFilterChainMatcher() != nil {
		// filter_chain_matcher, reported as unsupported, replaces the filter_chain_match
		// of the chains: comparing those would only add confusing errors.
		return lc, false
	}
	mgr, err := chain.Build(chains, def)
	if err != nil {
		t.errorf(field(at, "filter_chains"), "%v", err)
		return lc, false
	}
	lc.FilterChains = mgr
	return lc, true
}

// inspectorWarnings warns about filter_chain_match fields no listener filter fills in: a
// chain that needs the SNI, "tls" or an ALPN list without tls_inspector (or http_inspector
// for application_protocols) is never chosen. Envoy takes such a listener silently.
func (t *translator) inspectorWarnings(l *listenerv3.Listener, lfs []engine.ListenerFilter, at string) {
	has := map[string]bool{}
	for _, f := range lfs {
		has[f.Name()] = true
	}
	for i, fc := range l.GetFilterChains() {
		m := fc.GetFilterChainMatch()
		mat := field(index(field(at, "filter_chains"), i), "filter_chain_match")
		if len(m.GetServerNames()) > 0 && !has[tlsinspector.Name] {
			t.warnf(field(mat, "server_names"), "no tls_inspector listener filter reads the SNI, so this chain is never chosen")
		}
		if m.GetTransportProtocol() == "tls" && !has[tlsinspector.Name] {
			t.warnf(field(mat, "transport_protocol"), "\"tls\" is set by the tls_inspector listener filter, which this listener lacks: this chain is never chosen")
		}
		if len(m.GetApplicationProtocols()) > 0 && !has[tlsinspector.Name] && !has[httpinspector.Name] {
			t.warnf(field(mat, "application_protocols"), "no tls_inspector or http_inspector listener filter detects the protocol, so this chain is never chosen")
		}
	}
}

// match translates a filter_chain_match; nil means "match everything".
func (t *translator) match(m *listenerv3.FilterChainMatch, at string) (chain.Match, bool) {
	var out chain.Match
	if m == nil {
		return out, true
	}
	ok := true
	if m.GetAddressSuffix() != "" {
		t.errorf(field(at, "address_suffix"), "not implemented (Envoy rejects it too)")
		ok = false
	}
	if m.GetSuffixLen() != nil {
		t.errorf(field(at, "suffix_len"), "not implemented (Envoy rejects it too)")
		ok = false
	}
	out.DestinationPort = m.GetDestinationPort().GetValue()
	cidrs := func(name string, rs []*corev3.CidrRange) []netip.Prefix {
		var ps []netip.Prefix
		for i, r := range rs {
			p, pok := t.cidr(r, index(field(at, name), i))
			if !pok {
				ok = false
				continue
			}
			ps = append(ps, p)
		}
		return ps
	}
	out.PrefixRanges = cidrs("prefix_ranges", m.GetPrefixRanges())
	out.DirectSourcePrefixRanges = cidrs("direct_source_prefix_ranges", m.GetDirectSourcePrefixRanges())
	out.SourcePrefixRanges = cidrs("source_prefix_ranges", m.GetSourcePrefixRanges())
	switch m.GetSourceType() {
	case listenerv3.FilterChainMatch_ANY:
		out.SourceType = chain.SourceAny
	case listenerv3.FilterChainMatch_SAME_IP_OR_LOOPBACK:
		out.SourceType = chain.SourceSameIPOrLoopback
	case listenerv3.FilterChainMatch_EXTERNAL:
		out.SourceType = chain.SourceExternal
	default:
		t.errorf(field(at, "source_type"), "unknown source type %d", m.GetSourceType())
		ok = false
	}
	out.SourcePorts = append([]uint32(nil), m.GetSourcePorts()...)
	out.ServerNames = append([]string(nil), m.GetServerNames()...)
	out.TransportProtocol = m.GetTransportProtocol()
	out.ApplicationProtocols = append([]string(nil), m.GetApplicationProtocols()...)
	return out, ok
}

// cidr parses a CidrRange and masks it, so that 10.0.0.1/24 and 10.0.0.0/24 are the same
// range, as in Envoy.
func (t *translator) cidr(r *corev3.CidrRange, at string) (netip.Prefix, bool) {
	ip, err := netip.ParseAddr(r.GetAddressPrefix())
	if err != nil || ip.Zone() != "" {
		t.errorf(field(at, "address_prefix"), "malformed IP address: %q", r.GetAddressPrefix())
		return netip.Prefix{}, false
	}
	bits := int(r.GetPrefixLen().GetValue())
	if bits > ip.BitLen() {
		t.errorf(field(at, "prefix_len"), "%d is longer than an IPv%d address (%d bits)", bits, map[bool]int{true: 4, false: 6}[ip.Is4()], ip.BitLen())
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(ip, bits).Masked(), true
}

// statName is the listener's stats scope, as engine.Listener.StatName gives it.
func statName(lc *engine.ListenerConfig) string {
	if lc.StatPrefix != "" {
		return lc.StatPrefix
	}
	return lc.Name
}

// filterChain builds a chain's transport socket and network filters.
func (t *translator) filterChain(fc *listenerv3.FilterChain, at, listenerStat string) (*engine.FilterChain, bool) {
	ok := true
	out := &engine.FilterChain{Name: fc.GetName()}
	if !t.downstreamTransport(fc, at, listenerStat, out) {
		ok = false
	}
	filters := fc.GetFilters()
	for i, f := range filters {
		fat := index(field(at, "filters"), i)
		nf, terminal, fok := t.networkFilter(f, fat)
		if !fok {
			ok = false
			continue
		}
		// Envoy's checkTerminalFilters: a terminal filter anywhere but last, or a
		// non-terminal one last, makes the chain invalid.
		if terminal && i != len(filters)-1 {
			t.errorf(fat, "terminal filter %q must be the last filter in a network filter chain", nf.Name())
			ok = false
		}
		if !terminal && i == len(filters)-1 {
			t.errorf(fat, "non-terminal filter %q is the last filter in a network filter chain", nf.Name())
			ok = false
		}
		out.Filters = append(out.Filters, nf)
	}
	return out, ok
}

// typedConfig unpacks a typed_config; the JSON pass has already made sure the type is one
// Portico supports in this place.
func (t *translator) typedConfig(a *anypb.Any, at string) (proto.Message, bool) {
	m, err := t.c.unpack(a)
	// Translation reads each typed_config once; later stages only need the cached
	// message if an error lies under it, and then unpack it again.
	delete(t.c.anys, a)
	if err != nil {
		t.errorf(at, "%v", err)
		return nil, false
	}
	return m, true
}

// bufferLimit translates per_connection_buffer_limit_bytes: an explicit 0 means no limit
// in Envoy (its watermarks are off), not the default.
func bufferLimit(v uint32) int {
	if v == 0 {
		return engine.NoBufferLimit
	}
	return int(v)
}

func (t *translator) closer(v any) {
	if c, ok := v.(io.Closer); ok {
		t.cfg.Closers = append(t.cfg.Closers, c)
	}
}

// definedClusters lists the cluster names for "not defined" messages.
func (t *translator) definedClusters() string {
	if t.defined == "" {
		t.defined = t.listClusters()
	}
	return t.defined
}

func (t *translator) listClusters() string {
	names := make([]string, 0, len(t.clusters))
	for n := range t.clusters {
		names = append(names, fmt.Sprintf("%q", n))
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "no clusters are defined"
	}
	return "defined: " + strings.Join(names, ", ")
}

//lint:file-ignore SA1019 the DNS fields of Cluster are deprecated for the DnsCluster extension, but Envoy still reads them and every published config uses them

package config

import (
	"context"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	caresv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/network/dns_resolver/cares/v3"
	getaddrinfov3 "github.com/envoyproxy/go-control-plane/envoy/extensions/network/dns_resolver/getaddrinfo/v3"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/upstream/dns"
)

// The DNS resolver extensions Portico maps (typed_dns_resolver_config).
const (
	caresResolverType       = "envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig"
	getaddrinfoResolverType = "envoy.extensions.network.dns_resolver.getaddrinfo.v3.GetAddrInfoDnsResolverConfig"
)

// dnsClusterBuild is what cluster() gathers for a STRICT_DNS or LOGICAL_DNS cluster: its
// endpoints become resolution targets instead of static hosts.
type dnsClusterBuild struct {
	t   *translator
	at  string
	cfg dns.Config
	n   int // lb_endpoints seen
	ok  bool
}

// dnsCluster reads a DNS cluster's settings; nil for any other cluster type.
func (t *translator) dnsCluster(cl *clusterv3.Cluster, at string) *dnsClusterBuild {
	if cl.GetClusterType() != nil {
		return nil
	}
	d := &dnsClusterBuild{t: t, at: at, ok: true}
	switch cl.GetType() {
	case clusterv3.Cluster_STRICT_DNS:
		d.cfg.Kind = dns.Strict
	case clusterv3.Cluster_LOGICAL_DNS:
		d.cfg.Kind = dns.Logical
	default:
		return nil
	}
	switch cl.GetDnsLookupFamily() {
	case clusterv3.Cluster_V4_ONLY:
		d.cfg.Family = dns.V4Only
	case clusterv3.Cluster_V6_ONLY:
		d.cfg.Family = dns.V6Only
	case clusterv3.Cluster_V4_PREFERRED:
		d.cfg.Family = dns.V4Preferred
	case clusterv3.Cluster_ALL:
		d.cfg.Family = dns.All
	default:
		d.cfg.Family = dns.Auto
	}
	// protoc-gen-validate: dns_refresh_rate > 1ms, dns_jitter >= 0, base_interval > 1ms.
	d.cfg.RefreshRate = t.timeout(cl.GetDnsRefreshRate(), dns.DefaultRefreshRate, field(at, "dns_refresh_rate"), false)
	d.cfg.Jitter = t.timeout(cl.GetDnsJitter(), 0, field(at, "dns_jitter"), false)
	if fr := cl.GetDnsFailureRefreshRate(); fr != nil {
		fat := field(at, "dns_failure_refresh_rate")
		d.cfg.FailureBase = t.timeout(fr.GetBaseInterval(), 0, field(fat, "base_interval"), false)
		d.cfg.FailureMax = t.timeout(fr.GetMaxInterval(), 10*d.cfg.FailureBase, field(fat, "max_interval"), false)
		if d.cfg.FailureMax < d.cfg.FailureBase {
			t.errorf(field(fat, "max_interval"), "must be at least base_interval (%s)", d.cfg.FailureBase)
			d.ok = false
		}
	}
	d.cfg.RespectTTL = cl.GetRespectDnsTtl()
	d.cfg.WaitForWarm = true
	if w := cl.GetWaitForWarmOnInit(); w != nil {
		d.cfg.WaitForWarm = w.GetValue()
	}
	rc, ok := t.dnsResolver(cl, at)
	d.ok = d.ok && ok
	d.cfg.Resolver = dns.NewResolver(rc)
	return d
}

// dnsResolver picks the resolver as Envoy does: typed_dns_resolver_config, else
// dns_resolution_config, else the deprecated dns_resolvers and use_tcp_for_dns_lookups;
// nothing set: c-ares with the system's resolv.conf.
func (t *translator) dnsResolver(cl *clusterv3.Cluster, at string) (dns.ResolverConfig, bool) {
	var rc dns.ResolverConfig
	ok := true
	servers := func(list []*corev3.Address, lat string) {
		for i, a := range list {
			// Port 0 is c-ares' default, 53.
			if ap, aok := t.socketAddress(a, index(lat, i), true); aok {
				rc.Servers = append(rc.Servers, ap)
			} else {
				ok = false
			}
		}
	}
	options := func(o *corev3.DnsResolverOptions) {
		rc.UseTCP = rc.UseTCP || o.GetUseTcpForDnsLookups()
		rc.NoSearch = o.GetNoDefaultSearchDomain()
	}
	if tc := cl.GetTypedDnsResolverConfig(); tc != nil {
		tat := field(field(at, "typed_dns_resolver_config"), "typed_config")
		m, _ := t.c.unpack(tc.GetTypedConfig()) // an undecodable one was reported by the checks
		switch c := m.(type) {
		case *caresv3.CaresDnsResolverConfig:
			servers(c.GetResolvers(), field(tat, "resolvers"))
			options(c.GetDnsResolverOptions())
			rc.FallbackOnly = c.GetUseResolversAsFallback()
			rc.Rotate = c.GetRotateNameservers()
			if v := c.GetQueryTimeoutSeconds(); v != nil {
				rc.Timeout = time.Duration(min(v.GetValue(), 3600)) * time.Second
			}
			if v := c.GetQueryTries(); v != nil {
				rc.Tries = int(min(v.GetValue(), 100))
			}
		case *getaddrinfov3.GetAddrInfoDnsResolverConfig:
			rc.System = true
			if v := c.GetNumRetries(); v != nil {
				rc.SystemRetries = int(min(v.GetValue(), 100))
			}
		case nil:
			t.errorf(tat, "required")
			ok = false
		default:
			t.errorf(tat, "DNS resolver type %q is not supported by Portico (%s or %s)", tc.GetTypedConfig().GetTypeUrl(),
				typeURLPrefix+caresResolverType, typeURLPrefix+getaddrinfoResolverType)
			ok = false
		}
		return rc, ok
	}
	if drc := cl.GetDnsResolutionConfig(); drc != nil {
		servers(drc.GetResolvers(), field(field(at, "dns_resolution_config"), "resolvers"))
		options(drc.GetDnsResolverOptions())
		return rc, ok
	}
	servers(cl.GetDnsResolvers(), field(at, "dns_resolvers"))
	rc.UseTCP = cl.GetUseTcpForDnsLookups()
	return rc, ok
}

// endpoint reads one lb_endpoint of a DNS cluster: its address may be a name.
func (d *dnsClusterBuild) endpoint(lbe *endpointv3.LbEndpoint, at string) {
	d.n++
	if d.n == 2 && d.cfg.Kind == dns.Logical {
		d.t.errorf(at, "a LOGICAL_DNS cluster has a single endpoint (Envoy: a single locality_lb_endpoint and a single lb_endpoint)")
		d.ok = false
	}
	ep := lbe.GetEndpoint()
	sa := ep.GetAddress().GetSocketAddress()
	if sa == nil {
		if ep.GetAddress().GetAddress() == nil {
			d.t.errorf(field(field(at, "endpoint"), "address"), "socket_address is required")
		}
		d.ok = false // another member: reported as unsupported
		return
	}
	sat := field(field(field(at, "endpoint"), "address"), "socket_address")
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		d.t.errorf(field(sat, "protocol"), "%s is not supported by Portico (TCP only)", sa.GetProtocol())
		d.ok = false
	}
	port, isPort := sa.GetPortSpecifier().(*corev3.SocketAddress_PortValue)
	switch {
	case !isPort || port.PortValue > 65535 || sa.GetAddress() == "":
		d.ok = false // named_port: unsupported; the rest: protoc-gen-validate
		return
	case port.PortValue == 0:
		d.t.errorf(field(sat, "port_value"), "a port is required")
		d.ok = false
		return
	}
	w := uint32(1)
	if lw := lbe.GetLoadBalancingWeight(); lw != nil {
		w = lw.GetValue()
	}
	d.cfg.Targets = append(d.cfg.Targets, dns.Target{
		Name: sa.GetAddress(), Port: uint16(port.PortValue), Weight: w, Hostname: ep.GetHostname(),
	})
}

// attach starts nothing: it makes the resolution loop of the built cluster c a Runner and
// a stats source of the configuration. A nil d (not a DNS cluster) does nothing.
func (d *dnsClusterBuild) attach(c *engine.Cluster) {
	if d == nil || c == nil || !d.ok {
		return
	}
	r, err := dns.New(c, d.cfg)
	if err != nil {
		d.t.errorf(d.at, "%v", err)
		return
	}
	d.t.cfg.Runners = append(d.t.cfg.Runners, r)
	d.t.cfg.StatsSources = append(d.t.cfg.StatsSources, r)
}

// Warmer is a Runner with a warm-up: Warm is closed once its first work is done (a DNS
// cluster's first resolution, with wait_for_warm_on_init).
type Warmer interface {
	Warm() <-chan struct{}
}

// WaitWarm waits until every Runner that is a Warmer has warmed up, or ctx is done; the
// Runners must be running. It returns the names of the clusters still warming (none when
// all are warm). The binary calls it after starting the Runners and before
// Server.Start, so that the first connections do not find a DNS cluster still empty, as
// Envoy's listeners wait for cluster initialisation. Each DNS cluster's first resolution
// is bounded by its resolver's timeouts; a name that fails still ends the warm-up (its
// cluster then has no hosts until it resolves).
func (c *Config) WaitWarm(ctx context.Context) []string {
	for _, r := range c.Runners {
		w, ok := r.(Warmer)
		if !ok {
			continue
		}
		select {
		case <-w.Warm():
		case <-ctx.Done():
		}
	}
	var cold []string
	for _, r := range c.Runners {
		if w, ok := r.(Warmer); ok {
			select {
			case <-w.Warm():
			default:
				name := "?"
				if dc, ok := r.(*dns.Cluster); ok {
					name = dc.Cluster().Name()
				}
				cold = append(cold, name)
			}
		}
	}
	return cold
}

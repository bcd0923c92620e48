package config

import (
	"fmt"
	"net/netip"
	"strings"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-proxy/portico/engine"
)

// EDS: clusters of type EDS, whose endpoints arrive as ClusterLoadAssignment resources
// over the ADS stream, and the translation of those resources. A cluster's
// load_assignment and a ClusterLoadAssignment share one reader (endpoints), so that a
// static endpoint and an EDS one are read alike.

// EDSConfig is what a cluster of type EDS needs to get its endpoints.
type EDSConfig struct {
	// ServiceName is the ClusterLoadAssignment's cluster_name it takes:
	// eds_cluster_config.service_name, or the cluster's name when that is empty (Envoy).
	ServiceName string
	// Source is eds_config (`ads: {}`, or a gRPC api_config_source of its own: a stream
	// for EDS alone to that server); its InitialFetchTimeout bounds how long a CDS
	// cluster warms waiting for its first endpoints. nil only when the configuration
	// has errors or is checked on its own (no bootstrap, so no ads_config).
	Source *XDSSubscription
}

// pendingEDS is an EDS cluster's eds_config, read once dynamic_resources.ads_config is
// known (static clusters are translated before it).
type pendingEDS struct {
	cfg *EDSConfig
	cs  *corev3.ConfigSource
	at  string
}

// edsCluster finishes a cluster of type EDS (cluster() read what every type shares into
// cc): it has no hosts until its ClusterLoadAssignment arrives.
func (t *translator) edsCluster(cl *clusterv3.Cluster, cc *engine.ClusterConfig, at string, ok bool) *engine.Cluster {
	eat := field(at, "eds_cluster_config")
	ecc := cl.GetEdsClusterConfig()
	cs := ecc.GetEdsConfig()
	if cs == nil {
		t.errorf(field(eat, "eds_config"), "required: an EDS cluster reads its endpoints from a config source (Envoy: cannot create an EDS cluster without an EDS config)")
		ok = false
	}
	cat := field(eat, "eds_config")
	switch cs.GetConfigSourceSpecifier().(type) {
	case *corev3.ConfigSource_Path, *corev3.ConfigSource_PathConfigSource:
		t.unsupported(cat, "path", "Portico reads EDS over xDS only: use `ads: {}` (a file's endpoints belong in load_assignment of a STATIC cluster)")
		ok = false
	}
	if n := len(cl.GetLoadAssignment().GetEndpoints()); n > 0 {
		// Envoy reads an EDS cluster's endpoints from EDS alone and ignores these:
		// taking them silently would hide that they are never used.
		t.errorf(field(at, "load_assignment"), "an EDS cluster takes its endpoints from EDS: remove load_assignment (Envoy ignores its %d locality entries)", n)
		ok = false
	}
	if by := t.grpcClusters[cl.GetName()]; by != "" {
		t.errorf(field(at, "type"), "EDS: cluster %q is the management server's (%s), which must be a static non-EDS cluster (Envoy: must have a statically defined non-EDS cluster)", cl.GetName(), t.c.userPath(by))
		ok = false
	}
	c := t.newCluster(cl, cc, at, ok)
	if c == nil {
		return nil
	}
	if !t.clusterHealth(cl, c, at) { // health_checks, outlier_detection: run on the EDS hosts
		return nil
	}
	cfg := &EDSConfig{ServiceName: ecc.GetServiceName()}
	if cfg.ServiceName == "" {
		cfg.ServiceName = cl.GetName()
	}
	if t.eds == nil {
		t.eds = map[*engine.Cluster]*EDSConfig{}
	}
	t.eds[c] = cfg
	t.pendingEDS = append(t.pendingEDS, pendingEDS{cfg: cfg, cs: cs, at: cat})
	return c
}

// edsConfigUnused warns about eds_cluster_config on a cluster that is not of type EDS:
// Envoy ignores it there, and so does Portico.
func (t *translator) edsConfigUnused(cl *clusterv3.Cluster, at string) {
	if cl.GetEdsClusterConfig() == nil || cl.GetClusterType() == nil && cl.GetType() == clusterv3.Cluster_EDS {
		return
	}
	what := cl.GetType().String()
	if cl.GetClusterType() != nil {
		what = "cluster_type"
	}
	t.warnf(field(at, "eds_cluster_config"), "ignored: the cluster is %s, not EDS (Envoy ignores it too)", what)
}

// resolveEDS reads the eds_config of the EDS clusters translated so far, now that
// ads_config is known.
func (t *translator) resolveEDS() {
	for _, p := range t.pendingEDS {
		if t.edsStandalone && t.cfg.ADS == nil {
			// A CDS file checked on its own: the bootstrap's servers are not known.
			if _, isAds := p.cs.GetConfigSourceSpecifier().(*corev3.ConfigSource_Ads); isAds {
				t.warnf(p.at, "uses ads: the bootstrap must configure dynamic_resources.ads_config")
			} else {
				t.warnf(p.at, "names a management server: the bootstrap must define its cluster (not checked without it)")
			}
			continue
		}
		switch p.cs.GetConfigSourceSpecifier().(type) {
		case *corev3.ConfigSource_Ads, *corev3.ConfigSource_ApiConfigSource:
			p.cfg.Source, _ = t.xdsSubscription(p.cs, p.at)
		}
	}
	t.pendingEDS = nil
}

// endpoints reads a load_assignment (a STATIC or DNS cluster's) or a
// ClusterLoadAssignment (EDS), at lat: its lb_endpoints become engine endpoints (a DNS
// cluster's, names to resolve, go to dnsc instead). Endpoints whose health_status says
// they take no traffic are left out, with a warning. With dedup, a repeated address
// keeps its first endpoint only, as Envoy's EDS does.
func (t *translator) endpoints(la *endpointv3.ClusterLoadAssignment, lat string, dnsc *dnsClusterBuild, dedup bool) ([]engine.Endpoint, bool) {
	ok := true
	var out []engine.Endpoint
	var seen map[netip.AddrPort]bool
	if dedup {
		seen = map[netip.AddrPort]bool{}
	}
	for i, lle := range la.GetEndpoints() {
		// priority (only 0 exists in Portico) is refused by the subset check.
		eat := index(field(lat, "endpoints"), i)
		for j, lbe := range lle.GetLbEndpoints() {
			bat := index(field(eat, "lb_endpoints"), j)
			if lbe.GetHostIdentifier() == nil {
				t.errorf(bat, "endpoint is required")
				ok = false
				continue
			}
			ep := lbe.GetEndpoint()
			if ep == nil {
				ok = false // endpoint_name: reported as unsupported
				continue
			}
			if ep.GetAddress() == nil {
				t.errorf(field(field(bat, "endpoint"), "address"), "required")
				ok = false
				continue
			}
			switch hs := lbe.GetHealthStatus(); hs {
			case corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY:
			default:
				// Envoy keeps such a host in the set, out of load balancing (DRAINING
				// and DEGRADED with their own rules); Portico has no EDS health flag, so
				// it leaves the endpoint out: it takes no traffic either way, except in
				// Envoy's panic mode, and does not count in membership_total.
				t.warnf(field(bat, "health_status"), "%s: the endpoint is left out of the cluster's hosts", hs)
				continue
			}
			if dnsc != nil { // a name to resolve, not a static host
				dnsc.endpoint(lbe, bat)
				continue
			}
			ap, aok := t.socketAddress(ep.GetAddress(), field(field(bat, "endpoint"), "address"), false)
			if !aok {
				ok = false
				continue
			}
			if seen != nil {
				if seen[ap] {
					continue
				}
				seen[ap] = true
			}
			w := uint32(1)
			if lw := lbe.GetLoadBalancingWeight(); lw != nil {
				w = lw.GetValue()
			}
			out = append(out, engine.Endpoint{Address: ap, Weight: w, Hostname: ep.GetHostname()})
		}
	}
	return out, ok
}

// EndpointResource is one ClusterLoadAssignment from EDS, translated.
type EndpointResource struct {
	// Name is its cluster_name: the EDS service name of the clusters that take it.
	Name    string
	Version string
	// Endpoints are the hosts to give those clusters (engine.Cluster.UpdateHosts);
	// empty is a valid assignment (no hosts).
	Endpoints []engine.Endpoint
	msg       *endpointv3.ClusterLoadAssignment
}

// Message is the resource as read, for /config_dump. Do not modify it.
func (r *EndpointResource) Message() proto.Message { return r.msg }

// EndpointUpdate is an EDS response translated. EDS is not state of the world for
// removal: a service name the response lacks keeps its last assignment (Envoy), so
// there is no Removed.
type EndpointUpdate struct {
	Version   string
	Endpoints []*EndpointResource // the good ones, in the response's order
	Errors    []ResourceError     // the rejected ones: their last good versions stay
	Warnings  []string
}

// ParseEndpointResources translates an EDS response's ClusterLoadAssignments, each on
// its own through the same strict decode and checks as a cluster's, with errors
// located as `resources[1] (cluster_load_assignment "x"): endpoints[0]...`. err != nil
// only when the response cannot be read at all (a *FileError naming from).
func ParseEndpointResources(from, version string, resources []*anypb.Any) (*EndpointUpdate, error) {
	f, err := anyResources(from, version, resources, nil)
	if err != nil {
		return nil, err
	}
	return endpointsOf(f), nil
}

// endpointsOf translates the ClusterLoadAssignments of a resource document.
func endpointsOf(f *resourceFile) *EndpointUpdate {
	u := &EndpointUpdate{Version: f.version}
	seen := map[string]int{}
	for _, item := range f.items {
		item.name, item.named = claName(item)
		r, rerr, warns := parseEndpoints(item, f, seen)
		u.Warnings = append(u.Warnings, warns...)
		see(seen, item)
		if rerr != nil {
			u.Errors = append(u.Errors, *rerr)
			continue
		}
		u.Endpoints = append(u.Endpoints, r)
	}
	u.Warnings = append(u.Warnings, marksLeft(f.marks)...)
	return u
}

// claName reads a ClusterLoadAssignment's name, its cluster_name (rawItem reads "name",
// which this type does not have).
func claName(item rawResource) (string, bool) {
	obj, _ := item.v.(object)
	if item.wrapped {
		inner, _ := get(obj, "resource")
		obj, _ = inner.(object)
	}
	for _, k := range []string{"cluster_name", "clusterName"} {
		if n, ok := get(obj, k); ok {
			s, isString := n.(string)
			return s, isString
		}
	}
	return "", false
}

const claKind = "cluster_load_assignment"

// parseEndpoints decodes, checks and translates one ClusterLoadAssignment.
func parseEndpoints(item rawResource, f *resourceFile, seen map[string]int) (*EndpointResource, *ResourceError, []string) {
	cla := &endpointv3.ClusterLoadAssignment{}
	c, m := decodeResource(item, cla, f.marks)
	if m != nil {
		name := cla.GetClusterName()
		if item.wrapName != "" && item.wrapName != name {
			c.addCanonical("cluster_name", "%q differs from the name of the Resource that wraps it, %q", name, item.wrapName)
		}
		if at, dup := seen[name]; dup && name != "" {
			c.addCanonical("cluster_name", "duplicate %s %q (also resources[%d])", claKind, name, at)
		}
	}
	reject := func(err error) *ResourceError {
		re := item.pos().rejected(claKind, item.name, err, nil)
		if m != nil {
			re.Failed = m
		}
		return re
	}
	if err := resourceErrors(c, m); err != nil {
		return nil, reject(err), nil
	}
	version := item.versionIn(f)
	t := &translator{c: c, workers: 1, cfg: &Config{}}
	eps, ok := t.endpoints(cla, "", nil, true)
	var warns []string
	where := item.pos().where(claKind, item.name)
	for _, w := range t.cfg.Warnings {
		warns = append(warns, where+": "+w)
	}
	if err := resourceErrors(c, cla); err != nil || !ok {
		if err == nil {
			err = Errors{{Msg: "the endpoints could not be read"}}
		}
		return nil, reject(err), warns
	}
	return &EndpointResource{Name: cla.GetClusterName(), Version: version, Endpoints: eps, msg: cla}, nil, warns
}

// EndpointsError is the NACK of an EDS response some of whose assignments were
// rejected: one line per problem, each naming its resource.
func EndpointsError(errs []ResourceError) error {
	if len(errs) == 0 {
		return nil
	}
	lines := make([]string, len(errs))
	for i := range errs {
		lines[i] = errs[i].Error()
	}
	return fmt.Errorf("%s", strings.Join(lines, "\n"))
}

// endpointsDump is /config_dump's EndpointsConfigDump (?include_eds): the EDS assignments
// in use whose cluster_name matches.
func endpointsDump(st *DumpState, match func(string) bool) (*adminv3.EndpointsConfigDump, error) {
	d := &adminv3.EndpointsConfigDump{}
	for _, e := range st.Endpoints {
		if !match(e.Name) {
			continue
		}
		a, err := pack(e.Resource)
		if err != nil {
			return nil, err
		}
		d.DynamicEndpointConfigs = append(d.DynamicEndpointConfigs, &adminv3.EndpointsConfigDump_DynamicEndpointConfig{
			VersionInfo: e.Version, EndpointConfig: a, LastUpdated: stamp(e.LastUpdated)})
	}
	return d, nil
}

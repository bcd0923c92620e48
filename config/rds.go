package config

import (
	"slices"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/network/httpconnmgr"
	"github.com/portico-proxy/portico/http/route"
)

// RDS: an HTTP connection manager's `rds: {config_source: {ads: {}}, route_config_name}`
// and the RouteConfiguration resources that arrive for it. The connection manager gets
// the process's RouteProvider of that name (httpconnmgr), which the manager package fills
// with each good version that ParseRouteResources translates.

// rds reads an HCM's rds: a subscription on the ADS stream (the only source Portico
// supports for RDS so far), and the provider of its route_config_name.
func (t *translator) rds(r *hcmv3.Rds, at, statPrefix string) (*httpconnmgr.RouteProvider, bool) {
	csat := field(at, "config_source")
	cs := r.GetConfigSource()
	if cs == nil {
		// protoc-gen-validate requires it and has said so.
		return nil, false
	}
	sub, isFile := t.xdsSubscription(cs, csat)
	switch {
	case isFile:
		t.unsupported(csat, "", "RDS from a file (path or path_config_source) is not supported by Portico: use ads: {} (the bootstrap's dynamic_resources.ads_config)")
		return nil, false
	case sub == nil:
		return nil, false // reported
	case !sub.Server.Aggregated:
		t.unsupported(field(csat, "api_config_source"), "", "RDS from a management server of its own is not supported by Portico yet: use ads: {} (the bootstrap's dynamic_resources.ads_config)")
		return nil, false
	}
	name := r.GetRouteConfigName()
	if name == "" {
		t.errorf(field(at, "route_config_name"), "required (the name of the RouteConfiguration to request)")
		return nil, false
	}
	if t.routes == nil {
		t.routes = httpconnmgr.NewRouteProviders()
	}
	return t.routes.Get(name, statPrefix, sub.InitialFetchTimeout), true
}

// listenerRDS is what translating an LDS listener needs for its connection managers'
// rds: the route providers and the bootstrap's ADS server.
func listenerRDS(o Options) (*httpconnmgr.RouteProviders, *XDSServer, bool) {
	routes := o.Routes
	var ads *XDSServer
	configured := false
	if o.Static != nil {
		if routes == nil {
			routes = o.Static.RouteProviders
		}
		ads = o.Static.ADS
		configured = ads != nil
	}
	if routes == nil {
		routes = httpconnmgr.NewRouteProviders()
	}
	return routes, ads, configured
}

// RouteConfigNames are the route_config_names the listener's connection managers
// request over RDS, in order, without repeats (read once, at translation).
func (r *ListenerResource) RouteConfigNames() []string {
	if r == nil {
		return nil
	}
	return r.rds
}

func rdsNames(l *listenerv3.Listener) []string {
	var names []string
	eachHCM(l, func(m *hcmv3.HttpConnectionManager) {
		if n := m.GetRds().GetRouteConfigName(); n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	})
	return names
}

// listenerChains is l's filter chains, its default one last.
func listenerChains(l *listenerv3.Listener) []*listenerv3.FilterChain {
	chains := l.GetFilterChains()
	if d := l.GetDefaultFilterChain(); d != nil {
		chains = append(slices.Clip(chains), d)
	}
	return chains
}

// eachHCM calls fn with each HTTP connection manager of l's chains that decodes.
func eachHCM(l *listenerv3.Listener, fn func(*hcmv3.HttpConnectionManager)) {
	for _, fc := range listenerChains(l) {
		for _, f := range fc.GetFilters() {
			tc := f.GetTypedConfig()
			if tc == nil || tc.GetTypeUrl() != typeURLPrefix+hcmType {
				continue
			}
			m := &hcmv3.HttpConnectionManager{}
			if tc.UnmarshalTo(m) == nil {
				fn(m)
			}
		}
	}
}

// RouteResource is one RouteConfiguration from RDS, translated.
type RouteResource struct {
	Name    string
	Version string // the response's version_info
	Table   *route.Table
	Change  Change // Added, Unchanged (the previous Table is kept) or Full

	msg *routev3.RouteConfiguration
}

// Message is the resource as read, for /config_dump. Do not modify it.
func (r *RouteResource) Message() proto.Message { return r.msg }

// RouteUpdate is an RDS response read and translated. RDS is not a wildcard type: a
// route configuration missing from a response stays as it is (there is no Removed).
type RouteUpdate struct {
	Version string
	Routes  []*RouteResource // the good ones, Unchanged included, in the response's order
	Errors  []ResourceError  // the rejected ones: their previous versions stay
	// Warnings are prefixed by the resource, as the errors.
	Warnings []string
	// Ignored are the names of resources no connection manager requested (Envoy's mux
	// hands a subscription only the names it asked for).
	Ignored []string
}

// ParseRouteResources translates the RouteConfigurations of an RDS response, each alone
// through the same stages as a bootstrap's inline route_config (decode, subset,
// validation, translation), with errors located as `resources[i] (route_configuration
// "r"): virtual_hosts[0]...`. wanted are the names requested (nil: any); prev the current
// version of each, by name, against which each is classified. validate_clusters defaults
// to false for RDS, as in Envoy (a route to a cluster that does not exist answers 503 NC);
// when it is true the clusters named must exist in o.Clusters (or be static) now.
//
// err != nil only when the response as a whole cannot be read (a *FileError).
func ParseRouteResources(from, version string, resources []*anypb.Any, o Options, wanted map[string]bool, prev map[string]*RouteResource) (*RouteUpdate, error) {
	f, err := anyResources(from, version, resources, nil)
	if err != nil {
		return nil, err
	}
	u := &RouteUpdate{Version: f.version}
	seen := map[string]int{}
	for _, item := range f.items {
		if wanted != nil && item.named && !wanted[item.name] {
			u.Ignored = append(u.Ignored, item.name)
			continue
		}
		r, re, warns := parseRoute(item, f, o, prev, seen)
		u.Warnings = append(u.Warnings, warns...)
		see(seen, item)
		if re != nil {
			u.Errors = append(u.Errors, *re)
			continue
		}
		u.Routes = append(u.Routes, r)
	}
	u.Warnings = append(u.Warnings, marksLeft(f.marks)...)
	return u, nil
}

func parseRoute(item rawResource, f *resourceFile, o Options, prev map[string]*RouteResource, seen map[string]int) (*RouteResource, *ResourceError, []string) {
	const kind = "route_configuration"
	rc := &routev3.RouteConfiguration{}
	c, m := decodeResource(item, rc, f.marks)
	if m != nil {
		name := rc.GetName()
		switch {
		case name == "":
			c.addCanonical("name", "required for a route configuration from RDS (it is what a connection manager's rds.route_config_name requests)")
		case item.wrapName != "" && item.wrapName != name:
			c.addCanonical("name", "%q differs from the name of the Resource that wraps it, %q", name, item.wrapName)
		}
		if at, dup := seen[name]; dup && name != "" {
			c.addCanonical("name", "duplicate route configuration %q (also resources[%d])", name, at)
		}
	}
	reject := func(err error) *ResourceError {
		re := item.pos().rejected(kind, item.name, err, nil)
		if m != nil {
			re.Failed = rc
		}
		return re
	}
	if err := resourceErrors(c, m); err != nil {
		return nil, reject(err), nil
	}
	version := item.versionIn(f)
	name := rc.GetName()
	if p := prev[name]; p != nil && proto.Equal(p.msg, rc) {
		same := *p
		same.Version, same.Change = version, Unchanged
		return &same, nil, nil
	}
	change := Added
	if prev[name] != nil {
		change = Full
	}
	t := &translator{c: c, workers: 1, checkOnly: o.CheckOnly, registry: o.Clusters, clusters: map[string]*engine.Cluster{}, cfg: &Config{}}
	tbl, ok := t.routeConfig(rc, "")
	if rc.GetValidateClusters().GetValue() {
		t.rdsClusters(rc, o)
	}
	where := item.pos().where(kind, name)
	var warns []string
	for _, w := range t.cfg.Warnings {
		warns = append(warns, where+": "+w)
	}
	// Nothing a route table holds needs closing: a direct_response body from a file is
	// read at translation.
	if err := resourceErrors(c, rc); err != nil || !ok {
		if err == nil {
			err = Errors{{Msg: "the route configuration could not be built"}}
		}
		return nil, reject(err), warns
	}
	return &RouteResource{Name: name, Version: version, Table: tbl, Change: change, msg: rc}, nil, warns
}

// rdsClusters is validate_clusters: true for a route configuration from RDS: each
// cluster a route names must exist now (a static one, or one the registry has), in
// Envoy's words.
func (t *translator) rdsClusters(rc *routev3.RouteConfiguration, o Options) {
	exists := func(name string) bool {
		if o.Static != nil {
			for _, r := range o.Static.StaticClusters {
				if r.Name == name {
					return true
				}
			}
		}
		return o.Clusters != nil && o.Clusters.Get(name) != nil
	}
	for i, vh := range rc.GetVirtualHosts() {
		vat := index("virtual_hosts", i)
		for j, r := range vh.GetRoutes() {
			a := r.GetRoute()
			if a == nil {
				continue
			}
			rat := field(index(field(vat, "routes"), j), "route")
			switch c := a.GetClusterSpecifier().(type) {
			case *routev3.RouteAction_Cluster:
				if !exists(c.Cluster) {
					t.errorf(field(rat, "cluster"), "route: unknown cluster '%s' (validate_clusters is true)", c.Cluster)
				}
			case *routev3.RouteAction_WeightedClusters:
				for k, cw := range c.WeightedClusters.GetClusters() {
					if n := cw.GetName(); n != "" && !exists(n) {
						t.errorf(field(index(field(field(rat, "weighted_clusters"), "clusters"), k), "name"), "route: unknown weighted cluster '%s' (validate_clusters is true)", n)
					}
				}
			}
		}
	}
}

// RouteDumpEntry is a route configuration from RDS in /config_dump
// (RoutesConfigDump.dynamic_route_configs).
type RouteDumpEntry struct {
	Name, Version string
	LastUpdated   time.Time
	Resource      proto.Message // nil before a good version arrived
	Failure       *DumpFailure  // the last rejected version, if any
}

// routesDump is Envoy's RoutesConfigDump of the route configurations from RDS.
func routesDump(st *DumpState, match func(string) bool) (*adminv3.RoutesConfigDump, error) {
	d := &adminv3.RoutesConfigDump{}
	for _, e := range st.RouteListeners {
		for _, rc := range inlineRoutes(e.Resource) {
			if !match(rc.GetName()) {
				continue
			}
			a, err := pack(rc)
			if err != nil {
				return nil, err
			}
			d.StaticRouteConfigs = append(d.StaticRouteConfigs, &adminv3.RoutesConfigDump_StaticRouteConfig{RouteConfig: a, LastUpdated: stamp(e.LastUpdated)})
		}
	}
	for i := range st.DynamicRoutes {
		e := &st.DynamicRoutes[i]
		if !match(e.Name) {
			continue
		}
		a, err := pack(e.Resource)
		if err != nil {
			return nil, err
		}
		dr := &adminv3.RoutesConfigDump_DynamicRouteConfig{VersionInfo: e.Version, RouteConfig: a, LastUpdated: stamp(e.LastUpdated)}
		if e.Failure != nil {
			if dr.ErrorState, err = failureState(e.Failure); err != nil {
				return nil, err
			}
		}
		if a == nil && dr.ErrorState == nil {
			dr.ClientStatus = adminv3.ClientResourceStatus_REQUESTED
		}
		d.DynamicRouteConfigs = append(d.DynamicRouteConfigs, dr)
	}
	return d, nil
}

// inlineRoutes are the route_configs of a listener's connection managers (m is a
// *listenerv3.Listener), which Envoy shows as static_route_configs.
func inlineRoutes(m proto.Message) []*routev3.RouteConfiguration {
	l, ok := m.(*listenerv3.Listener)
	if !ok {
		return nil
	}
	var out []*routev3.RouteConfiguration
	eachHCM(l, func(h *hcmv3.HttpConnectionManager) {
		if h.GetRouteConfig() != nil {
			out = append(out, h.GetRouteConfig())
		}
	})
	return out
}

// LoadedAt is when the bootstrap was loaded (its resources' last_updated).
func (c *Config) LoadedAt() time.Time { return c.loaded }

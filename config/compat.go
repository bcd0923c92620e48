package config

import (
	"sort"
	"strings"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	roundrobinv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/portico-proxy/portico/engine"
)

// Fields real configurations carry that change nothing about the bytes Portico moves
// (docs/config.md, "Accepted and ignored, or honoured"). Each is honoured where that is
// cheap, accepted silently where ignoring it is what Envoy would do here too, and otherwise
// accepted with a warning naming it (an error under --reject-ignored). A field that would
// change traffic stays unsupported.

// supportedCompat extends the supported table (subset.go) with those fields.
var supportedCompat = map[protoreflect.FullName][]protoreflect.Name{
	"envoy.config.bootstrap.v3.Bootstrap": {
		"layered_runtime", "stats_config", "stats_sinks", "stats_flush_interval",
		"overload_manager", "cluster_manager", "tracing", "enable_dispatcher_stats",
	},
	"envoy.config.bootstrap.v3.Admin":                           {"access_log_path", "access_log", "profile_path"},
	"envoy.config.bootstrap.v3.LayeredRuntime":                  {"layers"},
	"envoy.config.bootstrap.v3.RuntimeLayer":                    {"name", "static_layer", "disk_layer", "admin_layer"},
	"envoy.config.bootstrap.v3.RuntimeLayer.AdminLayer":         {},
	"envoy.config.bootstrap.v3.ClusterManager":                  {"local_cluster_name", "outlier_detection", "load_stats_config"},
	"envoy.config.bootstrap.v3.ClusterManager.OutlierDetection": {"event_log_path"},

	"envoy.config.listener.v3.Listener":    {"metadata"},
	"envoy.config.listener.v3.FilterChain": {"metadata"},

	"envoy.config.cluster.v3.Cluster": {
		"metadata", "alt_stat_name", "common_lb_config", "load_balancing_policy",
		"upstream_connection_options", "track_cluster_stats",
	},
	"envoy.config.cluster.v3.Cluster.CommonLbConfig": {
		"healthy_panic_threshold", "update_merge_window", "locality_weighted_lb_config",
	},
	"envoy.config.cluster.v3.Cluster.CommonLbConfig.LocalityWeightedLbConfig": {},
	"envoy.type.v3.Percent":                                                    {"value"},
	"envoy.config.cluster.v3.UpstreamConnectionOptions":                        {"tcp_keepalive"},
	"envoy.config.core.v3.TcpKeepalive":                                        {"keepalive_probes", "keepalive_time", "keepalive_interval"},
	"envoy.config.endpoint.v3.LocalityLbEndpoints":                             {"locality", "load_balancing_weight", "metadata"},
	"envoy.config.endpoint.v3.LbEndpoint":                                      {"metadata"},
	"envoy.config.cluster.v3.LoadBalancingPolicy":                              {"policies"},
	"envoy.config.cluster.v3.LoadBalancingPolicy.Policy":                       {"typed_extension_config"},
	"envoy.config.core.v3.TypedExtensionConfig":                                {"name", "typed_config"},
	"envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin":       {},
	"envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest":   {},
	"envoy.config.cluster.v3.TrackClusterStats":                                {"timeout_budgets", "request_response_sizes", "per_endpoint_stats"},
	"envoy.config.cluster.v3.Cluster.CommonLbConfig.ZoneAwareLbConfig":         {},
	"envoy.config.cluster.v3.Cluster.CommonLbConfig.ConsistentHashingLbConfig": {},
}

// acceptedCompat are messages taken whole, without looking inside: identity and
// observability settings the translator warns about as a whole where they are not
// honoured.
var acceptedCompat = map[protoreflect.FullName]bool{
	"envoy.config.core.v3.Metadata":                    true, // read by filters Portico lacks
	"envoy.config.core.v3.Locality":                    true, // the zone of endpoints
	"envoy.config.bootstrap.v3.RuntimeLayer.DiskLayer": true,
	"envoy.config.metrics.v3.StatsConfig":              true,
	"envoy.config.metrics.v3.StatsSink":                true,
	"envoy.config.overload.v3.OverloadManager":         true,
	"envoy.config.trace.v3.Tracing":                    true,
	"envoy.config.core.v3.ApiConfigSource":             true, // cluster_manager.load_stats_config
}

// allowedField reports whether a set field may be set: in the supported tables or here.
func allowedField(md protoreflect.FullName, allowed []protoreflect.Name, f protoreflect.Name) bool {
	return hasName(allowed, f) || hasName(supportedCompat[md], f)
}

// bootstrapCompat handles the bootstrap's accepted-and-ignored fields.
func (t *translator) bootstrapCompat(bs *bootstrapv3.Bootstrap) {
	if a := bs.GetAdmin(); a != nil {
		//lint:ignore SA1019 deprecated but read, as Envoy still does
		if p := a.GetAccessLogPath(); p != "" && p != "/dev/null" {
			t.warnf("admin.access_log_path", "the admin's own access log is not written by Portico (%s): ignored", p)
		}
		for i, al := range a.GetAccessLog() {
			if !t.isDevNullLog(al) {
				t.warnf(index("admin.access_log", i), "the admin's own access log is not written by Portico: ignored")
			}
		}
		// profile_path is where the admin's /cpuprofiler writes; Portico's admin has no
		// profiler, so the path is never used: nothing to say.
	}
	for i, l := range bs.GetLayeredRuntime().GetLayers() {
		at := index("layered_runtime.layers", i)
		switch {
		case l.GetStaticLayer() != nil:
			if keys := runtimeKeys(l.GetStaticLayer()); len(keys) > 0 {
				t.warnf(field(at, "static_layer"), "Portico reads no runtime keys; ignored: %s", strings.Join(keys, ", "))
			}
		case l.GetDiskLayer() != nil:
			t.warnf(field(at, "disk_layer"), "Portico reads no runtime keys; the disk layer is ignored")
		}
		// An admin layer only lets /runtime_modify change keys: none are read.
	}
	if sc := bs.GetStatsConfig(); sc != nil && proto.Size(sc) > 0 {
		t.warnf("stats_config", "stat tags and matchers are not applied: Portico's stats keep their names")
	}
	for i, s := range bs.GetStatsSinks() {
		t.warnf(index("stats_sinks", i), "stats sink %q is not supported: ignored (stats are at the admin's /stats and /stats/prometheus)", sinkName(s.GetName(), s.GetTypedConfig().GetTypeUrl()))
	}
	if bs.GetStatsFlushInterval() != nil {
		// Flushes go to sinks, which Portico does not have.
		t.warnf("stats_flush_interval", "no stats sinks to flush to: ignored")
	}
	if om := bs.GetOverloadManager(); om != nil && proto.Size(om) > 0 {
		t.warnf("overload_manager", "the overload manager is not implemented: its resource monitors and actions are ignored")
	}
	//lint:ignore SA1019 deprecated, still read by Envoy
	if tr := bs.GetTracing(); tr != nil && proto.Size(tr) > 0 {
		t.warnf("tracing", "Portico has no tracer: ignored")
	}
	cm := bs.GetClusterManager()
	if cm.GetOutlierDetection().GetEventLogPath() != "" {
		t.warnf("cluster_manager.outlier_detection.event_log_path", "outlier ejection events are not logged to a file: ignored")
	}
	if cm.GetLoadStatsConfig() != nil {
		t.warnf("cluster_manager.load_stats_config", "load reports (LRS) are not sent: ignored")
	}
	// local_cluster_name serves zone-aware routing, which needs locality-aware balancing
	// Portico does not do: it changes nothing here.
}

// isDevNullLog reports an admin access log that writes to /dev/null (a file logger with
// that path): ignoring it is honouring it.
func (t *translator) isDevNullLog(al *accesslogv3.AccessLog) bool {
	m, err := t.c.unpack(al.GetTypedConfig())
	if err != nil || m == nil {
		return false
	}
	f := m.ProtoReflect().Descriptor().Fields().ByName("path")
	return f != nil && m.ProtoReflect().Get(f).String() == "/dev/null"
}

func sinkName(name, url string) string {
	if url != "" {
		return strings.TrimPrefix(url, typeURLPrefix)
	}
	return name
}

// runtimeKeys lists the keys of a static runtime layer, flattened (a.b.c), sorted.
func runtimeKeys(s *structpb.Struct) []string {
	var keys []string
	var walk func(prefix string, s *structpb.Struct)
	walk = func(prefix string, s *structpb.Struct) {
		for k, v := range s.GetFields() {
			name := k
			if prefix != "" {
				name = prefix + "." + k
			}
			if inner := v.GetStructValue(); inner != nil && len(inner.GetFields()) > 0 {
				walk(name, inner)
				continue
			}
			keys = append(keys, name)
		}
	}
	walk("", s)
	sort.Strings(keys)
	return keys
}

// lbPolicy reads load_balancing_policy: the first policy Portico implements, as Envoy
// takes the first one it supports. It returns false (reported) when none is.
func (t *translator) lbPolicy(lp *clusterv3.LoadBalancingPolicy, at string) (engine.LBPolicy, bool) {
	pat := field(at, "load_balancing_policy")
	var types []string
	for _, p := range lp.GetPolicies() {
		tc := p.GetTypedExtensionConfig().GetTypedConfig()
		m, err := t.c.unpack(tc)
		if err != nil || m == nil {
			continue
		}
		types = append(types, string(m.ProtoReflect().Descriptor().FullName()))
		switch m.(type) {
		case *roundrobinv3.RoundRobin:
			return engine.RoundRobin, true
		case *leastrequestv3.LeastRequest:
			return engine.LeastRequest, true
		}
	}
	t.unsupported(field(pat, "policies"), strings.Join(types, ","), "none of the policies is one Portico implements (%s; Portico has round_robin and least_request)", strings.Join(types, ", "))
	return 0, false
}

// clusterCompat handles a cluster's accepted-and-ignored fields; cc gets what is honoured.
func (t *translator) clusterCompat(cl *clusterv3.Cluster, cc *engine.ClusterConfig, at string) bool {
	ok := true
	if ka := cl.GetUpstreamConnectionOptions().GetTcpKeepalive(); ka != nil {
		cc.KeepAlive = &engine.KeepAlive{
			Probes:   int(ka.GetKeepaliveProbes().GetValue()),
			Idle:     time.Duration(ka.GetKeepaliveTime().GetValue()) * time.Second,
			Interval: time.Duration(ka.GetKeepaliveInterval().GetValue()) * time.Second,
		}
	}
	if cl.GetAltStatName() != "" {
		t.warnf(field(at, "alt_stat_name"), "stats stay under cluster.%s (alt_stat_name %q is not used)", cl.GetName(), cl.GetAltStatName())
	}
	if tcs := cl.GetTrackClusterStats(); tcs != nil && proto.Size(tcs) > 0 {
		t.warnf(field(at, "track_cluster_stats"), "the extra cluster stats are not kept: ignored")
	}
	if clc := cl.GetCommonLbConfig(); clc != nil {
		cat := field(at, "common_lb_config")
		pat := field(cat, "healthy_panic_threshold")
		if p := clc.GetHealthyPanicThreshold(); p != nil && p.GetValue() != 50 && !t.c.errorsUnder(pat) {
			t.unsupported(pat, "", "%v%% is not supported by Portico (its panic threshold is Envoy's default, 50%%)", p.GetValue())
			ok = false
		}
		// update_merge_window only delays host-set updates; Portico applies them at
		// once.
		if clc.GetLocalityWeightedLbConfig() != nil && len(cl.GetLoadAssignment().GetEndpoints()) > 1 {
			t.warnf(field(cat, "locality_weighted_lb_config"), "localities are not weighted: hosts are balanced by their own weights across all localities")
		}
	}
	// metadata changes nothing here; locality and its
	// load_balancing_weight only weigh localities under locality_weighted_lb_config (above).
	return ok
}

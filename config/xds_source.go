package config

import (
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// xDS over gRPC: the bootstrap's ads_config, and config sources (lds_config, cds_config,
// an EDS cluster's eds_config, an HCM's rds.config_source) that say `ads: {}` or name a
// gRPC api_config_source of their own. The translator reads and checks them here, with
// Envoy's rules; the manager package runs the subscriptions (config/xds is the client).

// XDSServer is a management server the bootstrap names: dynamic_resources.ads_config, or
// the api_config_source of one subscription.
type XDSServer struct {
	// Field is where it is configured ("dynamic_resources.ads_config").
	Field string
	// Delta is api_type DELTA_GRPC (incremental xDS); false is GRPC (state of the world).
	Delta bool
	// Cluster is grpc_services[0].envoy_grpc.cluster_name: a static cluster, checked to
	// speak HTTP/2, whose hosts the client dials (another host on each reconnect).
	Cluster string
	// Authority is envoy_grpc.authority (the :authority of the stream); empty means the
	// cluster name, as in Envoy.
	Authority string
	// NodeOnEveryRequest is Envoy's set_node_on_first_message_only: false (its default):
	// the node goes on every request, not only on a stream's first.
	NodeOnEveryRequest bool
	// RateLimit is rate_limit_settings (nil without it). Zero fields take Envoy's defaults
	// (100 tokens, 10 per second).
	RateLimit *RateLimitSettings
	// Aggregated tells ads_config (one stream for every type) from an api_config_source
	// (a stream per subscription).
	Aggregated bool
	// KeepaliveInterval and KeepaliveTimeout are the cluster's HTTP/2
	// connection_keepalive (0: none): PINGs on the stream's connection.
	KeepaliveInterval, KeepaliveTimeout time.Duration
	// InitialStreamWindow and InitialConnWindow are its initial_stream_window_size and
	// initial_connection_window_size (0: gRPC's defaults).
	InitialStreamWindow, InitialConnWindow uint32
}

// RateLimitSettings is Envoy's rate_limit_settings on the requests sent to a server.
type RateLimitSettings struct {
	MaxTokens uint32
	FillRate  float64
}

// XDSSubscription is one resource type's subscription to a management server.
type XDSSubscription struct {
	// Field is the ConfigSource's place ("dynamic_resources.lds_config").
	Field string
	// Server is Config.ADS for `ads: {}`, or the subscription's own api_config_source.
	Server *XDSServer
	// InitialFetchTimeout is how long start-up waits for the first version (Envoy's
	// initial_fetch_timeout, 15 s by default); 0 waits as long as it takes, as in Envoy.
	InitialFetchTimeout time.Duration
}

// defaultInitialFetchTimeout is Envoy's initial_fetch_timeout.
const defaultInitialFetchTimeout = 15 * time.Second

// xdsSupported is the part of the supported table for ads_config and api_config_source
// (see supportedDynamic). ApiConfigSource is also taken whole elsewhere (load_stats_config,
// compat.go), so the translator checks these fields itself too.
var xdsSupported = map[string]bool{
	"api_type": true, "transport_api_version": true, "grpc_services": true,
	"set_node_on_first_message_only": true, "rate_limit_settings": true,
	"refresh_delay": true, "request_timeout": true, // REST only: ignored for gRPC, as in Envoy
}

// grpcClusterNames lists the clusters the bootstrap's gRPC services name (ads_config and
// the lds/cds api_config_sources), read before the static clusters are translated so that
// those clusters may speak HTTP/2 (no other cluster may yet).
func grpcClusterNames(bs *bootstrapv3.Bootstrap) map[string]string {
	out := map[string]string{}
	dr := bs.GetDynamicResources()
	add := func(a *corev3.ApiConfigSource, at string) {
		for i, g := range a.GetGrpcServices() {
			if n := g.GetEnvoyGrpc().GetClusterName(); n != "" {
				if _, ok := out[n]; !ok {
					out[n] = field(index(field(at, "grpc_services"), i), "envoy_grpc")
				}
			}
		}
	}
	add(dr.GetAdsConfig(), "dynamic_resources.ads_config")
	add(dr.GetLdsConfig().GetApiConfigSource(), "dynamic_resources.lds_config.api_config_source")
	add(dr.GetCdsConfig().GetApiConfigSource(), "dynamic_resources.cds_config.api_config_source")
	for i, cl := range bs.GetStaticResources().GetClusters() { // eds.go: a static EDS cluster's own server
		add(cl.GetEdsClusterConfig().GetEdsConfig().GetApiConfigSource(), field(index("static_resources.clusters", i), "eds_cluster_config.eds_config.api_config_source"))
	}
	return out
}

// speaksHTTP2 reports whether a cluster is configured for HTTP/2 upstream, in either of
// the two ways Envoy reads: typed_extension_protocol_options' HttpProtocolOptions with
// explicit_http_config.http2_protocol_options, or the older cluster-level
// http2_protocol_options (Envoy Gateway still writes it).
func speaksHTTP2(cl *clusterv3.Cluster) bool { return http2Options(cl) != nil }

// http2Options are the cluster's HTTP/2 options in either form (nil: it speaks HTTP/1).
func http2Options(cl *clusterv3.Cluster) *corev3.Http2ProtocolOptions {
	//lint:ignore SA1019 deprecated, but still written by control planes and bootstraps
	if o := cl.GetHttp2ProtocolOptions(); o != nil {
		return o
	}
	a, ok := cl.GetTypedExtensionProtocolOptions()[httpProtocolOptionsName]
	if !ok {
		return nil
	}
	po := &upstreamhttpv3.HttpProtocolOptions{}
	if err := a.UnmarshalTo(po); err != nil {
		return nil
	}
	return po.GetExplicitHttpConfig().GetHttp2ProtocolOptions()
}

// httpProtocolOptionsName is the key of HttpProtocolOptions in
// typed_extension_protocol_options.
const httpProtocolOptionsName = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// adsServer reads dynamic_resources.ads_config; nil when absent or wrong (reported).
func (t *translator) adsServer(dr *bootstrapv3.Bootstrap_DynamicResources) *XDSServer {
	a := dr.GetAdsConfig()
	if a == nil {
		return nil
	}
	s := t.xdsServer(a, "dynamic_resources.ads_config")
	if s != nil {
		s.Aggregated = true
	}
	return s
}

// xdsServer reads an ApiConfigSource naming a gRPC management server, with Envoy's rules:
// GRPC or DELTA_GRPC, transport_api_version V3, exactly one envoy_grpc service naming a
// static cluster that speaks HTTP/2, no cluster_names.
func (t *translator) xdsServer(a *corev3.ApiConfigSource, at string) *XDSServer {
	ok := true
	a.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if n := string(fd.Name()); !xdsSupported[n] && n != "cluster_names" {
			t.unsupported(field(at, n), "", "not supported by Portico")
			ok = false
		}
		return true
	})
	s := &XDSServer{Field: at, NodeOnEveryRequest: !a.GetSetNodeOnFirstMessageOnly()}
	switch a.GetApiType() {
	case corev3.ApiConfigSource_GRPC:
	case corev3.ApiConfigSource_DELTA_GRPC:
		s.Delta = true
	default:
		// REST polls with cluster_names; the rest of the checks are gRPC's.
		t.unsupported(field(at, "api_type"), a.GetApiType().String(), "%s is not supported by Portico: use GRPC or DELTA_GRPC", a.GetApiType())
		return nil
	}
	if v := a.GetTransportApiVersion(); v != corev3.ApiVersion_V3 {
		// Envoy's words: V2 is gone and AUTO (the default) meant V2.
		t.errorf(field(at, "transport_api_version"), "%s: V2 (and AUTO) xDS transport protocol versions are deprecated and no longer supported (as in Envoy): set transport_api_version: V3", v)
		ok = false
	}
	if len(a.GetClusterNames()) > 0 {
		t.errorf(field(at, "cluster_names"), "must not be set with api_type %s (Envoy: gRPC config sources name their server in grpc_services)", a.GetApiType())
		ok = false
	}
	gs := a.GetGrpcServices()
	switch len(gs) {
	case 0:
		t.errorf(field(at, "grpc_services"), "exactly one gRPC service is required with api_type %s", a.GetApiType())
		return nil
	case 1:
	default:
		t.errorf(field(at, "grpc_services"), "only one gRPC service is supported (Envoy: only singleton gRPC service lists are supported), got %d", len(gs))
		return nil
	}
	gat := index(field(at, "grpc_services"), 0)
	g := gs[0]
	eg := g.GetEnvoyGrpc()
	if eg == nil {
		if g.GetGoogleGrpc() != nil {
			t.unsupported(field(gat, "google_grpc"), "", "google_grpc is not supported by Portico: use envoy_grpc with a static cluster")
		} else {
			t.errorf(gat, "envoy_grpc is required")
		}
		return nil
	}
	if len(g.GetInitialMetadata()) > 0 {
		t.unsupported(field(gat, "initial_metadata"), "", "not supported by Portico")
		ok = false
	}
	if g.GetRetryPolicy() != nil {
		t.unsupported(field(gat, "retry_policy"), "", "not supported by Portico (the stream is retried with Envoy's back-off)")
		ok = false
	}
	// timeout bounds unary calls; xDS streams are long-lived: nothing to do, as in Envoy.
	eat := field(gat, "envoy_grpc")
	s.Cluster, s.Authority = eg.GetClusterName(), eg.GetAuthority()
	if eg.GetRetryPolicy() != nil || eg.GetMaxReceiveMessageLength() != nil || eg.GetSkipEnvoyHeaders() {
		t.unsupported(eat, "", "envoy_grpc's retry_policy, max_receive_message_length and skip_envoy_headers are not supported by Portico")
		ok = false
	}
	if s.Cluster == "" {
		t.errorf(field(eat, "cluster_name"), "required")
		return nil
	}
	c, defined := t.clusters[s.Cluster]
	switch {
	case !defined:
		t.errorf(field(eat, "cluster_name"), "gRPC service cluster %q must be a static cluster (Envoy: must have a statically defined non-EDS cluster: %q does not exist, was added via api, or is an EDS cluster); defined: %s",
			s.Cluster, s.Cluster, t.definedClusters())
		return nil
	case c == nil:
		return nil // it did not translate: reported where it is
	case t.grpcClusters[s.Cluster] == "":
		// Only the clusters grpcClusterNames found may speak HTTP/2 (clusterHTTP).
		t.errorf(field(eat, "cluster_name"), "gRPC service cluster %q does not speak HTTP/2 here: name it in dynamic_resources.ads_config instead", s.Cluster)
		return nil
	}
	if o := t.grpcH2[s.Cluster]; o != nil {
		if ka := o.GetConnectionKeepalive(); ka != nil {
			s.KeepaliveInterval = ka.GetInterval().AsDuration()
			s.KeepaliveTimeout = ka.GetTimeout().AsDuration()
		}
		s.InitialStreamWindow = o.GetInitialStreamWindowSize().GetValue()
		s.InitialConnWindow = o.GetInitialConnectionWindowSize().GetValue()
	}
	if rl := a.GetRateLimitSettings(); rl != nil {
		s.RateLimit = &RateLimitSettings{}
		if v := rl.GetMaxTokens(); v != nil {
			s.RateLimit.MaxTokens = v.GetValue()
		}
		if v := rl.GetFillRate(); v != nil {
			if v.GetValue() <= 0 {
				t.errorf(field(field(at, "rate_limit_settings"), "fill_rate"), "must be greater than 0")
				ok = false
			}
			s.RateLimit.FillRate = v.GetValue()
		}
	}
	if !ok {
		return nil
	}
	return s
}

// xdsSubscription reads a ConfigSource that is not a file: `ads: {}` (the bootstrap's
// ads_config) or a gRPC api_config_source. It returns nil, having reported why, when the
// source cannot be used. isFile reports a path or path_config_source (the caller's).
func (t *translator) xdsSubscription(cs *corev3.ConfigSource, at string) (sub *XDSSubscription, isFile bool) {
	switch s := cs.GetConfigSourceSpecifier().(type) {
	case *corev3.ConfigSource_Path, *corev3.ConfigSource_PathConfigSource:
		return nil, true
	case *corev3.ConfigSource_Ads:
		if t.cfg.ADS == nil {
			if t.adsConfigured {
				return nil, false // ads_config itself is wrong, and said so
			}
			t.errorf(field(at, "ads"), "ADS requires dynamic_resources.ads_config (Envoy: cannot initialize an ADS subscription without ads_config)")
			return nil, false
		}
		sub = &XDSSubscription{Field: at, Server: t.cfg.ADS}
	case *corev3.ConfigSource_ApiConfigSource:
		srv := t.xdsServer(s.ApiConfigSource, field(at, "api_config_source"))
		if srv == nil {
			return nil, false
		}
		sub = &XDSSubscription{Field: at, Server: srv}
	case *corev3.ConfigSource_Self:
		t.unsupported(field(at, "self"), "", "self config sources are not supported by Portico: use ads")
		return nil, false
	case nil:
		return nil, false // the validation rules say one is required
	default:
		t.unsupported(at, "", "this config source is not supported by Portico")
		return nil, false
	}
	//lint:ignore SA1019 deprecated: refused here, as Envoy refuses it
	if cs.GetResourceApiVersion() == corev3.ApiVersion_V2 {
		t.errorf(field(at, "resource_api_version"), "V2 is not supported (Envoy dropped the v2 API too): use V3")
		return nil, false
	}
	sub.InitialFetchTimeout = defaultInitialFetchTimeout
	if d := cs.GetInitialFetchTimeout(); d != nil {
		sub.InitialFetchTimeout = t.timeout(d, defaultInitialFetchTimeout, field(at, "initial_fetch_timeout"), true)
	}
	return sub, false
}

// nodeProto is the node as configured, sent to management servers as it is (id, cluster,
// metadata, locality ...); the manager adds Portico's user agent where it has none.
func nodeProto(bs *bootstrapv3.Bootstrap) *corev3.Node {
	if bs.GetNode() == nil {
		return &corev3.Node{}
	}
	return proto.Clone(bs.GetNode()).(*corev3.Node)
}

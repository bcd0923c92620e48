package config

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// typeURLPrefix is the prefix of every type URL Envoy uses in typed_config.
const typeURLPrefix = "type.googleapis.com/"

// Full names of the typed_config messages Portico interprets.
const (
	echoType          = "envoy.extensions.filters.network.echo.v3.Echo"
	tcpProxyType      = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
	fileLogType       = "envoy.extensions.access_loggers.file.v3.FileAccessLog"
	stdoutLogType     = "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
	originalDstType   = "envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
	tlsInspectorType  = "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
	httpInspectorType = "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"
	proxyProtocolType = "envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol"
	hcmType           = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	routerType        = "envoy.extensions.filters.http.router.v3.Router"
	httpFilterType    = "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter"

	httpProtocolOptionsType = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	uuidRequestIDType       = "envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig"
)

// anySlots lists, for each Any field Portico interprets, the message types it accepts
// there. An Any elsewhere is judged by the allowlist of the field holding it.
var anySlots = map[protoreflect.FullName][]string{
	"envoy.config.listener.v3.Filter.typed_config":                                                {echoType, tcpProxyType, hcmType},
	"envoy.extensions.filters.network.http_connection_manager.v3.RequestIDExtension.typed_config": {uuidRequestIDType},
	"envoy.config.listener.v3.ListenerFilter.typed_config":                                        {originalDstType, tlsInspectorType, httpInspectorType, proxyProtocolType},
	"envoy.config.accesslog.v3.AccessLog.typed_config":                                            {fileLogType, stdoutLogType},
	"envoy.config.core.v3.TransportSocket.typed_config":                                           {downstreamTLSType, upstreamTLSType, rawBufferType},
}

// supported is the subset of Envoy's API that Portico implements: for each message, the
// fields that may be set. A set field not listed is an error, so that nothing a user
// configures is silently ignored. Messages absent from this table accept no fields
// (well-known types such as Duration are leaves and are not checked here).
var supported = map[protoreflect.FullName][]protoreflect.Name{
	"envoy.config.bootstrap.v3.Bootstrap":                 {"node", "static_resources", "admin", "dynamic_resources"},
	"envoy.config.bootstrap.v3.Bootstrap.StaticResources": {"listeners", "clusters"},
	"envoy.config.bootstrap.v3.Admin":                     {"address"},

	"envoy.config.core.v3.Address":                  {"socket_address"},
	"envoy.config.core.v3.SocketAddress":            {"address", "port_value", "protocol"},
	"envoy.config.core.v3.CidrRange":                {"address_prefix", "prefix_len"},
	"envoy.config.core.v3.SubstitutionFormatString": {"text_format", "text_format_source"},
	"envoy.config.core.v3.DataSource":               {"inline_string", "inline_bytes", "filename", "environment_variable"},

	"envoy.config.listener.v3.Listener": {
		"name", "address", "enable_reuse_port", "reuse_port", "bind_to_port",
		"use_original_dst", "listener_filters", "listener_filters_timeout",
		"continue_on_listener_filters_timeout", "filter_chains", "default_filter_chain",
		"per_connection_buffer_limit_bytes", "connection_balance_config",
		"tcp_backlog_size", "max_connections_to_accept_per_socket_event", "transparent",
		"freebind", "traffic_direction", "stat_prefix", "drain_type",
	},
	"envoy.config.listener.v3.Listener.ConnectionBalanceConfig":              {"exact_balance"},
	"envoy.config.listener.v3.Listener.ConnectionBalanceConfig.ExactBalance": {},
	"envoy.config.listener.v3.ListenerFilter":                                {"name", "typed_config"},
	"envoy.config.listener.v3.FilterChain": {
		"name", "filter_chain_match", "filters", "transport_socket", "transport_socket_connect_timeout",
	},
	// address_suffix and suffix_len are accepted here so that translation can reject them
	// with Envoy's reason ("not implemented") rather than a generic one.
	"envoy.config.listener.v3.FilterChainMatch": {
		"destination_port", "prefix_ranges", "address_suffix", "suffix_len",
		"direct_source_prefix_ranges", "source_type", "source_prefix_ranges", "source_ports",
		"server_names", "transport_protocol", "application_protocols",
	},
	"envoy.config.listener.v3.Filter": {"name", "typed_config"},

	echoType: {},
	tcpProxyType: {
		"stat_prefix", "cluster", "weighted_clusters", "idle_timeout",
		"max_connect_attempts", "access_log",
	},
	tcpProxyType + ".WeightedCluster":               {"clusters"},
	tcpProxyType + ".WeightedCluster.ClusterWeight": {"name", "weight"},

	"envoy.config.accesslog.v3.AccessLog": {"name", "typed_config"},
	fileLogType:                           {"path", "format", "log_format"},
	stdoutLogType:                         {"log_format"},

	originalDstType:   {},
	httpInspectorType: {},
	tlsInspectorType: {
		"max_client_hello_size", "initial_read_buffer_size",
		"close_connection_on_client_hello_parsing_errors",
	},
	proxyProtocolType: {"allow_requests_without_proxy_protocol", "disallowed_versions"},

	"envoy.config.cluster.v3.Cluster": {
		"name", "type", "connect_timeout", "lb_policy", "load_assignment",
		"per_connection_buffer_limit_bytes", "circuit_breakers", "typed_extension_protocol_options",
		"common_http_protocol_options", "http_protocol_options", "max_requests_per_connection",
		"http2_protocol_options", // only the xDS cluster's (xds_source.go)
		// STRICT_DNS and LOGICAL_DNS (cluster_dns.go)
		"dns_lookup_family", "dns_refresh_rate", "dns_jitter", "dns_failure_refresh_rate",
		"respect_dns_ttl", "dns_resolvers", "use_tcp_for_dns_lookups", "dns_resolution_config",
		"typed_dns_resolver_config", "wait_for_warm_on_init",
		// health checking, outlier detection, ORIGINAL_DST (cluster_health.go)
		"health_checks", "outlier_detection", "ignore_health_on_host_removal", "cleanup_interval",
		"original_dst_lb_config",
		// TLS origination (tls_upstream.go)
		"transport_socket", "transport_socket_matches",
		// EDS (eds.go)
		"eds_cluster_config",
	},
	"envoy.config.cluster.v3.Cluster.EdsClusterConfig": {"eds_config", "service_name"},
	"envoy.config.cluster.v3.Cluster.RefreshRate":      {"base_interval", "max_interval"},
	"envoy.config.core.v3.DnsResolutionConfig":         {"resolvers", "dns_resolver_options"},
	"envoy.config.core.v3.DnsResolverOptions":          {"use_tcp_for_dns_lookups", "no_default_search_domain"},
	"envoy.config.core.v3.TypedExtensionConfig":        {"name", "typed_config"},
	// udp_max_queries, max_udp_channel_duration and reinit_channel_on_timeout limit a c-ares
	// channel's sockets: Portico opens a socket per query, which meets all three.
	caresResolverType: {
		"resolvers", "use_resolvers_as_fallback", "dns_resolver_options", "query_timeout_seconds",
		"query_tries", "rotate_nameservers", "udp_max_queries", "max_udp_channel_duration",
		"reinit_channel_on_timeout",
	},
	// num_resolver_threads: Go's resolver has no thread pool to size.
	getaddrinfoResolverType: {"num_retries", "num_resolver_threads"},
	// cluster_health.go
	"envoy.config.core.v3.HealthCheck": {
		"timeout", "interval", "initial_jitter", "interval_jitter", "interval_jitter_percent",
		"unhealthy_threshold", "healthy_threshold", "reuse_connection", "http_health_check",
		"tcp_health_check", "no_traffic_interval", "no_traffic_healthy_interval",
		"unhealthy_interval", "unhealthy_edge_interval", "healthy_edge_interval",
		"event_log_path", "always_log_health_check_failures",
	},
	"envoy.config.core.v3.HealthCheck.TcpHealthCheck": {"send", "receive"},
	"envoy.config.core.v3.HealthCheck.HttpHealthCheck": {
		"host", "path", "send", "receive", "response_buffer_size", "request_headers_to_add",
		"request_headers_to_remove", "expected_statuses", "retriable_statuses",
		"codec_client_type", "method",
	},
	"envoy.config.core.v3.HealthCheck.Payload": {"text", "binary"},
	"envoy.config.cluster.v3.OutlierDetection": {
		"consecutive_5xx", "interval", "base_ejection_time", "max_ejection_percent",
		"enforcing_consecutive_5xx", "consecutive_gateway_failure",
		"enforcing_consecutive_gateway_failure", "split_external_local_origin_errors",
		"consecutive_local_origin_failure", "enforcing_consecutive_local_origin_failure",
		"max_ejection_time", "successful_active_health_check_uneject_host", "always_eject_one_host",
	},
	"envoy.config.cluster.v3.Cluster.OriginalDstLbConfig": {"use_http_header", "upstream_port_override"},

	// eds.go. With one priority level and no zone-aware or locality-weighted balancing
	// (neither is supported), locality, its load_balancing_weight, overprovisioning_factor
	// and weighted_priority_health change nothing about traffic, in Envoy either.
	"envoy.config.endpoint.v3.ClusterLoadAssignment":        {"cluster_name", "endpoints", "policy"},
	"envoy.config.endpoint.v3.ClusterLoadAssignment.Policy": {"overprovisioning_factor", "weighted_priority_health"},
	"envoy.config.endpoint.v3.LocalityLbEndpoints":          {"lb_endpoints", "locality", "load_balancing_weight"},
	"envoy.config.core.v3.Locality":                         {"region", "zone", "sub_zone"},
	"envoy.config.endpoint.v3.LbEndpoint":                   {"endpoint", "load_balancing_weight", "health_status"},
	"envoy.config.endpoint.v3.Endpoint":                     {"address", "hostname"},
}

// httpFilterSupported reports whether an HTTP filter is one Portico has (the router). An
// optional one it does not have is skipped whole, as Envoy skips it (the translator warns);
// any other is one error at its typed_config, not one per field inside it.
func (c *collector) httpFilterSupported(m protoreflect.Message, at loc) bool {
	fields := m.Descriptor().Fields()
	tc := m.Get(fields.ByName("typed_config")).Message()
	if !tc.IsValid() {
		return true
	}
	a, _ := tc.Interface().(*anypb.Any)
	if a == nil || a.GetTypeUrl() == "" || a.GetTypeUrl() == typeURLPrefix+routerType {
		return true
	}
	if m.Get(fields.ByName("is_optional")).Bool() || m.Get(fields.ByName("disabled")).Bool() {
		return false
	}
	tat := at.field("typed_config", "typed_config")
	p := tat.canonical()
	what, name := c.typeOf(a)
	c.unsupported(p, name, "HTTP filter type %s is not supported by Portico (only %s so far)", what, typeURLPrefix+routerType)
	c.prune(p)
	return false
}

// typeOf names the type in an Any for messages (what: quoted, with the type a TypedStruct
// wraps) and for a Feature (name: the type's full name, or the wrapped one's).
func (c *collector) typeOf(a *anypb.Any) (what, name string) {
	url := a.GetTypeUrl()
	what, name = fmt.Sprintf("%q", url), strings.TrimPrefix(url, typeURLPrefix)
	if !isTypedStruct(protoreflect.FullName(name)) {
		return what, name
	}
	inner, err := c.unpack(a)
	if err != nil || inner == nil {
		return what, name
	}
	f := inner.ProtoReflect().Descriptor().Fields().ByName("type_url")
	if f == nil {
		return what, name
	}
	innerURL := inner.ProtoReflect().Get(f).String()
	return fmt.Sprintf("%q wrapping %q", url, innerURL), strings.TrimPrefix(innerURL, typeURLPrefix)
}

// supportedFields is the supported table's entry for a message, from the listener and
// cluster table above or the HTTP ones (subset_hcm.go, subset_route.go).
func supportedFields(n protoreflect.FullName) []protoreflect.Name {
	if f, ok := supported[n]; ok {
		return f
	}
	if f, ok := supportedHCM[n]; ok {
		return f
	}
	if f, ok := supportedDynamic[n]; ok { // dynamic.go
		return f
	}
	for _, m := range [...]map[protoreflect.FullName][]protoreflect.Name{supportedTLS, supportedTLSValidation, supportedTLSUpstream} {
		if f, ok := m[n]; ok {
			return f
		}
	}
	return supportedRoute[n]
}

// acceptedWhole are messages taken as a whole without looking inside: the node identity
// is accepted for compatibility with existing bootstraps but not used.
var acceptedWhole = map[protoreflect.FullName]bool{
	"envoy.config.core.v3.Node": true,
	// Tracing settings change no traffic: Portico has no tracer, so the HCM's tracing and
	// routes' decorators are accepted (the translator warns about tracing) and unused.
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing": true,
	"envoy.config.route.v3.Decorator": true,
	uuidRequestIDType:                 true,
}

// subset reports every set field of m (recursively, into Any values) that is not in the
// supported table. It also runs the validation of the message inside each Any it meets
// (PGV does not look inside them), after that message's own subset check, so that errors
// inside an unsupported field, already reported as such, are not repeated.
func (c *collector) subset(m protoreflect.Message, at loc) {
	md := m.Descriptor()
	if md.FullName() == "google.protobuf.Any" {
		inner, err := c.unpack(m.Interface().(*anypb.Any))
		if err != nil {
			c.addCanonical(at.canonical(), "%v", err)
		} else if inner != nil && isTypedStruct(inner.ProtoReflect().Descriptor().FullName()) {
			p := at.canonical()
			what, name := c.typeOf(m.Interface().(*anypb.Any))
			c.unsupported(p, name, "type %s is not supported by Portico here", what)
			c.prune(p)
		} else if inner != nil {
			c.subset(inner.ProtoReflect(), at)
			c.validate(inner, &at)
		}
		return
	}
	if isWellKnownJSON(md.FullName()) || acceptedWhole[md.FullName()] || acceptedCompat[md.FullName()] {
		return
	}
	if md.FullName() == httpFilterType && !c.httpFilterSupported(m, at) {
		return
	}
	allowed := supportedFields(md.FullName())
	// Over the descriptor rather than with m.Range: a closure would take the location
	// chain to the heap.
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		fat := at.field(string(fd.Name()), string(fd.Name()))
		if !allowedField(md.FullName(), allowed, fd.Name()) {
			p := fat.canonical()
			c.unsupported(p, "", "not supported by Portico")
			c.prune(p)
			continue
		}
		if fd.Message() != nil {
			c.subsetField(fd, m.Get(fd), fat)
		}
	}
}

// subsetField runs the subset check on the messages of one supported field. (A function
// of its own so that each location is taken by address only in the frame it is a
// parameter of: that keeps the chains on the stack.)
func (c *collector) subsetField(fd protoreflect.FieldDescriptor, v protoreflect.Value, at loc) {
	switch {
	case fd.IsList():
		l := v.List()
		for i := 0; i < l.Len(); i++ {
			c.subset(l.Get(i).Message(), at.index(i))
		}
	case fd.IsMap():
		if fd.MapValue().Message() == nil {
			return
		}
		// Maps of messages are rare in the subset. The closure gets the path as a string:
		// capturing at would take every location chain to the heap.
		p := at.canonical()
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			c.subset(mv.Message(), rootLoc(key(p, k.String()), key(p, k.String())))
			return true
		})
	default:
		c.subset(v.Message(), at)
	}
}

func hasName(list []protoreflect.Name, n protoreflect.Name) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

// unpack resolves an Any through the global registry; an empty Any gives nil. The
// message is kept for the stages after the one that first asks.
func (c *collector) unpack(a *anypb.Any) (proto.Message, error) {
	if a == nil || a.GetTypeUrl() == "" {
		return nil, nil
	}
	if m, ok := c.anys[a]; ok {
		return m, nil
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("typed_config %q: %w", a.GetTypeUrl(), err)
	}
	if c.anys == nil {
		c.anys = map[*anypb.Any]proto.Message{}
	}
	c.anys[a] = m
	return m, nil
}

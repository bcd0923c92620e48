package config

import "google.golang.org/protobuf/reflect/protoreflect"

// supportedHCM is the supported table for the HTTP connection manager, its HTTP filters
// and the clusters' HTTP settings (see supported). Fields whose values Portico supports
// only in part are listed and checked by the translator, which names the value it refuses.
var supportedHCM = map[protoreflect.FullName][]protoreflect.Name{
	hcmType: {
		"codec_type", "stat_prefix", "route_config", "rds", "http_filters", "server_name",
		"server_header_transformation", "max_request_headers_kb", "stream_idle_timeout",
		"request_timeout", "request_headers_timeout", "drain_timeout", "delayed_close_timeout",
		"access_log", "use_remote_address", "xff_num_trusted_hops", "skip_xff_append", "via",
		"generate_request_id", "preserve_external_request_id",
		"always_set_request_id_in_response", "forward_client_cert_details", "proxy_100_continue",
		"upgrade_configs", "normalize_path", "merge_slashes", "path_with_escaped_slashes_action",
		"strip_matching_host_port", "strip_any_host_port", "stream_error_on_invalid_http_message",
		"common_http_protocol_options", "http_protocol_options", "tracing", "request_id_extension",
	},
	"envoy.extensions.filters.network.http_connection_manager.v3.RequestIDExtension": {"typed_config"},
	"envoy.extensions.filters.network.http_connection_manager.v3.Rds":                {"config_source", "route_config_name"},
	hcmType + ".UpgradeConfig": {"upgrade_type", "enabled"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter": {
		"name", "typed_config", "is_optional", "disabled",
	},
	routerType: {"dynamic_stats", "start_child_span", "suppress_envoy_headers"},

	"envoy.config.core.v3.HttpProtocolOptions": {
		"idle_timeout", "max_connection_duration", "max_headers_count",
		"headers_with_underscores_action", "max_requests_per_connection",
	},
	"envoy.config.core.v3.Http1ProtocolOptions": {
		"allow_absolute_url", "accept_http_10", "default_host_for_http_10", "allow_chunked_length",
	},

	"envoy.config.cluster.v3.CircuitBreakers": {"thresholds"},
	"envoy.config.cluster.v3.CircuitBreakers.Thresholds": {
		"priority", "max_connections", "max_pending_requests", "max_requests", "max_retries",
		"track_remaining", "retry_budget",
	},
	httpProtocolOptionsType: {
		"common_http_protocol_options", "explicit_http_config", "use_downstream_protocol_config",
		"auto_config", "upstream_http_protocol_options",
	},
	httpProtocolOptionsType + ".ExplicitHttpConfig":      {"http_protocol_options", "http2_protocol_options"},
	httpProtocolOptionsType + ".UseDownstreamHttpConfig": {"http_protocol_options"},
	httpProtocolOptionsType + ".AutoHttpConfig":          {"http_protocol_options"},
	// Only the xDS cluster may speak HTTP/2 (xds_source.go): these shape its gRPC
	// client's connection.
	"envoy.config.core.v3.Http2ProtocolOptions": {"connection_keepalive", "max_concurrent_streams",
		"initial_stream_window_size", "initial_connection_window_size"},
	"envoy.config.core.v3.KeepaliveSettings":                         {"interval", "timeout", "interval_jitter", "connection_idle_interval"},
	"envoy.config.cluster.v3.CircuitBreakers.Thresholds.RetryBudget": {},
}

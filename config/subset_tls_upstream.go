package config

import "google.golang.org/protobuf/reflect/protoreflect"

// supportedTLSUpstream is the supported table for a cluster's tls transport socket
// (UpstreamTlsContext, tls_upstream.go).
var supportedTLSUpstream = map[protoreflect.FullName][]protoreflect.Name{
	upstreamTLSType: {"common_tls_context", "sni", "max_session_keys"},
	// HttpProtocolOptions.upstream_http_protocol_options (the router: per-request SNI).
	"envoy.config.core.v3.UpstreamHttpProtocolOptions": {"auto_sni", "auto_san_validation"},
	// One entry with an empty match only (clusterTransport refuses the rest by name).
	"envoy.config.cluster.v3.Cluster.TransportSocketMatch": {"name", "match", "transport_socket"},
}

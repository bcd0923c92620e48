package config

import "google.golang.org/protobuf/reflect/protoreflect"

// supportedTLS is the supported table for Envoy's tls transport socket on a filter chain
// (DownstreamTlsContext) and the parts of CommonTlsContext both sides share (tls.go).
var supportedTLS = map[protoreflect.FullName][]protoreflect.Name{
	"envoy.config.core.v3.TransportSocket": {"name", "typed_config"},
	rawBufferType:                          {},
	downstreamTLSType: {
		"common_tls_context", "require_client_certificate", "require_sni",
		"session_ticket_keys", "disable_stateless_session_resumption",
		"disable_stateful_session_resumption", "session_timeout", "ocsp_staple_policy",
	},
	"envoy.extensions.transport_sockets.tls.v3.TlsSessionTicketKeys": {"keys"},
	"envoy.extensions.transport_sockets.tls.v3.CommonTlsContext": {
		"tls_params", "tls_certificates", "alpn_protocols",
		"validation_context", "combined_validation_context", // tls_validation.go
	},
	"envoy.extensions.transport_sockets.tls.v3.TlsCertificate": {"certificate_chain", "private_key", "ocsp_staple"},
	"envoy.extensions.transport_sockets.tls.v3.TlsParameters": {
		"tls_minimum_protocol_version", "tls_maximum_protocol_version", "cipher_suites", "ecdh_curves",
	},
}

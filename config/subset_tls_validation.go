package config

import "google.golang.org/protobuf/reflect/protoreflect"

// supportedTLSValidation is the supported table for CertificateValidationContext and what
// it holds (tls_validation.go), on both sides. CommonTlsContext's validation_context and
// combined_validation_context are in supportedTLS (tls.go). Not here, so refused by
// name: custom_validator_config,
// system_root_certs, ca_certificate_provider_instance, watched_directory,
// require_signed_certificate_timestamp, and combined_validation_context's SDS and
// certificate-provider parts.
var supportedTLSValidation = map[protoreflect.FullName][]protoreflect.Name{
	"envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext": {
		"trusted_ca", "trust_chain_verification", "allow_expired_certificate",
		"match_typed_subject_alt_names", "match_subject_alt_names",
		"verify_certificate_hash", "verify_certificate_spki", "suppress_client_ca_list",
		"crl", "only_verify_leaf_cert_crl", "max_verify_depth",
	},
	// oid only selects among other names, which are refused by san_type; Envoy ignores
	// it for the other types.
	"envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher": {"san_type", "matcher", "oid"},
	"envoy.extensions.transport_sockets.tls.v3.CommonTlsContext.CombinedCertificateValidationContext": {
		"default_validation_context",
	},
}

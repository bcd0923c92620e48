package config

import "google.golang.org/protobuf/reflect/protoreflect"

// supportedTLSUpstream is the supported table for a cluster's tls transport socket
// (UpstreamTlsContext, tls_upstream.go).
var supportedTLSUpstream = map[protoreflect.FullName][]protoreflect.Name{}

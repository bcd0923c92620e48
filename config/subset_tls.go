package config

import "google.golang.org/protobuf/reflect/protoreflect"

// supportedTLS is the supported table for Envoy's tls transport socket on a filter chain
// (DownstreamTlsContext) and the parts of CommonTlsContext both sides share (tls.go).
var supportedTLS = map[protoreflect.FullName][]protoreflect.Name{}

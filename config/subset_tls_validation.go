package config

import "google.golang.org/protobuf/reflect/protoreflect"

// supportedTLSValidation is the supported table for CertificateValidationContext and what
// it holds (tls_validation.go), on both sides.
var supportedTLSValidation = map[protoreflect.FullName][]protoreflect.Name{}

package config

import "google.golang.org/protobuf/reflect/protoreflect"

// supportedHCM is the supported table for the HTTP connection manager, its HTTP filters
// and the cluster's HTTP settings (see supported).
var supportedHCM = map[protoreflect.FullName][]protoreflect.Name{}

package config

import "google.golang.org/protobuf/reflect/protoreflect"

// supportedRoute is the supported table for route configurations (see supported).
var supportedRoute = map[protoreflect.FullName][]protoreflect.Name{}

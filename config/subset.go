package config

import (
	"fmt"
	"sort"

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
)

// anySlots lists, for each Any field Portico interprets, the message types it accepts
// there. An Any elsewhere is judged by the allowlist of the field holding it.
var anySlots = map[protoreflect.FullName][]string{
	"envoy.config.listener.v3.Filter.typed_config":         {echoType, tcpProxyType},
	"envoy.config.listener.v3.ListenerFilter.typed_config": {originalDstType, tlsInspectorType, httpInspectorType, proxyProtocolType},
	"envoy.config.accesslog.v3.AccessLog.typed_config":     {fileLogType, stdoutLogType},
}

// supported is the subset of Envoy's API that Portico implements: for each message, the
// fields that may be set. A set field not listed is an error, so that nothing a user
// configures is silently ignored. Messages absent from this table accept no fields
// (well-known types such as Duration are leaves and are not checked here).
var supported = map[protoreflect.FullName][]protoreflect.Name{
	"envoy.config.bootstrap.v3.Bootstrap":                 {"node", "static_resources", "admin"},
	"envoy.config.bootstrap.v3.Bootstrap.StaticResources": {"listeners", "clusters"},
	"envoy.config.bootstrap.v3.Admin":                     {"address"},

	"envoy.config.core.v3.Address":                  {"socket_address"},
	"envoy.config.core.v3.SocketAddress":            {"address", "port_value", "protocol"},
	"envoy.config.core.v3.CidrRange":                {"address_prefix", "prefix_len"},
	"envoy.config.core.v3.SubstitutionFormatString": {"text_format", "text_format_source"},
	"envoy.config.core.v3.DataSource":               {"inline_string"},

	"envoy.config.listener.v3.Listener": {
		"name", "address", "enable_reuse_port", "reuse_port", "bind_to_port",
		"use_original_dst", "listener_filters", "listener_filters_timeout",
		"continue_on_listener_filters_timeout", "filter_chains", "default_filter_chain",
		"per_connection_buffer_limit_bytes", "connection_balance_config",
		"tcp_backlog_size", "max_connections_to_accept_per_socket_event", "transparent",
		"freebind", "traffic_direction", "stat_prefix",
	},
	"envoy.config.listener.v3.Listener.ConnectionBalanceConfig":              {"exact_balance"},
	"envoy.config.listener.v3.Listener.ConnectionBalanceConfig.ExactBalance": {},
	"envoy.config.listener.v3.ListenerFilter":                                {"name", "typed_config"},
	"envoy.config.listener.v3.FilterChain":                                   {"name", "filter_chain_match", "filters"},
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
		"per_connection_buffer_limit_bytes",
	},
	"envoy.config.endpoint.v3.ClusterLoadAssignment": {"cluster_name", "endpoints"},
	"envoy.config.endpoint.v3.LocalityLbEndpoints":   {"lb_endpoints"},
	"envoy.config.endpoint.v3.LbEndpoint":            {"endpoint", "load_balancing_weight"},
	"envoy.config.endpoint.v3.Endpoint":              {"address"},
}

// acceptedWhole are messages taken as a whole without looking inside: the node identity
// is accepted for compatibility with existing bootstraps but not used.
var acceptedWhole = map[protoreflect.FullName]bool{
	"envoy.config.core.v3.Node": true,
}

// subset reports every set field of m (recursively, into Any values) that is not in the
// supported table.
func (c *collector) subset(m protoreflect.Message, at string) {
	md := m.Descriptor()
	if md.FullName() == "google.protobuf.Any" {
		inner, err := unpack(m.Interface().(*anypb.Any))
		if err == nil && inner != nil {
			c.subset(inner.ProtoReflect(), at)
		}
		return
	}
	if isWellKnownJSON(md.FullName()) || acceptedWhole[md.FullName()] {
		return
	}
	allowed := supported[md.FullName()]
	for _, f := range setFields(m) {
		fd, v := f.fd, f.v
		p := field(at, string(fd.Name()))
		if !hasName(allowed, fd.Name()) {
			c.addCanonical(p, "not supported by Portico")
			c.pruned = append(c.pruned, p)
			continue
		}
		if fd.Message() == nil {
			continue
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				c.subset(l.Get(i).Message(), index(p, i))
			}
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				continue
			}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				c.subset(mv.Message(), key(p, k.String()))
				return true
			})
		default:
			c.subset(v.Message(), p)
		}
	}
}

type setField struct {
	fd protoreflect.FieldDescriptor
	v  protoreflect.Value
}

// setFields lists m's set fields in declaration order, so that errors come out in a
// stable order.
func setFields(m protoreflect.Message) []setField {
	var out []setField
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		out = append(out, setField{fd, v})
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].fd.Index() < out[j].fd.Index() })
	return out
}

func hasName(list []protoreflect.Name, n protoreflect.Name) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

// unpack resolves an Any through the global registry; an empty Any gives nil.
func unpack(a *anypb.Any) (proto.Message, error) {
	if a == nil || a.GetTypeUrl() == "" {
		return nil, nil
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("typed_config %q: %w", a.GetTypeUrl(), err)
	}
	return m, nil
}

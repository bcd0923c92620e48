package config

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/request_id/uuid/v3" // the default request_id_extension
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"strings"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/http/httpfilter"
	"github.com/portico-proxy/portico/filters/http/router"
	"github.com/portico-proxy/portico/filters/network/httpconnmgr"
	"github.com/portico-proxy/portico/http/http1"
)

// hcm builds an http_connection_manager.
func (t *translator) hcm(m *hcmv3.HttpConnectionManager, at string) (engine.NetworkFilterFactory, bool) {
	ok := true
	cfg := httpconnmgr.Config{
		StatPrefix:                   m.GetStatPrefix(),
		ServerName:                   m.GetServerName(),
		UseRemoteAddress:             m.GetUseRemoteAddress().GetValue(),
		XffNumTrustedHops:            int(m.GetXffNumTrustedHops()),
		SkipXffAppend:                m.GetSkipXffAppend(),
		Via:                          m.GetVia(),
		GenerateRequestID:            true,
		PreserveExternalRequestID:    m.GetPreserveExternalRequestId(),
		AlwaysSetRequestIDInResponse: m.GetAlwaysSetRequestIdInResponse(),
		NormalizePath:                m.GetNormalizePath().GetValue(),
		MergeSlashes:                 m.GetMergeSlashes(),
		StripMatchingHostPort:        m.GetStripMatchingHostPort(),
		StripAnyHostPort:             m.GetStripAnyHostPort(),
		Proxy100Continue:             m.GetProxy_100Continue(),
		Limits:                       http1.DefaultLimits,
	}
	if m.GetTracing() != nil {
		t.warnf(field(at, "tracing"), "Portico has no tracer: no spans are reported and no trace headers are added")
	}
	if v := m.GetGenerateRequestId(); v != nil {
		cfg.GenerateRequestID = v.GetValue()
	}
	switch m.GetCodecType() {
	case hcmv3.HttpConnectionManager_AUTO, hcmv3.HttpConnectionManager_HTTP1:
	default:
		t.unsupported(field(at, "codec_type"), m.GetCodecType().String(), "%s is not supported by Portico (AUTO or HTTP1: HTTP/1.1 only so far)", m.GetCodecType())
		ok = false
	}
	switch m.GetServerHeaderTransformation() {
	case hcmv3.HttpConnectionManager_OVERWRITE:
		cfg.ServerHeaderTransformation = httpconnmgr.ServerOverwrite
	case hcmv3.HttpConnectionManager_APPEND_IF_ABSENT:
		cfg.ServerHeaderTransformation = httpconnmgr.ServerAppendIfAbsent
	case hcmv3.HttpConnectionManager_PASS_THROUGH:
		cfg.ServerHeaderTransformation = httpconnmgr.ServerPassThrough
	}
	if v := m.GetMaxRequestHeadersKb(); v != nil {
		cfg.Limits.MaxHeadersBytes = int(v.GetValue()) << 10
	}
	cfg.StreamIdleTimeout = t.timeout(m.GetStreamIdleTimeout(), httpconnmgr.DefaultStreamIdleTimeout, field(at, "stream_idle_timeout"), true)
	cfg.RequestTimeout = t.timeout(m.GetRequestTimeout(), 0, field(at, "request_timeout"), true)
	cfg.RequestHeadersTimeout = t.timeout(m.GetRequestHeadersTimeout(), 0, field(at, "request_headers_timeout"), true)
	cfg.DrainTimeout = t.timeout(m.GetDrainTimeout(), httpconnmgr.DefaultDrainTimeout, field(at, "drain_timeout"), true)
	cfg.DelayedCloseTimeout = t.timeout(m.GetDelayedCloseTimeout(), httpconnmgr.DefaultDelayedCloseTimeout, field(at, "delayed_close_timeout"), true)

	cfg.IdleTimeout = httpconnmgr.DefaultIdleTimeout
	if po := m.GetCommonHttpProtocolOptions(); po != nil {
		pat := field(at, "common_http_protocol_options")
		cfg.IdleTimeout = t.timeout(po.GetIdleTimeout(), httpconnmgr.DefaultIdleTimeout, field(pat, "idle_timeout"), true)
		cfg.MaxConnectionDuration = t.timeout(po.GetMaxConnectionDuration(), 0, field(pat, "max_connection_duration"), true)
		if v := po.GetMaxHeadersCount(); v != nil {
			cfg.Limits.MaxHeadersCount = int(v.GetValue())
		}
		if v := po.GetMaxRequestsPerConnection(); v != nil {
			cfg.MaxRequestsPerConnection = int(v.GetValue())
		}
		switch po.GetHeadersWithUnderscoresAction() {
		case corev3.HttpProtocolOptions_ALLOW:
			cfg.Limits.HeadersWithUnderscores = http1.UnderscoreAllow
		case corev3.HttpProtocolOptions_REJECT_REQUEST:
			cfg.Limits.HeadersWithUnderscores = http1.UnderscoreRejectRequest
		case corev3.HttpProtocolOptions_DROP_HEADER:
			cfg.Limits.HeadersWithUnderscores = http1.UnderscoreDropHeader
		}
	}
	if po := m.GetHttpProtocolOptions(); po != nil {
		pat := field(at, "http_protocol_options")
		cfg.Limits.AcceptHTTP10 = po.GetAcceptHttp_10()
		cfg.Limits.DefaultHostForHTTP10 = po.GetDefaultHostForHttp_10()
		if v := po.GetAllowAbsoluteUrl(); v != nil && !v.GetValue() {
			t.unsupported(field(pat, "allow_absolute_url"), "false", "false is not supported by Portico (absolute URLs are always accepted, as by Envoy's default)")
			ok = false
		}
		if po.GetAllowChunkedLength() {
			t.unsupported(field(pat, "allow_chunked_length"), "true", "true is not supported by Portico: a request with both Content-Length and Transfer-Encoding is refused (request smuggling)")
			ok = false
		}
	}
	if v := m.GetStreamErrorOnInvalidHttpMessage(); v != nil && v.GetValue() {
		t.unsupported(field(at, "stream_error_on_invalid_http_message"), "true", "true is not supported by Portico: after an HTTP/1 protocol error the connection is closed")
		ok = false
	}
	switch m.GetForwardClientCertDetails() {
	case hcmv3.HttpConnectionManager_SANITIZE:
	default:
		t.unsupported(field(at, "forward_client_cert_details"), m.GetForwardClientCertDetails().String(), "%s is not supported by Portico (SANITIZE only: x-forwarded-client-cert is removed)", m.GetForwardClientCertDetails())
		ok = false
	}
	switch m.GetPathWithEscapedSlashesAction() {
	case hcmv3.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT, hcmv3.HttpConnectionManager_KEEP_UNCHANGED:
	default:
		t.unsupported(field(at, "path_with_escaped_slashes_action"), m.GetPathWithEscapedSlashesAction().String(), "%s is not supported by Portico (KEEP_UNCHANGED)", m.GetPathWithEscapedSlashesAction())
		ok = false
	}
	for i, u := range m.GetUpgradeConfigs() {
		uat := index(field(at, "upgrade_configs"), i)
		if v := u.GetEnabled(); v != nil && !v.GetValue() {
			continue
		}
		typ := strings.ToLower(u.GetUpgradeType())
		if typ == "connect" {
			t.unsupported(field(uat, "upgrade_type"), "CONNECT", "CONNECT is not supported by Portico yet")
			ok = false
			continue
		}
		cfg.Upgrades = append(cfg.Upgrades, typ)
	}

	rc := m.GetRouteConfig()
	if r := m.GetRds(); r != nil {
		p, rok := t.rds(r, field(at, "rds"), cfg.StatPrefix) // rds.go
		ok = ok && rok
		cfg.RDS = p
	} else if rc == nil {
		// Without any route specifier protoc-gen-validate has said so; scoped_routes is
		// reported by the subset check.
		ok = false
	} else {
		tab, rok := t.routeConfig(rc, field(at, "route_config"))
		if !rok || !t.routeClusters(rc, field(at, "route_config")) {
			ok = false
		}
		cfg.Routes = tab
	}

	filters, fok := t.httpFilters(m, at, cfg.Proxy100Continue)
	ok = ok && fok
	cfg.Filters = filters

	for i, al := range m.GetAccessLog() {
		l, lok := t.accessLog(al, index(field(at, "access_log"), i))
		if !lok {
			ok = false
			continue
		}
		cfg.AccessLogs = append(cfg.AccessLogs, l)
	}
	if !ok || cfg.StatPrefix == "" {
		return nil, false
	}
	f, err := httpconnmgr.New(cfg, t.workers)
	if err != nil {
		t.errorf(at, "%v", err)
		return nil, false
	}
	t.cfg.StatsSources = append(t.cfg.StatsSources, f)
	return f, true
}

// httpFilters builds the HTTP filter chain: the router, last. Any other filter is an
// error naming it unless it is optional (is_optional: Envoy skips an optional filter it
// does not know) or disabled.
func (t *translator) httpFilters(m *hcmv3.HttpConnectionManager, at string, proxy100 bool) ([]httpfilter.Factory, bool) {
	var out []httpfilter.Factory
	ok := true
	fs := m.GetHttpFilters()
	for i, hf := range fs {
		fat := index(field(at, "http_filters"), i)
		if hf.GetDisabled() {
			continue
		}
		tc := typedOrNil(hf.GetTypedConfig())
		var rc *routerv3.Router
		switch {
		case tc == nil && hf.GetConfigType() != nil:
			t.unsupported(field(fat, "config_discovery"), "", "not supported by Portico")
			ok = false
			continue
		case tc == nil && hf.GetName() == router.Name:
			rc = &routerv3.Router{}
		case tc == nil:
			if hf.GetIsOptional() {
				t.warnf(fat, "optional HTTP filter %q is not supported by Portico: skipped", hf.GetName())
				continue
			}
			t.unsupported(field(fat, "name"), hf.GetName(), "HTTP filter %q is not supported by Portico (only %s so far)", hf.GetName(), router.Name)
			ok = false
			continue
		case tc.GetTypeUrl() != typeURLPrefix+routerType:
			// Reported (or, optional, skipped) by the subset check.
			if hf.GetIsOptional() {
				t.warnf(fat, "optional HTTP filter %q is not supported by Portico: skipped", hf.GetName())
			} else {
				ok = false
			}
			continue
		default:
			msg, mok := t.typedConfig(tc, field(fat, "typed_config"))
			if !mok {
				ok = false
				continue
			}
			r, isRouter := msg.(*routerv3.Router)
			if !isRouter {
				if hf.GetIsOptional() {
					t.warnf(fat, "optional HTTP filter %q is not supported by Portico: skipped", hf.GetName())
					continue
				}
				t.errorf(field(fat, "typed_config"), "HTTP filter %q (%s) is not supported by Portico (only %s so far)", hf.GetName(), tc.GetTypeUrl(), router.Name)
				ok = false
				continue
			}
			rc = r
		}
		if i != len(fs)-1 {
			t.errorf(fat, "the router must be the last HTTP filter")
			ok = false
			continue
		}
		out = append(out, router.New(router.Config{
			SuppressEnvoyHeaders: rc.GetSuppressEnvoyHeaders(),
			Proxy100Continue:     proxy100,
		}, t.upstreams()))
	}
	if len(fs) == 0 && !t.c.reported(field(at, "http_filters")) {
		// Envoy's connection manager adds the router when no HTTP filter is listed.
		return []httpfilter.Factory{router.New(router.Config{Proxy100Continue: proxy100}, t.upstreams())}, ok
	}
	if len(out) == 0 && ok {
		t.errorf(field(at, "http_filters"), "the router (%s) is required as the last HTTP filter", router.Name)
		ok = false
	}
	return out, ok
}

// upstreams is the configuration's one set of HTTP pools, made when a router first
// needs it (the clusters are all built by then).
func (t *translator) upstreams() *router.Upstreams {
	if t.up == nil {
		t.up = router.NewUpstreams(t.registry, t.workers)
		for _, c := range t.cfg.Clusters {
			t.cfg.StatsSources = append(t.cfg.StatsSources, router.Attach(c))
		}
	}
	return t.up
}

// clusterHTTP reads a cluster's circuit breakers and HTTP protocol options into cc.
func (t *translator) clusterHTTP(cl *clusterv3.Cluster, cc *engine.ClusterConfig, at string) bool {
	ok := true
	th := engine.DefaultThresholds()
	for i, x := range cl.GetCircuitBreakers().GetThresholds() {
		if x.GetPriority() != corev3.RoutingPriority_DEFAULT {
			// Portico routes everything at the default priority.
			continue
		}
		xat := index(field(field(at, "circuit_breakers"), "thresholds"), i)
		if x.GetRetryBudget() != nil {
			t.unsupported(field(xat, "retry_budget"), "", "not supported by Portico")
			ok = false
		}
		if v := x.GetMaxConnections(); v != nil {
			th.MaxConnections = v.GetValue()
		}
		if v := x.GetMaxPendingRequests(); v != nil {
			th.MaxPendingRequests = v.GetValue()
		}
		if v := x.GetMaxRequests(); v != nil {
			th.MaxRequests = v.GetValue()
		}
		if v := x.GetMaxRetries(); v != nil {
			th.MaxRetries = v.GetValue()
		}
	}
	cc.CircuitBreakers = th
	cc.HTTP.IdleTimeout = engine.DefaultHTTPIdleTimeout
	common := func(po *corev3.HttpProtocolOptions, pat string) {
		if po == nil {
			return
		}
		cc.HTTP.IdleTimeout = t.timeout(po.GetIdleTimeout(), engine.DefaultHTTPIdleTimeout, field(pat, "idle_timeout"), true)
		if po.GetIdleTimeout() != nil && cc.HTTP.IdleTimeout == 0 {
			cc.HTTP.IdleTimeout = -1 // 0 disables the idle timeout in Envoy
		}
		cc.HTTP.MaxConnectionDuration = t.timeout(po.GetMaxConnectionDuration(), 0, field(pat, "max_connection_duration"), true)
		if v := po.GetMaxRequestsPerConnection(); v != nil {
			cc.HTTP.MaxRequestsPerConnection = int(v.GetValue())
		}
	}
	//lint:ignore SA1019 deprecated but supported
	common(cl.GetCommonHttpProtocolOptions(), field(at, "common_http_protocol_options"))
	//lint:ignore SA1019 deprecated but supported
	if v := cl.GetMaxRequestsPerConnection(); v != nil {
		cc.HTTP.MaxRequestsPerConnection = int(v.GetValue())
	}
	//lint:ignore SA1019 deprecated, but control planes still write it
	h2 := cl.GetHttp2ProtocolOptions() != nil
	if by := t.grpcClusters[cl.GetName()]; by != "" {
		t.grpcH2[cl.GetName()] = http2Options(cl) // xds_source.go
		if !speaksHTTP2(cl) {
			t.errorf(at, "cluster %q is the gRPC service of %s and must speak HTTP/2: set typed_extension_protocol_options %s with explicit_http_config.http2_protocol_options (or the older http2_protocol_options)",
				cl.GetName(), t.c.userPath(by), httpProtocolOptionsName)
			ok = false
		}
	} else if h2 {
		t.unsupported(field(at, "http2_protocol_options"), "", "HTTP/2 upstreams are not supported by Portico yet (only for the cluster of a gRPC management server)")
		ok = false
	}
	for name, a := range cl.GetTypedExtensionProtocolOptions() {
		pat := key(field(at, "typed_extension_protocol_options"), name)
		msg, mok := t.typedConfig(a, pat)
		if !mok {
			ok = false
			continue
		}
		po, isHTTP := msg.(*upstreamhttpv3.HttpProtocolOptions)
		if !isHTTP {
			t.errorf(pat, "type %q is not supported by Portico (only %s)", a.GetTypeUrl(), httpProtocolOptionsType)
			ok = false
			continue
		}
		common(po.GetCommonHttpProtocolOptions(), field(pat, "common_http_protocol_options"))
		switch pc := po.GetUpstreamProtocolOptions().(type) {
		case *upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_:
			if t.grpcClusters[cl.GetName()] != "" && pc.ExplicitHttpConfig.GetHttp2ProtocolOptions() != nil {
				// The management server's cluster: its gRPC client speaks HTTP/2.
				break
			}
			if pc.ExplicitHttpConfig.GetHttpProtocolOptions() == nil {
				t.unsupported(field(field(pat, "explicit_http_config"), "http2_protocol_options"), "", "HTTP/2 upstreams are not supported by Portico yet")
				ok = false
			}
		case *upstreamhttpv3.HttpProtocolOptions_UseDownstreamProtocolConfig:
			// Downstream is HTTP/1.1, so is upstream.
		case *upstreamhttpv3.HttpProtocolOptions_AutoConfig:
			t.warnf(field(pat, "auto_config"), "Portico speaks HTTP/1.1 to this cluster (no HTTP/2 yet)")
		}
	}
	return ok
}

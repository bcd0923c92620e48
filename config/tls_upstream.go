package config

import (
	ctls "crypto/tls"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/transport/tls"
)

// clusterTransport translates a cluster's transport_socket (or a trivial
// transport_socket_matches: one entry that matches every endpoint) into cc.TransportSocket,
// and registers the context's stats under cluster.<name>.ssl.*.
func (t *translator) clusterTransport(cl *clusterv3.Cluster, cc *engine.ClusterConfig, at string) bool {
	ok := t.clusterTransportSocket(cl, cc, at)
	t.autoSNI(cl, cc, at)
	return ok
}

// autoSNI reads upstream_http_protocol_options (auto_sni, auto_san_validation) from the
// cluster's HttpProtocolOptions into cc.HTTP: the router then gives each request's
// upstream connection the request's host as SNI and name to verify, pooled by it.
func (t *translator) autoSNI(cl *clusterv3.Cluster, cc *engine.ClusterConfig, at string) {
	for name, a := range cl.GetTypedExtensionProtocolOptions() {
		m, err := t.c.unpack(a) // reported by clusterHTTP if it does not unpack
		po, isHTTP := m.(*upstreamhttpv3.HttpProtocolOptions)
		if err != nil || !isHTTP || po.GetUpstreamHttpProtocolOptions() == nil {
			continue
		}
		u := po.GetUpstreamHttpProtocolOptions()
		cc.HTTP.AutoSNI = cc.HTTP.AutoSNI || u.GetAutoSni()
		cc.HTTP.AutoSANValidation = cc.HTTP.AutoSANValidation || u.GetAutoSanValidation()
		if (u.GetAutoSni() || u.GetAutoSanValidation()) && cc.TransportSocket == nil {
			t.warnf(field(key(field(at, "typed_extension_protocol_options"), name), "upstream_http_protocol_options"),
				"auto_sni and auto_san_validation have no effect without a TLS transport socket")
		}
	}
}

func (t *translator) clusterTransportSocket(cl *clusterv3.Cluster, cc *engine.ClusterConfig, at string) bool {
	ts, tat := cl.GetTransportSocket(), field(at, "transport_socket")
	if ms := cl.GetTransportSocketMatches(); len(ms) > 0 {
		mat := field(at, "transport_socket_matches")
		if len(ms) > 1 || len(ms[0].GetMatch().GetFields()) > 0 {
			// Choosing a socket per endpoint needs the endpoints' metadata, which Portico
			// does not read.
			t.unsupported(mat, "", "transport_socket_matches with a match (or more than one entry) is not supported by Portico: use transport_socket")
			return false
		}
		// An empty match selects every endpoint: Envoy uses this socket, not transport_socket.
		ts, tat = ms[0].GetTransportSocket(), field(index(mat, 0), "transport_socket")
		if ts == nil {
			t.errorf(tat, "required")
			return false
		}
	}
	if ts == nil {
		return true
	}
	kind, ok := t.transportSocketKind(ts, tat)
	if !ok {
		return false
	}
	if kind == rawBufferSocketName {
		return true // the engine's own path
	}
	cat := field(tat, "typed_config")
	m, ok := t.typedConfig(ts.GetTypedConfig(), cat)
	if !ok {
		return false
	}
	ctx, isUp := m.(*tlsv3.UpstreamTlsContext)
	if !isUp {
		t.errorf(cat, "a cluster originates TLS with an UpstreamTlsContext, not %s", m.ProtoReflect().Descriptor().FullName())
		return false
	}
	cfg, ok := t.upstreamTLS(ctx, cat)
	if !ok {
		return false
	}
	if hcs := cl.GetHealthChecks(); len(hcs) > 0 {
		// Envoy's health checks go through the cluster's transport socket; Portico's
		// checker would send them in plaintext and mark every host unhealthy.
		t.unsupported(field(at, "health_checks"), "", "health checks of a TLS cluster are not supported by Portico yet")
		return false
	}
	f, err := tls.NewUpstream(cfg)
	if err != nil {
		t.errorf(cat, "%v", err)
		return false
	}
	cc.TransportSocket = f
	t.addTLSStats(&f.Stats, "cluster", [][2]string{{"cluster", cl.GetName()}})
	return true
}

// upstreamTLS translates an UpstreamTlsContext (at is its typed_config).
func (t *translator) upstreamTLS(ctx *tlsv3.UpstreamTlsContext, at string) (tls.UpstreamConfig, bool) {
	var cfg tls.UpstreamConfig
	cat := field(at, "common_tls_context")
	cc := ctx.GetCommonTlsContext()
	common, ok := t.commonTLS(cc, cat)
	if !ok {
		return cfg, false
	}
	if len(common.certs) > 1 {
		t.errorf(index(field(cat, "tls_certificates"), 1), "a client context takes at most one certificate (%d are given)", len(common.certs))
		return cfg, false
	}
	cfg.SNI = ctx.GetSni()
	cfg.Certificates = common.certs
	cfg.ALPN = common.alpn
	cfg.CipherSuites, cfg.Curves = common.ciphers, common.curves
	cfg.MinVersion, cfg.MaxVersion = common.minVersion, common.maxVersion
	// Envoy's client defaults: TLS 1.2 at least and at most.
	if !t.versionRange(common, ctls.VersionTLS12, field(cat, "tls_params"), " (a client's default maximum is TLSv1_2)") {
		return cfg, false
	}
	cfg.Validation = common.validation
	switch k := ctx.GetMaxSessionKeys(); {
	case k == nil:
		cfg.MaxSessionKeys = 0 // Envoy's default: 1
	case k.GetValue() == 0:
		cfg.MaxSessionKeys = -1 // resumption off
	default:
		cfg.MaxSessionKeys = int(k.GetValue())
	}
	return cfg, true
}

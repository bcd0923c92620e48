package config

import (
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	proxyprotocolv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/proxy_protocol/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	echov3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/echo/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"os"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/accesslog"
	"github.com/portico-proxy/portico/filters/listener/httpinspector"
	"github.com/portico-proxy/portico/filters/listener/originaldst"
	"github.com/portico-proxy/portico/filters/listener/proxyprotocol"
	"github.com/portico-proxy/portico/filters/listener/tlsinspector"
	"github.com/portico-proxy/portico/filters/network/echo"
	"github.com/portico-proxy/portico/filters/network/httpconnmgr"
	"github.com/portico-proxy/portico/filters/network/tcpproxy"
)

// Envoy's extension names for the access loggers, used when a typed_config is absent.
const (
	fileLogName   = "envoy.access_loggers.file"
	stdoutLogName = "envoy.access_loggers.stdout"
)

func newOriginalDst() engine.ListenerFilter { return originaldst.New() }

// networkFilter builds one network filter's factory; terminal reports whether Envoy treats
// the filter as terminal (it must then be last in its chain).
func (t *translator) networkFilter(f *listenerv3.Filter, at string) (nf engine.NetworkFilterFactory, terminal, ok bool) {
	tc := typedOrNil(f.GetTypedConfig())
	if tc == nil && t.c.reported(field(at, "typed_config")) {
		return nil, false, false
	}
	if tc == nil {
		// Like Envoy, find the factory by name when there is no typed_config; only a
		// filter without settings can be configured this way.
		switch f.GetName() {
		case echo.Name:
			return echo.Factory{}, true, true
		case tcpproxy.Name:
			t.errorf(field(at, "typed_config"), "required for %s (stat_prefix and cluster)", tcpproxy.Name)
		case httpconnmgr.Name:
			t.errorf(field(at, "typed_config"), "required for %s (stat_prefix, route_config, http_filters)", httpconnmgr.Name)
		default:
			t.errorf(field(at, "name"), "unknown network filter %q without a typed_config (Portico supports %s, %s)", f.GetName(), echo.Name, tcpproxy.Name)
		}
		return nil, false, false
	}
	tat := field(at, "typed_config")
	m, ok := t.typedConfig(tc, tat)
	if !ok {
		return nil, false, false
	}
	switch m := m.(type) {
	case *echov3.Echo:
		return echo.Factory{}, true, true
	case *tcpproxyv3.TcpProxy:
		f, ok := t.tcpProxy(m, tat)
		return f, true, ok
	case *hcmv3.HttpConnectionManager:
		f, ok := t.hcm(m, tat)
		return f, true, ok
	}
	t.errorf(tat, "type %q is not a network filter Portico supports", tc.GetTypeUrl())
	return nil, false, false
}

func (t *translator) tcpProxy(tp *tcpproxyv3.TcpProxy, at string) (engine.NetworkFilterFactory, bool) {
	ok := true
	cfg := tcpproxy.Config{
		Registry:           t.registry,
		StatPrefix:         tp.GetStatPrefix(),
		IdleTimeout:        t.timeout(tp.GetIdleTimeout(), tcpproxy.DefaultIdleTimeout, field(at, "idle_timeout"), true),
		MaxConnectAttempts: 1,
	}
	if v := tp.GetMaxConnectAttempts(); v != nil {
		cfg.MaxConnectAttempts = int(v.GetValue())
	}
	ref := func(name, at string, weight uint32) {
		c, defined := t.clusters[name]
		switch {
		case !defined && t.dyn != nil:
			// An LDS listener may name a cluster CDS has yet to bring (as in Envoy): the
			// name is looked up per connection, which fails as no-cluster until then.
			cfg.Clusters = append(cfg.Clusters, tcpproxy.WeightedCluster{Name: name, Weight: weight})
		case !defined:
			t.errorf(at, "cluster %q is not defined (%s)", name, t.definedClusters())
			ok = false
		case c == nil:
			ok = false // the cluster itself has errors, reported at its definition
		default:
			cfg.Clusters = append(cfg.Clusters, tcpproxy.WeightedCluster{Cluster: c, Name: name, Weight: weight})
		}
	}
	switch spec := tp.GetClusterSpecifier().(type) {
	case *tcpproxyv3.TcpProxy_Cluster:
		ref(spec.Cluster, field(at, "cluster"), 1)
	case *tcpproxyv3.TcpProxy_WeightedClusters:
		for i, cw := range spec.WeightedClusters.GetClusters() {
			ref(cw.GetName(), field(index(field(field(at, "weighted_clusters"), "clusters"), i), "name"), cw.GetWeight())
		}
	default:
		ok = false // protoc-gen-validate: one of cluster, weighted_clusters is required
	}
	for i, al := range tp.GetAccessLog() {
		l, lok := t.accessLog(al, index(field(at, "access_log"), i))
		if !lok {
			ok = false
			continue
		}
		cfg.AccessLogs = append(cfg.AccessLogs, l)
	}
	if !ok || cfg.StatPrefix == "" || len(cfg.Clusters) == 0 {
		return nil, false
	}
	f, err := tcpproxy.NewFactory(cfg, t.workers)
	if err != nil {
		t.errorf(at, "%v", err)
		return nil, false
	}
	t.cfg.StatsSources = append(t.cfg.StatsSources, f)
	return f, true
}

// accessLog builds one access_log entry. The format is checked before any file is opened.
func (t *translator) accessLog(al *accesslogv3.AccessLog, at string) (accesslog.Logger, bool) {
	tc := typedOrNil(al.GetTypedConfig())
	if tc == nil && t.c.reported(field(at, "typed_config")) {
		return nil, false
	}
	if tc == nil {
		if al.GetName() == stdoutLogName {
			return t.openLog(at, nil, func() (accesslog.Logger, error) { return accesslog.NewStdout("") })
		}
		t.errorf(field(at, "typed_config"), "required (Portico supports %s and %s)", fileLogName, stdoutLogName)
		return nil, false
	}
	tat := field(at, "typed_config")
	m, ok := t.typedConfig(tc, tat)
	if !ok {
		return nil, false
	}
	switch m := m.(type) {
	case *filev3.FileAccessLog:
		// Envoy still honours the deprecated field; so do we.
		format, fat := m.GetFormat(), field(tat, "format") //lint:ignore SA1019 deprecated but supported
		if lf := m.GetLogFormat(); lf != nil {
			format, fat = t.formatString(lf, field(tat, "log_format"))
		}
		if !t.checkFormat(format, fat) {
			return nil, false
		}
		path := m.GetPath()
		if path == "" {
			return nil, false // protoc-gen-validate: path is required
		}
		return t.openLog(field(tat, "path"), func() error { return accesslog.CheckFile(path) },
			func() (accesslog.Logger, error) { return accesslog.NewFile(path, format) })
	case *streamv3.StdoutAccessLog:
		format, fat := "", tat
		if lf := m.GetLogFormat(); lf != nil {
			format, fat = t.formatString(lf, field(tat, "log_format"))
		}
		if !t.checkFormat(format, fat) {
			return nil, false
		}
		return t.openLog(tat, nil, func() (accesslog.Logger, error) { return accesslog.NewStdout(format) })
	}
	t.errorf(tat, "type %q is not an access logger Portico supports", tc.GetTypeUrl())
	return nil, false
}

// formatString reads the text of a SubstitutionFormatString and the path it came from;
// other kinds (json_format, files) are reported by the subset check.
func (t *translator) formatString(f *corev3.SubstitutionFormatString, at string) (string, string) {
	if src := f.GetTextFormatSource(); src != nil {
		b, p, _ := t.dataSource(src, field(at, "text_format_source"))
		return string(b), p
	}
	return f.GetTextFormat(), field(at, "text_format") //lint:ignore SA1019 deprecated but supported
}

func (t *translator) checkFormat(format, at string) bool {
	if _, err := accesslog.Compile(format); err != nil {
		t.errorf(at, "%v", err)
		return false
	}
	return true
}

// openLog opens a logger, or with checkOnly runs check (if any) and returns a Discard
// logger, so that checking a configuration creates nothing.
func (t *translator) openLog(at string, check func() error, open func() (accesslog.Logger, error)) (accesslog.Logger, bool) {
	if t.checkOnly {
		if check != nil {
			if err := check(); err != nil {
				t.errorf(at, "%v", err)
				return nil, false
			}
		}
		return accesslog.Discard{}, true
	}
	l, err := open()
	if err != nil {
		t.errorf(at, "%v", err)
		return nil, false
	}
	t.closer(l)
	if src, ok := l.(engine.StatsSource); ok { // an access-log Writer's filesystem.* stats
		t.cfg.StatsSources = append(t.cfg.StatsSources, src)
	}
	return l, true
}

// listenerFilter builds one listener filter.
func (t *translator) listenerFilter(lf *listenerv3.ListenerFilter, at string) (engine.ListenerFilter, bool) {
	tc := typedOrNil(lf.GetTypedConfig())
	if tc == nil && t.c.reported(field(at, "typed_config")) {
		return nil, false
	}
	if tc == nil {
		// By name, as Envoy does without a typed_config: every supported listener
		// filter has usable defaults.
		switch lf.GetName() {
		case originaldst.Name:
			return originaldst.New(), true
		case tlsinspector.Name:
			return tlsinspector.New(tlsinspector.Config{}), true
		case httpinspector.Name:
			return httpinspector.New(httpinspector.Config{}), true
		case proxyprotocol.Name:
			return proxyprotocol.New(proxyprotocol.Config{}), true
		}
		t.errorf(field(at, "name"), "unknown listener filter %q without a typed_config (Portico supports %s, %s, %s, %s)",
			lf.GetName(), originaldst.Name, tlsinspector.Name, httpinspector.Name, proxyprotocol.Name)
		return nil, false
	}
	tat := field(at, "typed_config")
	m, ok := t.typedConfig(tc, tat)
	if !ok {
		return nil, false
	}
	switch m := m.(type) {
	case *originaldstv3.OriginalDst:
		return originaldst.New(), true
	case *httpinspectorv3.HttpInspector:
		return httpinspector.New(httpinspector.Config{}), true
	case *tlsinspectorv3.TlsInspector:
		if t.c.errorsUnder(tat) {
			return nil, false // its own checks would repeat protoc-gen-validate's
		}
		cfg := tlsinspector.Config{
			MaxClientHelloSize:                        m.GetMaxClientHelloSize().GetValue(),
			InitialReadBufferSize:                     m.GetInitialReadBufferSize().GetValue(),
			CloseConnectionOnClientHelloParsingErrors: m.GetCloseConnectionOnClientHelloParsingErrors(),
		}
		if err := cfg.Validate(); err != nil {
			t.errorf(tat, "%v", err)
			return nil, false
		}
		return tlsinspector.New(cfg), true
	case *proxyprotocolv3.ProxyProtocol:
		cfg := proxyprotocol.Config{AllowRequestsWithoutProxyProtocol: m.GetAllowRequestsWithoutProxyProtocol()}
		for i, v := range m.GetDisallowedVersions() {
			switch v {
			case corev3.ProxyProtocolConfig_V1:
				cfg.DisallowedVersions |= proxyprotocol.V1
			case corev3.ProxyProtocolConfig_V2:
				cfg.DisallowedVersions |= proxyprotocol.V2
			default:
				// The proto has no rule against undefined numbers.
				t.errorf(index(field(tat, "disallowed_versions"), i), "unknown PROXY protocol version %d (V1 or V2)", v)
				return nil, false
			}
		}
		return proxyprotocol.New(cfg), true
	}
	t.errorf(tat, "type %q is not a listener filter Portico supports", tc.GetTypeUrl())
	return nil, false
}

// typedOrNil is a typed_config, or nil for an empty one (`typed_config: {}`, no "@type"):
// Envoy then finds the extension by its name, as without a typed_config.
func typedOrNil(a *anypb.Any) *anypb.Any {
	if a.GetTypeUrl() == "" && len(a.GetValue()) == 0 {
		return nil
	}
	return a
}

// dataSource reads an Envoy DataSource (inline_string, inline_bytes, filename,
// environment_variable) once, at load, as Envoy does for these fields. It returns the
// bytes and the path of the field that held them; a file that cannot be read, or an
// environment variable that is not set, is an error at that field.
func (t *translator) dataSource(ds *corev3.DataSource, at string) ([]byte, string, bool) {
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), field(at, "inline_string"), true
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, field(at, "inline_bytes"), true
	case *corev3.DataSource_Filename:
		p := field(at, "filename")
		b, err := os.ReadFile(s.Filename)
		if err != nil {
			t.errorf(p, "%v", err)
			return nil, p, false
		}
		return b, p, true
	case *corev3.DataSource_EnvironmentVariable:
		p := field(at, "environment_variable")
		v, ok := os.LookupEnv(s.EnvironmentVariable)
		if !ok {
			t.errorf(p, "environment variable %q is not set", s.EnvironmentVariable)
			return nil, p, false
		}
		return []byte(v), p, true
	}
	return nil, at, true
}

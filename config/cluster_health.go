package config

import (
	"encoding/hex"
	"os"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/http/route"
	"github.com/portico-proxy/portico/upstream/dns"
	"github.com/portico-proxy/portico/upstream/health"
)

// A cluster's health: active health_checks (upstream/health), passive
// outlier_detection (engine.OutlierDetector), and ORIGINAL_DST clusters. cluster() calls
// these with a line each.

// A health checker is a Warmer: the binary waits for every host's first check before the
// listeners accept, as Envoy's cluster initialisation does.
var _ Warmer = (*health.Checker)(nil)

// clusterHealth sets up the health checker and the outlier detector of a built cluster
// c, adding their runners and stats to the configuration. It reports false on an error.
func (t *translator) clusterHealth(cl *clusterv3.Cluster, c *engine.Cluster, at string) bool {
	ok := true
	switch cl.GetType() {
	case clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
		// upstream/dns reports their membership_* gauges with its own stats.
	default:
		t.cfg.StatsSources = append(t.cfg.StatsSources, c.MembershipStats())
	}
	hcs := cl.GetHealthChecks()
	if len(hcs) > 1 {
		t.errorf(index(field(at, "health_checks"), 1), "Portico runs one health check per cluster (%d are given)", len(hcs))
		ok = false
	}
	var hcfg *health.Config
	if len(hcs) > 0 {
		hcfg = t.healthCheck(hcs[0], index(field(at, "health_checks"), 0))
		ok = ok && hcfg != nil
	}
	var ocfg *engine.OutlierConfig
	if od := cl.GetOutlierDetection(); od != nil {
		ocfg = t.outlierDetection(od, field(at, "outlier_detection"))
		ok = ok && ocfg != nil
	}
	if !ok {
		return false
	}
	if ocfg != nil {
		d := c.SetOutlierDetection(*ocfg)
		t.cfg.Runners = append(t.cfg.Runners, d)
		t.cfg.StatsSources = append(t.cfg.StatsSources, d)
	}
	if hcfg != nil {
		for _, r := range t.cfg.Runners {
			if d, isDNS := r.(*dns.Cluster); isDNS && d.Cluster() == c {
				hcfg.HostsReady = d.Warm() // a DNS cluster's first hosts come from its first answer
			}
		}
		k, err := health.New(c, *hcfg, !cl.GetIgnoreHealthOnHostRemoval())
		if err != nil {
			t.errorf(index(field(at, "health_checks"), 0), "%v", err)
			return false
		}
		t.cfg.Runners = append(t.cfg.Runners, k)
		t.cfg.StatsSources = append(t.cfg.StatsSources, k)
	}
	return true
}

// healthCheck translates one HealthCheck (nil on an error, already reported).
func (t *translator) healthCheck(hc *corev3.HealthCheck, at string) *health.Config {
	ok := true
	cfg := &health.Config{
		Timeout:                  t.timeout(hc.GetTimeout(), 0, field(at, "timeout"), true),
		Interval:                 t.timeout(hc.GetInterval(), 0, field(at, "interval"), true),
		InitialJitter:            t.timeout(hc.GetInitialJitter(), 0, field(at, "initial_jitter"), true),
		IntervalJitter:           t.timeout(hc.GetIntervalJitter(), 0, field(at, "interval_jitter"), true),
		IntervalJitterPercent:    hc.GetIntervalJitterPercent(),
		UnhealthyThreshold:       hc.GetUnhealthyThreshold().GetValue(),
		HealthyThreshold:         hc.GetHealthyThreshold().GetValue(),
		NoTrafficInterval:        t.timeout(hc.GetNoTrafficInterval(), 60*time.Second, field(at, "no_traffic_interval"), true),
		NoTrafficHealthyInterval: t.timeout(hc.GetNoTrafficHealthyInterval(), 0, field(at, "no_traffic_healthy_interval"), true),
		UnhealthyInterval:        t.timeout(hc.GetUnhealthyInterval(), 0, field(at, "unhealthy_interval"), true),
		UnhealthyEdgeInterval:    t.timeout(hc.GetUnhealthyEdgeInterval(), 0, field(at, "unhealthy_edge_interval"), true),
		HealthyEdgeInterval:      t.timeout(hc.GetHealthyEdgeInterval(), 0, field(at, "healthy_edge_interval"), true),
		ReuseConnection:          hc.GetReuseConnection() == nil || hc.GetReuseConnection().GetValue(),
		AlwaysLogFailures:        hc.GetAlwaysLogHealthCheckFailures(),
	}
	// protoc-gen-validate requires timeout > 0, interval > 0 and both thresholds; it has
	// reported what is missing.
	if cfg.Timeout <= 0 || cfg.Interval <= 0 || hc.GetUnhealthyThreshold() == nil || hc.GetHealthyThreshold() == nil {
		return nil
	}
	switch k := hc.GetHealthChecker().(type) {
	case *corev3.HealthCheck_TcpHealthCheck_:
		tat := field(at, "tcp_health_check")
		tc := &health.TCPCheck{}
		var pok bool
		if tc.Send, pok = t.payload(k.TcpHealthCheck.GetSend(), field(tat, "send")); !pok {
			ok = false
		}
		for i, p := range k.TcpHealthCheck.GetReceive() {
			b, pok := t.payload(p, index(field(tat, "receive"), i))
			ok = ok && pok
			tc.Receive = append(tc.Receive, b)
		}
		cfg.TCP = tc
	case *corev3.HealthCheck_HttpHealthCheck_:
		cfg.HTTP = t.httpHealthCheck(k.HttpHealthCheck, field(at, "http_health_check"))
		ok = ok && cfg.HTTP != nil
	case nil:
		t.errorf(at, "a health checker is required (tcp_health_check or http_health_check)")
		return nil
	default:
		return nil // grpc_health_check, custom_health_check: reported as not supported
	}
	//lint:ignore SA1019 deprecated but supported
	if p := hc.GetEventLogPath(); p != "" && !t.checkOnly {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			t.errorf(field(at, "event_log_path"), "%v", err)
			return nil
		}
		t.closer(f)
		cfg.EventLog = f
	}
	if !ok {
		return nil
	}
	return cfg
}

// payload reads a HealthCheck.Payload: text is hex, binary is bytes.
func (t *translator) payload(p *corev3.HealthCheck_Payload, at string) ([]byte, bool) {
	if p == nil {
		return nil, true
	}
	switch v := p.GetPayload().(type) {
	case *corev3.HealthCheck_Payload_Text:
		b, err := hex.DecodeString(v.Text)
		if err != nil {
			t.errorf(field(at, "text"), "not hex: %v", err)
			return nil, false
		}
		return b, true
	case *corev3.HealthCheck_Payload_Binary:
		return v.Binary, true
	}
	return nil, true
}

func (t *translator) httpHealthCheck(h *corev3.HealthCheck_HttpHealthCheck, at string) *health.HTTPCheck {
	ok := true
	hc := &health.HTTPCheck{Host: h.GetHost(), Path: h.GetPath(), Remove: h.GetRequestHeadersToRemove()}
	if h.GetCodecClientType() != typev3.CodecClientType_HTTP1 {
		t.errorf(field(at, "codec_client_type"), "%s health checks are not supported by Portico (HTTP1 only)", h.GetCodecClientType())
		ok = false
	}
	if m := h.GetMethod(); m != corev3.RequestMethod_METHOD_UNSPECIFIED {
		hc.Method = m.String()
	}
	var pok bool
	if hc.Body, pok = t.payload(h.GetSend(), field(at, "send")); !pok {
		ok = false
	}
	for i, p := range h.GetReceive() {
		b, pok := t.payload(p, index(field(at, "receive"), i))
		ok = ok && pok
		hc.Receive = append(hc.Receive, b)
	}
	hc.ResponseBufferSize = 1024
	if v := h.GetResponseBufferSize(); v != nil {
		hc.ResponseBufferSize = int(min(v.GetValue(), 1<<30))
	}
	ranges := func(rs []*typev3.Int64Range, rat string) []health.StatusRange {
		var out []health.StatusRange
		for i, r := range rs {
			if r.GetStart() < 100 || r.GetEnd() > 600 || r.GetStart() >= r.GetEnd() {
				t.errorf(index(rat, i), "status range [%d, %d) is not within [100, 600)", r.GetStart(), r.GetEnd())
				ok = false
				continue
			}
			out = append(out, health.StatusRange{Start: int(r.GetStart()), End: int(r.GetEnd())})
		}
		return out
	}
	hc.Expected = ranges(h.GetExpectedStatuses(), field(at, "expected_statuses"))
	hc.Retriable = ranges(h.GetRetriableStatuses(), field(at, "retriable_statuses"))
	for _, o := range t.headerValueOptions(h.GetRequestHeadersToAdd(), field(at, "request_headers_to_add")) {
		hc.Headers = append(hc.Headers, health.Header{Name: o.Key, Value: o.Value, Append: o.AppendAction == route.AppendIfExistsOrAdd})
	}
	if !ok {
		return nil
	}
	return hc
}

// outlierDetection translates an OutlierDetection with Envoy's defaults.
func (t *translator) outlierDetection(od *clusterv3.OutlierDetection, at string) *engine.OutlierConfig {
	cfg := engine.DefaultOutlierConfig()
	u32 := func(v interface{ GetValue() uint32 }, isSet bool, dst *uint32) {
		if isSet {
			*dst = v.GetValue()
		}
	}
	u32(od.GetConsecutive_5Xx(), od.GetConsecutive_5Xx() != nil, &cfg.Consecutive5xx)
	u32(od.GetConsecutiveGatewayFailure(), od.GetConsecutiveGatewayFailure() != nil, &cfg.ConsecutiveGatewayFailure)
	u32(od.GetConsecutiveLocalOriginFailure(), od.GetConsecutiveLocalOriginFailure() != nil, &cfg.ConsecutiveLocalOriginFailure)
	u32(od.GetEnforcingConsecutive_5Xx(), od.GetEnforcingConsecutive_5Xx() != nil, &cfg.EnforcingConsecutive5xx)
	u32(od.GetEnforcingConsecutiveGatewayFailure(), od.GetEnforcingConsecutiveGatewayFailure() != nil, &cfg.EnforcingGatewayFailure)
	u32(od.GetEnforcingConsecutiveLocalOriginFailure(), od.GetEnforcingConsecutiveLocalOriginFailure() != nil, &cfg.EnforcingLocalOriginFailure)
	u32(od.GetMaxEjectionPercent(), od.GetMaxEjectionPercent() != nil, &cfg.MaxEjectionPercent)
	cfg.MaxEjectionPercent = min(cfg.MaxEjectionPercent, 100)
	cfg.SplitExternalLocalOriginErrors = od.GetSplitExternalLocalOriginErrors()
	cfg.AlwaysEjectOneHost = od.GetAlwaysEjectOneHost().GetValue()
	if v := od.GetSuccessfulActiveHealthCheckUnejectHost(); v != nil {
		cfg.UnejectOnHealthCheck = v.GetValue()
	}
	cfg.Interval = t.timeout(od.GetInterval(), cfg.Interval, field(at, "interval"), true)
	cfg.BaseEjectionTime = t.timeout(od.GetBaseEjectionTime(), cfg.BaseEjectionTime, field(at, "base_ejection_time"), true)
	cfg.MaxEjectionTime = t.timeout(od.GetMaxEjectionTime(), cfg.MaxEjectionTime, field(at, "max_ejection_time"), true)
	if cfg.Interval <= 0 {
		t.errorf(field(at, "interval"), "must be above 0s")
		return nil
	}
	return &cfg
}

// originalDstCluster translates a `type: ORIGINAL_DST` cluster (lb_policy
// CLUSTER_PROVIDED, no endpoints).
func (t *translator) originalDstCluster(cl *clusterv3.Cluster, at string) *engine.Cluster {
	ok := true
	if cl.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED {
		t.errorf(field(at, "lb_policy"), "an ORIGINAL_DST cluster takes lb_policy CLUSTER_PROVIDED (as in Envoy), not %s", cl.GetLbPolicy())
		ok = false
	}
	if n := len(cl.GetLoadAssignment().GetEndpoints()); n > 0 {
		t.errorf(field(field(at, "load_assignment"), "endpoints"), "an ORIGINAL_DST cluster has no endpoints: its hosts are the connections' original destinations")
		ok = false
	}
	for _, f := range []struct {
		set  bool
		name string
	}{{len(cl.GetHealthChecks()) > 0, "health_checks"}, {cl.GetOutlierDetection() != nil, "outlier_detection"}} {
		if f.set {
			t.errorf(field(at, f.name), "not supported by Portico on ORIGINAL_DST clusters")
			ok = false
		}
	}
	cc := engine.ClusterConfig{
		Name:                     cl.GetName(),
		PerConnectionBufferLimit: engine.DefaultBufferLimit,
		OriginalDst:              &engine.OriginalDstConfig{},
	}
	cc.ConnectTimeout = t.timeout(cl.GetConnectTimeout(), engine.DefaultConnectTimeout, field(at, "connect_timeout"), false)
	if v := cl.GetPerConnectionBufferLimitBytes(); v != nil {
		cc.PerConnectionBufferLimit = bufferLimit(v.GetValue())
	}
	cc.OriginalDst.CleanupInterval = t.timeout(cl.GetCleanupInterval(), engine.DefaultOriginalDstCleanup, field(at, "cleanup_interval"), true)
	if lb := cl.GetOriginalDstLbConfig(); lb != nil {
		lat := field(at, "original_dst_lb_config")
		if lb.GetUseHttpHeader() {
			t.errorf(field(lat, "use_http_header"), "not supported by Portico: the original destination is the downstream connection's")
			ok = false
		}
		if p := lb.GetUpstreamPortOverride(); p != nil {
			if p.GetValue() == 0 || p.GetValue() > 65535 {
				t.errorf(field(lat, "upstream_port_override"), "port %d is not within 1-65535", p.GetValue())
				ok = false
			}
			cc.OriginalDst.UpstreamPortOverride = uint16(p.GetValue())
		}
	}
	c := t.newCluster(cl, &cc, at, ok)
	if c == nil {
		return nil
	}
	t.cfg.StatsSources = append(t.cfg.StatsSources, c.MembershipStats())
	return c
}

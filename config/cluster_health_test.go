package config

import (
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/upstream/health"
)

const healthYAML = `
static_resources:
  clusters:
  - name: web
    connect_timeout: 1s
    ignore_health_on_host_removal: true
    load_assignment:
      cluster_name: web
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8080 } } } }] }]
    health_checks:
    - timeout: 1s
      interval: 2s
      interval_jitter: 0.5s
      unhealthy_threshold: 3
      healthy_threshold: 2
      no_traffic_interval: 5s
      healthy_edge_interval: 1s
      always_log_health_check_failures: true
      http_health_check:
        path: /healthz
        host: web.internal
        expected_statuses: [{ start: 200, end: 300 }]
        request_headers_to_add: [{ header: { key: x-hc, value: "1" } }]
    outlier_detection:
      consecutive_5xx: 3
      base_ejection_time: 10s
      max_ejection_percent: 50
      split_external_local_origin_errors: true
  - name: tcp
    load_assignment:
      cluster_name: tcp
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 6379 } } } }] }]
    health_checks:
    - timeout: 1s
      interval: 1s
      unhealthy_threshold: 1
      healthy_threshold: 1
      tcp_health_check: { send: { text: "50494e470d0a" }, receive: [{ text: "2b504f4e47" }] }
  - name: PassthroughCluster
    type: ORIGINAL_DST
    connect_timeout: 10s
    lb_policy: CLUSTER_PROVIDED
    cleanup_interval: 2s
    original_dst_lb_config: { upstream_port_override: 8443 }
    circuit_breakers: { thresholds: [{ max_connections: 4294967295 }] }
`

func TestClusterHealthConfig(t *testing.T) {
	cfg, err := Parse([]byte(healthYAML), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	if len(cfg.Clusters) != 3 {
		t.Fatalf("%d clusters", len(cfg.Clusters))
	}
	var checkers []*health.Checker
	var detectors []*engine.OutlierDetector
	for _, r := range cfg.Runners {
		switch r := r.(type) {
		case *health.Checker:
			checkers = append(checkers, r)
		case *engine.OutlierDetector:
			detectors = append(detectors, r)
		}
	}
	if len(checkers) != 2 || len(detectors) != 1 {
		t.Fatalf("runners %v", cfg.Runners)
	}
	web := cfg.Clusters[0]
	if web.Hosts()[0].HealthFlags() != engine.FailedActiveHealthCheck {
		t.Error("web's host is not waiting for its first check")
	}
	od := detectors[0].Config()
	if od.Consecutive5xx != 3 || od.BaseEjectionTime != 10*time.Second || od.MaxEjectionPercent != 50 ||
		!od.SplitExternalLocalOriginErrors || od.EnforcingGatewayFailure != 0 || od.Interval != 10*time.Second {
		t.Errorf("outlier config %+v", od)
	}
	if web.OutlierDetector() != detectors[0] {
		t.Error("detector not on the cluster")
	}
	pt := cfg.Clusters[2]
	if !pt.IsOriginalDst() || pt.Config().ConnectTimeout != 10*time.Second || pt.Breakers().Connections.Limit() != 4294967295 {
		t.Errorf("PassthroughCluster %+v", pt.Config())
	}
	if pt.Config().OriginalDst.CleanupInterval != 2*time.Second || pt.Config().OriginalDst.UpstreamPortOverride != 8443 {
		t.Errorf("original_dst config %+v", *pt.Config().OriginalDst)
	}
	// Stats: membership for every cluster, health_check and outlier_detection where set.
	names := map[string]bool{}
	for _, s := range cfg.StatsSources {
		if s.StatsFamily() != "cluster" {
			continue
		}
		s.VisitStats(0, func(name string, _ engine.StatKind, _ float64) { names[s.StatsLabels()[0][1]+"."+name] = true })
	}
	for _, n := range []string{"web.membership_total", "web.membership_healthy", "tcp.membership_healthy",
		"PassthroughCluster.membership_total", "web.health_check.attempt", "tcp.health_check.network_failure",
		"web.outlier_detection.ejections_active", "web.outlier_detection.ejections_enforced_consecutive_5xx"} {
		if !names[n] {
			t.Errorf("no stat %s", n)
		}
	}
}

package config

import (
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-proxy/portico/internal/testpki"
)

// dumpBootstrap has a static TLS listener whose private key is inline (it must not leak
// into the dump) and a static cluster.
const dumpBootstrap = `
node: { id: n1, cluster: edge }
static_resources:
  listeners:
  - name: tls
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates:
            - certificate_chain: { inline_string: CERT }
              private_key: { inline_string: KEY }
      filters:
      - name: envoy.filters.network.echo
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo }
  clusters:
  - name: web
    connect_timeout: 1s
    load_assignment:
      cluster_name: web
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8080 } } } }] }]
`

func dumpConfig(t *testing.T) (*Config, string) {
	t.Helper()
	ca, err := testpki.NewCA("dump test")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(testpki.ECDSA, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	y := strings.NewReplacer("CERT", strconv.Quote(string(leaf.CertPEM)), "KEY", strconv.Quote(string(leaf.KeyPEM))).Replace(dumpBootstrap)
	cfg, err := Parse([]byte(y), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cfg.Close() })
	return cfg, string(leaf.KeyPEM)
}

func listener(name string, port uint32) *listenerv3.Listener {
	l := &listenerv3.Listener{}
	if err := protojson.Unmarshal([]byte(`{"name":"`+name+`","address":{"socket_address":{"address":"127.0.0.1","port_value":`+strconv.Itoa(int(port))+`}}}`), l); err != nil {
		panic(err)
	}
	return l
}

var (
	t1 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	t2 = time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC)
)

// dumpState has a listener with an active version, a draining older one and a rejected
// update; a listener that was never good; a dynamic cluster with a rejected update and a
// cluster that was never good.
func dumpState() *DumpState {
	return &DumpState{
		ActiveListeners:   []DumpEntry{{Name: "dyn", Version: "v2", LastUpdated: t1, Resource: listener("dyn", 10002)}},
		DrainingListeners: []DumpEntry{{Name: "dyn", Version: "v1", LastUpdated: t1, Resource: listener("dyn", 10001)}},
		ListenerFailures: []DumpFailure{
			{Name: "dyn", Details: "dyn: port in use", Failed: listener("dyn", 10003), LastUpdateAttempt: t2},
			{Name: "never", Details: "never: cannot be read", LastUpdateAttempt: t2},
		},
		LDSVersion:     "v3",
		ActiveClusters: []DumpEntry{{Name: "dc", Version: "c1", LastUpdated: t1, Resource: &clusterv3.Cluster{Name: "dc"}}},
		ClusterFailures: []DumpFailure{
			{Name: "dc", Details: "dc: bad lb_policy", Failed: &clusterv3.Cluster{Name: "dc", LbPolicy: clusterv3.Cluster_MAGLEV}, LastUpdateAttempt: t2},
			{Name: "newbad", Details: "newbad: no endpoints", LastUpdateAttempt: t2},
		},
		CDSVersion: "c2",
	}
}

func render(t *testing.T, cfg *Config, st *DumpState, query string) (string, *adminv3.ConfigDump) {
	t.Helper()
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	b, err := RenderConfigDump(cfg, st, q)
	if err != nil {
		t.Fatalf("?%s: %v", query, err)
	}
	d := &adminv3.ConfigDump{}
	if err := protojson.Unmarshal(b, d); err != nil {
		t.Fatalf("?%s: the dump does not read back: %v\n%s", query, err, b)
	}
	return string(b), d
}

func unpack[T proto.Message](t *testing.T, a *anypb.Any, m T) T {
	t.Helper()
	if err := a.UnmarshalTo(m); err != nil {
		t.Fatalf("%s: %v", a.GetTypeUrl(), err)
	}
	return m
}

func TestConfigDumpRoundTrip(t *testing.T) {
	cfg, key := dumpConfig(t)
	body, d := render(t, cfg, dumpState(), "")

	// Envoy's form: "@type" on every config, proto field names, one space per level.
	if !strings.HasPrefix(body, "{\n \"configs\": [\n  {\n   \"@type\":") {
		t.Errorf("not Envoy's layout:\n%.200s", body)
	}
	var raw struct {
		Configs []map[string]json.RawMessage `json:"configs"`
	}
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	wantTypes := []string{"envoy.admin.v3.BootstrapConfigDump", "envoy.admin.v3.ClustersConfigDump", "envoy.admin.v3.ListenersConfigDump"}
	if len(raw.Configs) != len(wantTypes) {
		t.Fatalf("%d configs, want %d", len(raw.Configs), len(wantTypes))
	}
	for i, w := range wantTypes {
		if got := string(raw.Configs[i]["@type"]); got != `"type.googleapis.com/`+w+`"` {
			t.Errorf("configs[%d] @type %s, want %s", i, got, w)
		}
	}
	for _, name := range []string{`"static_listeners"`, `"dynamic_listeners"`, `"last_update_attempt"`, `"failed_configuration"`, `"version_info"`} {
		if !strings.Contains(body, name) {
			t.Errorf("no %s in the dump", name)
		}
	}

	// The private key is redacted, in the dump and not in the configuration.
	if strings.Contains(body, "PRIVATE KEY") || strings.Contains(body, strings.TrimSpace(strings.Split(key, "\n")[1])) {
		t.Error("the private key is in the dump")
	}
	bs := unpack(t, d.Configs[0], &adminv3.BootstrapConfigDump{})
	if bs.GetBootstrap().GetNode().GetId() != "n1" || !bs.GetLastUpdated().IsValid() || bs.GetLastUpdated().AsTime().IsZero() {
		t.Errorf("bootstrap dump: node %v, last_updated %v", bs.GetBootstrap().GetNode(), bs.GetLastUpdated())
	}
	checkKey := func(where string, l *listenerv3.Listener, want string) {
		t.Helper()
		tc := unpack(t, l.GetFilterChains()[0].GetTransportSocket().GetTypedConfig(), &tlsv3.DownstreamTlsContext{})
		c := tc.GetCommonTlsContext().GetTlsCertificates()[0]
		if got := c.GetPrivateKey().GetInlineString(); got != want {
			t.Errorf("%s: private key %q, want %q", where, got, want)
		}
		if !strings.Contains(c.GetCertificateChain().GetInlineString(), "BEGIN CERTIFICATE") {
			t.Errorf("%s: the certificate (not sensitive) is not shown", where)
		}
	}
	checkKey("bootstrap dump", bs.GetBootstrap().GetStaticResources().GetListeners()[0], "[redacted]")
	kept := &bootstrapv3.Bootstrap{}
	if err := proto.Unmarshal(cfg.bootstrap, kept); err != nil {
		t.Fatal(err)
	}
	checkKey("configuration after the dump", kept.GetStaticResources().GetListeners()[0], key)

	cd := unpack(t, d.Configs[1], &adminv3.ClustersConfigDump{})
	if cd.GetVersionInfo() != "c2" || len(cd.GetStaticClusters()) != 1 || len(cd.GetDynamicActiveClusters()) != 2 {
		t.Fatalf("clusters dump: %v", cd)
	}
	if c := unpack(t, cd.GetStaticClusters()[0].GetCluster(), &clusterv3.Cluster{}); c.GetName() != "web" {
		t.Errorf("static cluster %v", c)
	}
	dc := cd.GetDynamicActiveClusters()[0]
	if dc.GetVersionInfo() != "c1" || !dc.GetLastUpdated().AsTime().Equal(t1) || unpack(t, dc.GetCluster(), &clusterv3.Cluster{}).GetName() != "dc" {
		t.Errorf("dynamic cluster %v", dc)
	}
	if es := dc.GetErrorState(); es.GetDetails() != "dc: bad lb_policy" || !es.GetLastUpdateAttempt().AsTime().Equal(t2) ||
		unpack(t, es.GetFailedConfiguration(), &clusterv3.Cluster{}).GetLbPolicy() != clusterv3.Cluster_MAGLEV {
		t.Errorf("dynamic cluster error_state %v", es)
	}
	if nb := cd.GetDynamicActiveClusters()[1]; nb.GetCluster() != nil || nb.GetErrorState().GetDetails() != "newbad: no endpoints" || nb.GetErrorState().GetFailedConfiguration() != nil {
		t.Errorf("failure-only cluster %v", nb)
	}

	ld := unpack(t, d.Configs[2], &adminv3.ListenersConfigDump{})
	if ld.GetVersionInfo() != "v3" || len(ld.GetStaticListeners()) != 1 || len(ld.GetDynamicListeners()) != 2 {
		t.Fatalf("listeners dump: %v", ld)
	}
	sl := unpack(t, ld.GetStaticListeners()[0].GetListener(), &listenerv3.Listener{})
	checkKey("static listener", sl, "[redacted]")
	dyn := ld.GetDynamicListeners()[0]
	if dyn.GetName() != "dyn" {
		t.Fatalf("first dynamic listener %q", dyn.GetName())
	}
	port := func(s *adminv3.ListenersConfigDump_DynamicListenerState) uint32 {
		return unpack(t, s.GetListener(), &listenerv3.Listener{}).GetAddress().GetSocketAddress().GetPortValue()
	}
	if a := dyn.GetActiveState(); a.GetVersionInfo() != "v2" || port(a) != 10002 || !a.GetLastUpdated().AsTime().Equal(t1) {
		t.Errorf("active_state %v", a)
	}
	if dr := dyn.GetDrainingState(); dr.GetVersionInfo() != "v1" || port(dr) != 10001 {
		t.Errorf("draining_state %v", dr)
	}
	if dyn.GetWarmingState() != nil {
		t.Errorf("warming_state %v", dyn.GetWarmingState())
	}
	es := dyn.GetErrorState()
	if es.GetDetails() != "dyn: port in use" || !es.GetLastUpdateAttempt().AsTime().Equal(t2) ||
		unpack(t, es.GetFailedConfiguration(), &listenerv3.Listener{}).GetAddress().GetSocketAddress().GetPortValue() != 10003 {
		t.Errorf("error_state %v", es)
	}
	never := ld.GetDynamicListeners()[1]
	if never.GetName() != "never" || never.GetActiveState() != nil || never.GetErrorState().GetDetails() != "never: cannot be read" || never.GetErrorState().GetFailedConfiguration() != nil {
		t.Errorf("never-good listener %v", never)
	}

	// Without a configuration or state: empty clusters and listeners dumps.
	_, d = render(t, nil, nil, "")
	if len(d.GetConfigs()) != 2 {
		t.Errorf("empty dump: %v", d)
	}
}

func TestConfigDumpQuery(t *testing.T) {
	cfg, _ := dumpConfig(t)
	st := dumpState()

	// resource: the elements of one repeated field, each an Any of its own.
	_, d := render(t, cfg, st, "resource=dynamic_listeners")
	if len(d.Configs) != 2 || d.Configs[0].GetTypeUrl() != "type.googleapis.com/envoy.admin.v3.ListenersConfigDump.DynamicListener" {
		t.Fatalf("resource=dynamic_listeners: %v", d)
	}
	if dl := unpack(t, d.Configs[1], &adminv3.ListenersConfigDump_DynamicListener{}); dl.GetName() != "never" {
		t.Errorf("second dynamic listener %v", dl)
	}

	// resource with mask: a path through the element's Any goes on inside the resource.
	_, d = render(t, cfg, st, "resource=static_clusters&mask=cluster.name")
	if len(d.Configs) != 1 {
		t.Fatalf("static_clusters: %v", d)
	}
	sc := unpack(t, d.Configs[0], &adminv3.ClustersConfigDump_StaticCluster{})
	c := unpack(t, sc.GetCluster(), &clusterv3.Cluster{})
	if sc.GetLastUpdated() != nil || c.GetName() != "web" || c.GetLoadAssignment() != nil || c.GetConnectTimeout() != nil {
		t.Errorf("masked static cluster: %v / %v", sc, c)
	}
	_, d = render(t, cfg, st, "resource=dynamic_listeners&mask=name,error_state.details")
	dl := unpack(t, d.Configs[0], &adminv3.ListenersConfigDump_DynamicListener{})
	if dl.GetName() != "dyn" || dl.GetActiveState() != nil || dl.GetErrorState().GetDetails() != "dyn: port in use" || dl.GetErrorState().GetLastUpdateAttempt() != nil {
		t.Errorf("masked dynamic listener %v", dl)
	}

	// mask alone trims every dump message it fits and drops the others.
	_, d = render(t, cfg, st, "mask=dynamic_listeners")
	if len(d.Configs) != 1 {
		t.Fatalf("mask=dynamic_listeners: %d configs", len(d.Configs))
	}
	if ld := unpack(t, d.Configs[0], &adminv3.ListenersConfigDump{}); ld.GetVersionInfo() != "" || len(ld.GetStaticListeners()) != 0 || len(ld.GetDynamicListeners()) != 2 {
		t.Errorf("masked listeners dump %v", ld)
	}
	_, d = render(t, cfg, st, "mask=bootstrap.node.id")
	if len(d.Configs) != 1 {
		t.Fatalf("mask=bootstrap.node.id: %d configs", len(d.Configs))
	}
	b := unpack(t, d.Configs[0], &adminv3.BootstrapConfigDump{}).GetBootstrap()
	if !proto.Equal(b, &bootstrapv3.Bootstrap{Node: b.GetNode()}) || b.GetNode().GetId() != "n1" || b.GetNode().GetCluster() != "" {
		t.Errorf("masked bootstrap %v", b)
	}

	// name_regex matches whole names of listeners and clusters, not the bootstrap.
	_, d = render(t, cfg, st, "name_regex=d.*")
	if len(d.Configs) != 3 {
		t.Fatalf("name_regex: %d configs", len(d.Configs))
	}
	ld := unpack(t, d.Configs[2], &adminv3.ListenersConfigDump{})
	if len(ld.GetStaticListeners()) != 0 || len(ld.GetDynamicListeners()) != 1 || ld.GetDynamicListeners()[0].GetName() != "dyn" {
		t.Errorf("name_regex=d.*: listeners %v", ld)
	}
	cd := unpack(t, d.Configs[1], &adminv3.ClustersConfigDump{})
	if len(cd.GetStaticClusters()) != 0 || len(cd.GetDynamicActiveClusters()) != 1 {
		t.Errorf("name_regex=d.*: clusters %v", cd)
	}
	_, d = render(t, cfg, st, "name_regex=tls|web&resource=static_listeners")
	if len(d.Configs) != 1 {
		t.Errorf("name_regex=tls|web: %d static listeners", len(d.Configs))
	}

	for _, tc := range []struct {
		query, msg string
		status     int
	}{
		{"resource=version_info", "version_info is not a repeated field. Use ?mask=version_info to get only this field", 400},
		{"resource=bootstrap", "bootstrap is not a repeated field", 400},
		{"resource=nothing", "nothing not found in config dump", 404},
		{"mask=nothing", "FieldMask nothing could not be successfully applied to any configs.", 400},
		{"mask=static_listeners.listener", "could not be successfully applied", 400}, // no path into a list
		{"resource=static_listeners&mask=listener.nothing", "could not be successfully used", 400},
		{"resource=dynamic_listeners&mask=active_state.listener.name", "could not be successfully used", 400}, // as Envoy: only the element's own Any
		{"name_regex=(", "INVALID_ARGUMENT: Error while parsing name_regex from (", 400},
	} {
		q, _ := url.ParseQuery(tc.query)
		_, err := RenderConfigDump(cfg, st, q)
		var de *DumpError
		if !errors.As(err, &de) || de.HTTPStatus() != tc.status || !strings.Contains(de.Error(), tc.msg) {
			t.Errorf("?%s: %v, want %d %q", tc.query, err, tc.status, tc.msg)
		}
	}
}

// Sensitive fields are redacted wherever they are: a list of messages below a sensitive
// field (session ticket keys), bytes, a sensitive message inside an Any; what is not
// sensitive stays.
func TestRedact(t *testing.T) {
	dtc := &tlsv3.DownstreamTlsContext{}
	if err := protojson.Unmarshal([]byte(`{
		"session_ticket_keys": {"keys": [{"inline_bytes": "AAAA"}, {"filename": "/k2"}]},
		"common_tls_context": {"tls_certificates": [{
			"certificate_chain": {"filename": "/cert.pem"},
			"private_key": {"inline_string": "secret"},
			"password": {"inline_string": "pw"}}]}}`), dtc); err != nil {
		t.Fatal(err)
	}
	inner, err := anypb.New(dtc)
	if err != nil {
		t.Fatal(err)
	}
	l := &listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{{
		TransportSocket: &corev3.TransportSocket{Name: "tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: inner}}}}}
	before := proto.Clone(l)
	a, err := pack(l)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(l, before) {
		t.Error("pack changed the resource it was given")
	}
	got := unpack(t, unpack(t, a, &listenerv3.Listener{}).GetFilterChains()[0].GetTransportSocket().GetTypedConfig(), &tlsv3.DownstreamTlsContext{})
	keys := got.GetSessionTicketKeys().GetKeys()
	if len(keys) != 2 || string(keys[0].GetInlineBytes()) != "[redacted]" || keys[1].GetFilename() != "[redacted]" {
		t.Errorf("session ticket keys %v", keys)
	}
	c := got.GetCommonTlsContext().GetTlsCertificates()[0]
	if c.GetPrivateKey().GetInlineString() != "[redacted]" || c.GetPassword().GetInlineString() != "[redacted]" {
		t.Errorf("private key %v, password %v", c.GetPrivateKey(), c.GetPassword())
	}
	if c.GetCertificateChain().GetFilename() != "/cert.pem" {
		t.Errorf("certificate chain %v: not sensitive, must stay", c.GetCertificateChain())
	}
}

func TestInboundListeners(t *testing.T) {
	cfg, err := Parse([]byte(`
static_resources:
  listeners:
  - name: in
    traffic_direction: INBOUND
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains: [{ filters: [{ name: envoy.filters.network.echo, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo } }] }]
  - name: out
    traffic_direction: OUTBOUND
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains: [{ filters: [{ name: envoy.filters.network.echo, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo } }] }]
  - traffic_direction: INBOUND
    address: { socket_address: { address: 127.0.0.1, port_value: 10009 } }
    filter_chains: [{ filters: [{ name: envoy.filters.network.echo, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo } }] }]
`), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	got := cfg.InboundListeners()
	if len(got) != 2 || got[0] != "in" || got[1] != cfg.Listeners[2].Name {
		t.Errorf("InboundListeners %q (listener names %q %q %q)", got, cfg.Listeners[0].Name, cfg.Listeners[1].Name, cfg.Listeners[2].Name)
	}
	if !ListenerInbound(&listenerv3.Listener{TrafficDirection: corev3.TrafficDirection_INBOUND}) || ListenerInbound(&listenerv3.Listener{}) || ListenerInbound(&clusterv3.Cluster{}) {
		t.Error("ListenerInbound")
	}
	// The unnamed listener matches name_regex by the name Portico gave it.
	b, err := RenderConfigDump(cfg, nil, url.Values{"name_regex": {cfg.Listeners[2].Name}, "resource": {"static_listeners"}})
	if err != nil {
		t.Fatal(err)
	}
	d := &adminv3.ConfigDump{}
	if err := protojson.Unmarshal(b, d); err != nil || len(d.Configs) != 1 {
		t.Errorf("name_regex on an unnamed listener: %v %v", err, d)
	}
}

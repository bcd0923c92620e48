// Package istiod is the harness behind docs/istio.md, kept apart from Portico's module (it
// needs istio.io/istio, which Portico does not depend on; the go tool ignores testdata):
// it runs istiod's own xDS server and config generation in process (istio.io/istio
// pilot/test/xds FakeDiscoveryServer: no Kubernetes, configs from YAML) on a loopback TCP
// port. TestGenerate connects as a sidecar and as an ingress gateway with the node metadata
// pilot-agent sends and writes what istiod pushes as a /config_dump (for
// PORTICO_ISTIO_DUMP); TestPorticoClient runs Portico's own ADS client, state of the world
// and delta, against it. Run: go mod tidy && OUT=/tmp/istiod go test -vet=off -v .
// (the first build compiles istiod: many minutes on two cores).
package istiod

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	meshconfig "istio.io/api/mesh/v1alpha1"
	"istio.io/istio/pilot/test/xds"

	"github.com/portico-proxy/portico/config"
	pxds "github.com/portico-proxy/portico/config/xds"
	"github.com/portico-proxy/portico/engine"
	v3 "istio.io/istio/pilot/pkg/xds/v3"
	"istio.io/istio/pkg/config/mesh"
)

const configs = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: productpage, namespace: default}
spec:
  hosts: [productpage.default.svc.cluster.local]
  addresses: [10.96.0.10]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {labels: {app: productpage}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: productpage-1, namespace: default}
spec:
  address: 10.0.0.1
  labels: {app: productpage, version: v1, security.istio.io/tlsMode: istio}
  serviceAccount: bookinfo-productpage
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: [10.96.0.11]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-1, namespace: default}
spec:
  address: 10.0.0.2
  labels: {app: reviews, version: v1, security.istio.io/tlsMode: istio}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-2, namespace: default}
spec:
  address: 10.0.0.3
  labels: {app: reviews, version: v2, security.istio.io/tlsMode: istio}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.default.svc.cluster.local]
  addresses: [10.96.0.12]
  ports: [{number: 9080, name: http, protocol: HTTP}, {number: 7070, name: grpc, protocol: GRPC}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.4, labels: {app: ratings, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: mysql, namespace: default}
spec:
  hosts: [mysql.default.svc.cluster.local]
  addresses: [10.96.0.13]
  ports: [{number: 3306, name: tcp-mysql, protocol: TCP}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.5, labels: {app: mysql, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external-api, namespace: default}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: https, protocol: TLS}]
  location: MESH_EXTERNAL
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy:
    connectionPool: {http: {http1MaxPendingRequests: 100}}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
  - route:
    - {destination: {host: reviews.default.svc.cluster.local, subset: v1}, weight: 90}
    - {destination: {host: reviews.default.svc.cluster.local, subset: v2}, weight: 10}
    timeout: 5s
    retries: {attempts: 2, perTryTimeout: 2s}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: [bookinfo.example.com]
    tls: {mode: SIMPLE, credentialName: bookinfo-cert}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: default}
spec:
  hosts: ["*"]
  gateways: [istio-system/bookinfo-gateway]
  http:
  - match: [{uri: {prefix: /productpage}}, {uri: {exact: /login}}]
    route: [{destination: {host: productpage.default.svc.cluster.local, port: {number: 9080}}}]
`

type proxySpec struct {
	file, id, ns, ip string
	labels           map[string]string
	extra            map[string]any
}

func TestGenerate(t *testing.T) {
	out := os.Getenv("OUT")
	if out == "" {
		out = t.TempDir()
	}
	m := mesh.DefaultMeshConfig()
	if os.Getenv("PROM") != "" {
		// as the istiod Helm chart's default mesh config: telemetry v2 with Prometheus
		m.DefaultProviders = &meshconfig.MeshConfig_DefaultProviders{Metrics: []string{"prometheus"}}
	}
	s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{
		MeshConfig:      m,
		ConfigString:    configs,
		ListenerBuilder: func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") },
	})
	addr := s.Listener.Addr().String()
	t.Logf("istiod (in-process) on %s", addr)
	for _, p := range []proxySpec{
		{file: "sidecar", id: "sidecar~10.0.0.1~productpage-v1-5c7d9f8b4-abcde.default~default.svc.cluster.local", ns: "default", ip: "10.0.0.1",
			labels: map[string]string{"app": "productpage", "version": "v1", "security.istio.io/tlsMode": "istio",
				"service.istio.io/canonical-name": "productpage", "service.istio.io/canonical-revision": "v1"},
			extra: map[string]any{"INTERCEPTION_MODE": "REDIRECT", "SERVICE_ACCOUNT": "bookinfo-productpage", "WORKLOAD_NAME": "productpage-v1",
				"APP_CONTAINERS": "productpage", "POD_PORTS": `[{"name":"http","containerPort":9080,"protocol":"TCP"}]`}},
		{file: "gateway", id: "router~10.0.0.9~istio-ingressgateway-7d4f8b6c9-fghij.istio-system~istio-system.svc.cluster.local", ns: "istio-system", ip: "10.0.0.9",
			labels: map[string]string{"istio": "ingressgateway", "app": "istio-ingressgateway"},
			extra:  map[string]any{"SERVICE_ACCOUNT": "istio-ingressgateway-service-account", "WORKLOAD_NAME": "istio-ingressgateway"}},
	} {
		dump(t, addr, p, out)
	}
}

func node(p proxySpec) *core.Node {
	meta := map[string]any{
		"ISTIO_VERSION": "1.28.0", "CLUSTER_ID": "Kubernetes", "NAMESPACE": p.ns, "MESH_ID": "cluster.local",
		"NAME": "pod", "INSTANCE_IPS": p.ip, "LABELS": toAny(p.labels), "OWNER": "kubernetes://apis/apps/v1/namespaces/" + p.ns + "/deployments/x",
		"PROXY_CONFIG": map[string]any{"configPath": "./etc/istio/proxy", "discoveryAddress": "istiod.istio-system.svc:15012",
			"proxyAdminPort": 15000, "statusPort": 15020, "serviceCluster": "istio-proxy"},
		"ENVOY_STATUS_PORT": 15021, "ENVOY_PROMETHEUS_PORT": 15090,
	}
	for k, v := range p.extra {
		meta[k] = v
	}
	st, err := structpb.NewStruct(meta)
	if err != nil {
		panic(err)
	}
	return &core.Node{Id: p.id, Cluster: "istio-proxy", Metadata: st,
		UserAgentName: "envoy", UserAgentVersionType: &core.Node_UserAgentVersion{UserAgentVersion: "1.36.0"}}
}

func toAny(m map[string]string) map[string]any {
	o := map[string]any{}
	for k, v := range m {
		o[k] = v
	}
	return o
}

func dump(t *testing.T, addr string, p proxySpec, out string) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := node(p)
	got := map[string]*discovery.DiscoveryResponse{}
	ask := func(typ string, names []string) *discovery.DiscoveryResponse {
		req := &discovery.DiscoveryRequest{TypeUrl: typ, ResourceNames: names}
		if len(got) == 0 {
			req.Node = n
		}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
		for {
			r, err := st.Recv()
			if err != nil {
				t.Fatalf("%s: %v", p.file, err)
			}
			// ACK it
			st.Send(&discovery.DiscoveryRequest{TypeUrl: r.TypeUrl, VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce, ResourceNames: names})
			got[r.TypeUrl] = r
			if r.TypeUrl == typ {
				return r
			}
		}
	}
	cds := ask(v3.ClusterType, nil)
	var eds []string
	for _, a := range cds.Resources {
		c := &cluster.Cluster{}
		if err := a.UnmarshalTo(c); err != nil {
			t.Fatal(err)
		}
		if c.GetType() == cluster.Cluster_EDS {
			n := c.GetEdsClusterConfig().GetServiceName()
			if n == "" {
				n = c.Name
			}
			eds = append(eds, n)
		}
	}
	if len(eds) > 0 {
		ask(v3.EndpointType, eds)
	}
	lds := ask(v3.ListenerType, nil)
	var rds []string
	seen := map[string]bool{}
	for _, a := range lds.Resources {
		l := &listener.Listener{}
		if err := a.UnmarshalTo(l); err != nil {
			t.Fatal(err)
		}
		chains := l.FilterChains
		if l.DefaultFilterChain != nil {
			chains = append(chains, l.DefaultFilterChain)
		}
		for _, fc := range chains {
			for _, f := range fc.Filters {
				h := &hcm.HttpConnectionManager{}
				if f.GetTypedConfig().MessageIs(h) && f.GetTypedConfig().UnmarshalTo(h) == nil && h.GetRds() != nil && !seen[h.GetRds().RouteConfigName] {
					seen[h.GetRds().RouteConfigName] = true
					rds = append(rds, h.GetRds().RouteConfigName)
				}
			}
		}
	}
	sort.Strings(rds)
	if len(rds) > 0 {
		ask(v3.RouteType, rds)
	}
	write(t, out, p, n, got)
}

func write(t *testing.T, out string, p proxySpec, n *core.Node, got map[string]*discovery.DiscoveryResponse) {
	mo := protojson.MarshalOptions{UseProtoNames: true}
	raw := func(m proto.Message) json.RawMessage {
		b, err := mo.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	type obj = map[string]any
	var cfgs []any
	nj := raw(n)
	cfgs = append(cfgs, obj{"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "bootstrap": obj{"node": nj}})
	kinds := []struct{ typ, dump, list, state, field string }{
		{v3.ClusterType, "ClustersConfigDump", "dynamic_active_clusters", "", "cluster"},
		{v3.EndpointType, "EndpointsConfigDump", "dynamic_endpoint_configs", "", "endpoint_config"},
		{v3.ListenerType, "ListenersConfigDump", "dynamic_listeners", "active_state", "listener"},
		{v3.RouteType, "RoutesConfigDump", "dynamic_route_configs", "", "route_config"},
	}
	for _, k := range kinds {
		r := got[k.typ]
		if r == nil {
			continue
		}
		b, _ := proto.Marshal(r)
		os.WriteFile(filepath.Join(out, p.file+"-"+k.dump+".pb"), b, 0o644)
		var items []any
		for _, a := range r.Resources {
			item := obj{k.field: raw(a)}
			if k.state != "" {
				item = obj{"name": "", k.state: obj{"version_info": r.VersionInfo, k.field: raw(a)}}
			} else {
				item["version_info"] = r.VersionInfo
			}
			items = append(items, item)
		}
		cfgs = append(cfgs, obj{"@type": "type.googleapis.com/envoy.admin.v3." + k.dump, "version_info": r.VersionInfo, k.list: items})
		t.Logf("%s: %s %d resources (version %s)", p.file, k.dump, len(r.Resources), r.VersionInfo)
	}
	b, err := json.MarshalIndent(obj{"configs": cfgs}, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, p.file+"_config_dump.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPorticoClient runs Portico's own ADS client (config/xds) against istiod's xDS
// server, each response through Portico's readers, and reports what the client counted.
func TestPorticoClient(t *testing.T) {
	m := mesh.DefaultMeshConfig()
	m.DefaultProviders = &meshconfig.MeshConfig_DefaultProviders{Metrics: []string{"prometheus"}}
	s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{
		MeshConfig: m, ConfigString: configs,
		ListenerBuilder: func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") },
	})
	addr := s.Listener.Addr().String()
	for _, p := range []proxySpec{
		{file: "sidecar", id: "sidecar~10.0.0.1~productpage-v1-5c7d9f8b4-abcde.default~default.svc.cluster.local", ns: "default", ip: "10.0.0.1",
			labels: map[string]string{"app": "productpage", "version": "v1", "security.istio.io/tlsMode": "istio"},
			extra:  map[string]any{"INTERCEPTION_MODE": "REDIRECT", "SERVICE_ACCOUNT": "bookinfo-productpage", "WORKLOAD_NAME": "productpage-v1"}},
	} {
		for _, delta := range []bool{false, true} {
			t.Logf("=== %s, delta=%v", p.file, delta)
			var c *pxds.Client
			reg := engine.NewClusterRegistry()
			var mu sync.Mutex
			edsNames := map[string]bool{}
			h := func(typeURL, version string, rs []*anypb.Any) error {
				mu.Lock()
				defer mu.Unlock()
				switch typeURL {
				case pxds.ClusterType:
					u, err := config.ParseClusterResources("istiod", version, rs, 1, config.Options{CheckOnly: true, Clusters: engine.NewClusterRegistry()}, nil)
					if err != nil {
						return err
					}
					for _, r := range u.Clusters {
						reg.Put(r.Cluster)
					}
					// Envoy asks for the endpoints of every EDS cluster it has, as Portico's
					// manager does; ask for those refused too, to see EDS flow from istiod.
					var names []string
					for _, a := range rs {
						cl := &cluster.Cluster{}
						if a.UnmarshalTo(cl) == nil && cl.GetType() == cluster.Cluster_EDS {
							names = append(names, cl.GetEdsClusterConfig().GetServiceName())
							edsNames[cl.GetName()] = true
						}
					}
					c.Subscribe(pxds.EndpointType, names)
					t.Logf("CDS %s: %d resources, %d accepted, %d refused", version, len(rs), len(u.Clusters), len(u.Errors))
					return joinErrs(u.Problems().Errors)
				case pxds.ListenerType:
					u, err := config.ParseListenerResources("istiod", version, rs, 1, config.Options{CheckOnly: true, Clusters: reg}, nil)
					if err != nil {
						return err
					}
					t.Logf("LDS %s: %d resources, %d accepted, %d refused", version, len(rs), len(u.Listeners), len(u.Errors))
					return joinErrs(u.Problems().Errors)
				case pxds.EndpointType:
					u, err := config.ParseEndpointResources("istiod", version, rs)
					if err != nil {
						return err
					}
					t.Logf("EDS %s: %d resources, %d accepted, %d refused", version, len(rs), len(u.Endpoints), len(u.Errors))
					return joinErrs(u.Errors)
				}
				return nil
			}
			c = pxds.New(pxds.Options{Target: addr, Node: node(p), Types: []string{pxds.ClusterType, pxds.EndpointType, pxds.ListenerType}, Delta: delta}, h)
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			deadline := time.Now().Add(4 * time.Second)
			for time.Now().Before(deadline) {
				st := c.Stats()
				if st.Types[pxds.ListenerType].UpdateAttempt > 0 && st.Types[pxds.EndpointType].UpdateAttempt > 0 {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(1500 * time.Millisecond) // a NACK delay's worth, to see whether istiod resends
			st := c.Stats()
			cancel()
			<-done
			t.Logf("connected=%v", st.ConnectedState)
			for _, typ := range []string{pxds.ClusterType, pxds.EndpointType, pxds.ListenerType} {
				ts := st.Types[typ]
				detail := ts.LastNackDetail
				if len(detail) > 600 {
					detail = detail[:600] + "..."
				}
				t.Logf("%s: attempts %d, ACKed %d, NACKed %d, version %q\n  last NACK: %s", typ[strings.LastIndex(typ, ".")+1:], ts.UpdateAttempt, ts.UpdateSuccess, ts.UpdateRejected, ts.Version, detail)
			}
		}
	}
}

func joinErrs(es []config.ResourceError) error {
	if len(es) == 0 {
		return nil
	}
	var lines []string
	for _, e := range es {
		lines = append(lines, e.Error())
	}
	return errors.New(strings.Join(lines, "\n"))
}

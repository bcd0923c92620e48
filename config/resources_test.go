package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-proxy/portico/engine"
)

// writeFile writes content to dir/name and returns the path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// discovery makes a DiscoveryResponse of the given resources (YAML list items without
// the leading "- ", each indented by two spaces).
func discovery(version string, resources ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version_info: %q\nresources:\n", version)
	for _, r := range resources {
		lines := strings.Split(strings.TrimRight(r, "\n"), "\n")
		for i, l := range lines {
			if i == 0 {
				b.WriteString("- " + l + "\n")
			} else {
				b.WriteString("  " + l + "\n")
			}
		}
	}
	return b.String()
}

const listenerURL = `"@type": type.googleapis.com/envoy.config.listener.v3.Listener`
const clusterURL = `"@type": type.googleapis.com/envoy.config.cluster.v3.Cluster`

// echoChain is a filter chain of an echo filter, matching destination port dport (0: no
// match).
func echoChain(name string, dport int) string {
	s := "- name: " + name + "\n"
	if dport != 0 {
		s += fmt.Sprintf("  filter_chain_match: {destination_port: %d}\n", dport)
	}
	return s + "  filters:\n  - name: envoy.filters.network.echo\n"
}

// echoListener is an LDS listener on 127.0.0.1:port with the given chains.
func echoListener(name string, port int, chains ...string) string {
	s := fmt.Sprintf("%s\nname: %s\naddress: {socket_address: {address: 127.0.0.1, port_value: %d}}\nfilter_chains:\n", listenerURL, name, port)
	for _, c := range chains {
		s += c
	}
	return s
}

func tcpListener(name string, port int, cluster string) string {
	return fmt.Sprintf(`%s
name: %s
address: {socket_address: {address: 127.0.0.1, port_value: %d}}
filter_chains:
- filters:
  - name: envoy.filters.network.tcp_proxy
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      stat_prefix: tcp
      cluster: %s
`, listenerURL, name, port, cluster)
}

func staticCluster(name string, port int) string {
	return fmt.Sprintf(`%s
name: %s
type: STATIC
connect_timeout: 1s
load_assignment:
  cluster_name: %s
  endpoints:
  - lb_endpoints:
    - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}
`, clusterURL, name, name, port)
}

func byListener(u *ListenerUpdate) map[string]*ListenerResource {
	m := map[string]*ListenerResource{}
	for _, r := range u.Listeners {
		m[r.Name] = r
	}
	return m
}

func errorTexts(es []ResourceError) string {
	var s []string
	for i := range es {
		s = append(s, es[i].Error())
	}
	return strings.Join(s, "\n")
}

func parseL(t *testing.T, path string, o Options, prev map[string]*ListenerResource) *ListenerUpdate {
	t.Helper()
	u, err := ParseListeners(path, 2, o, prev)
	if err != nil {
		t.Fatalf("ParseListeners: %v", err)
	}
	t.Cleanup(func() {
		for _, r := range u.Listeners {
			if r.Change != Unchanged {
				for _, c := range r.Closers {
					c.Close()
				}
			}
		}
	})
	return u
}

func TestParseListenersPerResource(t *testing.T) {
	dir := t.TempDir()
	bad := fmt.Sprintf(`%s
name: bad
address: {socket_address: {address: 127.0.0.1, port_value: 10002}}
filter_chains:
- filters:
  - name: nope
    typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.nope.v3.Nope}
`, listenerURL)
	p := writeFile(t, dir, "lds.yaml", discovery("1",
		echoListener("a", 10001, echoChain("c", 0)),
		bad,
		echoListener("b", 10003, echoChain("c", 0))))
	u := parseL(t, p, Options{CheckOnly: true}, nil)
	if u.Version != "1" || len(u.Listeners) != 2 || len(u.Errors) != 1 {
		t.Fatalf("version %q, %d listeners, %d errors (want 1, 2, 1): %s", u.Version, len(u.Listeners), len(u.Errors), errorTexts(u.Errors))
	}
	e := u.Errors[0]
	if e.Name != "bad" || e.Index != 1 || e.Failed == nil {
		t.Errorf("error = %+v", e)
	}
	if msg := e.Error(); !strings.HasPrefix(msg, `resources[1] (listener "bad"): filter_chains[0].filters[0].typed_config: `) || !strings.Contains(msg, "nope") {
		t.Errorf("error text %q", msg)
	}
	for _, r := range u.Listeners {
		if r.Change != Added || r.Version != "1" || r.Config.FilterChains == nil || r.Message() == nil {
			t.Errorf("listener %s: %+v", r.Name, r)
		}
	}
	if got := u.Listeners[0].Config.Address.String(); got != "127.0.0.1:10001" {
		t.Errorf("address %s", got)
	}
}

func TestParseListenersErrorsNamed(t *testing.T) {
	dir := t.TempDir()
	static := loadStatic(t, dir)
	cases := []struct {
		name, resource, want string
	}{
		{"unknown field", listenerURL + "\nname: x\nadress: {}\n", `resources[0] (listener "x"): adress: unknown field (did you mean "address"?)`},
		{"not an IP", strings.Replace(echoListener("x", 1, echoChain("c", 0)), "127.0.0.1", "localhost", 1), `resources[0] (listener "x"): address.socket_address.address: "localhost" is not an IP address`},
		{"no name", strings.Replace(echoListener("x", 1, echoChain("c", 0)), "name: x\n", "", 1), `resources[0]: name: required for a listener from a file`},
		{"static name", echoListener("static_l", 1, echoChain("c", 0)), `resources[0] (listener "static_l"): name: listener "static_l" is already defined in the bootstrap's static_resources`},
		{"static address", echoListener("x", 19999, echoChain("c", 0)), `resources[0] (listener "x"): address: address 127.0.0.1:`},
		{"wrong type", clusterURL + "\nname: x\n", `resources[0] (listener "x"): @type: resource type "type.googleapis.com/envoy.config.cluster.v3.Cluster" does not belong in this file, want "type.googleapis.com/envoy.config.listener.v3.Listener"`},
		{"v2 type", `"@type": type.googleapis.com/envoy.api.v2.Listener` + "\nname: x\n", `resources[0] (listener "x"): @type: resource type "type.googleapis.com/envoy.api.v2.Listener" is Envoy's v2 API`},
		{"no chains", listenerURL + "\nname: x\naddress: {socket_address: {address: 127.0.0.1, port_value: 1}}\n", `resources[0] (listener "x"): no filter chains specified`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeFile(t, dir, "lds.yaml", discovery("1", c.resource))
			u := parseL(t, p, Options{CheckOnly: true, Static: static}, nil)
			if len(u.Errors) != 1 || len(u.Listeners) != 0 {
				t.Fatalf("%d listeners, errors: %s", len(u.Listeners), errorTexts(u.Errors))
			}
			if got := u.Errors[0].Error(); !strings.HasPrefix(got, c.want) {
				t.Errorf("error:\n got %s\nwant %s...", got, c.want)
			}
		})
	}
}

// loadStatic loads a bootstrap with a static listener "static_l" and a static cluster
// "static_c".
func loadStatic(t *testing.T, dir string) *Config {
	t.Helper()
	p := writeFile(t, dir, "bootstrap.yaml", `
static_resources:
  listeners:
  - name: static_l
    address: {socket_address: {address: 127.0.0.1, port_value: 19999}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.echo
  clusters:
  - name: static_c
    type: STATIC
    load_assignment:
      cluster_name: static_c
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}
`)
	cfg, err := LoadWith(p, 2, Options{CheckOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cfg.Close() })
	return cfg
}

func TestParseListenersChange(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "access.log")
	logged := fmt.Sprintf(`- name: logged
  filter_chain_match: {destination_port: 2}
  filters:
  - name: envoy.filters.network.tcp_proxy
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      stat_prefix: tcp
      cluster: static_c
      access_log:
      - name: envoy.access_loggers.file
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
          path: %s
`, log)
	static := loadStatic(t, dir)
	o := Options{Static: static} // not CheckOnly: the access log is opened, once
	p := writeFile(t, dir, "lds.yaml", discovery("1",
		echoListener("a", 0, echoChain("one", 1), logged),
		echoListener("b", 0, echoChain("one", 0))))
	v1 := parseL(t, p, o, nil)
	if len(v1.Errors) != 0 || len(v1.Listeners) != 2 {
		t.Fatalf("v1: %s", errorTexts(v1.Errors))
	}
	prev := byListener(v1)
	a1 := prev["a"]
	if len(a1.chains) != 2 || len(a1.Closers) != 1 {
		t.Fatalf("a v1: %d chains, %d closers", len(a1.chains), len(a1.Closers))
	}

	// The same listeners, written differently (flow style, keys in another order): equal
	// protos, so Unchanged, and the previous translation comes back.
	reordered := fmt.Sprintf("%s\naddress: {socket_address: {port_value: 0, address: 127.0.0.1}}\nname: b\nfilter_chains:\n%s", listenerURL, echoChain("one", 0))
	// a: one chain added, one kept, one changed -> ChainsOnly.
	p = writeFile(t, dir, "lds.yaml", discovery("2",
		echoListener("a", 0, echoChain("one", 3), logged, echoChain("new", 4)),
		reordered))
	v2 := parseL(t, p, o, prev)
	if len(v2.Errors) != 0 || len(v2.Listeners) != 2 || len(v2.Removed) != 0 {
		t.Fatalf("v2: %d listeners, removed %v, errors %s", len(v2.Listeners), v2.Removed, errorTexts(v2.Errors))
	}
	cur := byListener(v2)
	if b := cur["b"]; b.Change != Unchanged || b.Version != "2" || b.Config.FilterChains != prev["b"].Config.FilterChains {
		t.Errorf("b: change %v version %q, same manager %v", b.Change, b.Version, b.Config.FilterChains == prev["b"].Config.FilterChains)
	}
	a2 := cur["a"]
	if a2.Change != ChainsOnly {
		t.Fatalf("a: change %v, want chains-only", a2.Change)
	}
	if len(a2.Kept) != 1 || a2.Kept[0] != a1.chains[1] || a2.chains[1] != a1.chains[1] {
		t.Errorf("a: kept %v, want the previous %p", a2.Kept, a1.chains[1])
	}
	if a2.chains[0] == a1.chains[0] {
		t.Error("a: the changed chain was reused")
	}
	if d := a2.Drained(a1); len(d) != 1 || d[0] != a1.chains[0] {
		t.Errorf("a: drained %v, want the changed chain %p", d, a1.chains[0])
	}
	// The kept chain's log file is carried, not opened again.
	if len(a2.Closers) != 1 || a2.Closers[0] != a1.Closers[0] {
		t.Errorf("a v2 closers %v, want v1's %v", a2.Closers, a1.Closers)
	}
	if cl, st := a1.Released(a2); len(cl) != 0 || slices.Contains(st, a2.StatsSources[len(a2.StatsSources)-1]) {
		t.Errorf("Released: closers %v", cl)
	}
	// The new manager hands connections for port 2 to the kept chain.
	info := &engine.SocketInfo{LocalAddr: netip.MustParseAddrPort("127.0.0.1:2"), RemoteAddr: netip.MustParseAddrPort("127.0.0.1:5555")}
	info.DirectRemoteAddr = info.RemoteAddr
	if got := a2.Config.FilterChains.FindFilterChain(info); got != a1.chains[1] {
		t.Errorf("the v2 manager picks %p for port 2, want the kept %p", got, a1.chains[1])
	}
	prev = byListener(v2)

	// Full: the address changes; and a listener filter added; b removed.
	withFilter := strings.Replace(echoListener("a", 0, echoChain("one", 3), logged, echoChain("new", 4)),
		"filter_chains:\n", "listener_filters:\n- name: envoy.filters.listener.tls_inspector\n  typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}\nfilter_chains:\n", 1)
	p = writeFile(t, dir, "lds.yaml", discovery("3", withFilter, echoListener("c", 0, echoChain("one", 0))))
	v3 := parseL(t, p, o, prev)
	cur = byListener(v3)
	if len(v3.Errors) != 0 || cur["a"].Change != Full || cur["c"].Change != Added || !slices.Equal(v3.Removed, []string{"b"}) {
		t.Fatalf("v3: errors %s, removed %v, a %v", errorTexts(v3.Errors), v3.Removed, cur["a"])
	}
	if len(cur["a"].Kept) != 0 || cur["a"].chains[1] == prev["a"].chains[1] {
		t.Error("a full update reused a chain")
	}
	p = writeFile(t, dir, "lds.yaml", discovery("4", strings.Replace(echoListener("a", 0, echoChain("one", 3), logged, echoChain("new", 4)), "port_value: 0", "port_value: 1", 1)))
	if v := parseL(t, p, o, prev); len(v.Listeners) != 1 || v.Listeners[0].Change != Full {
		t.Errorf("address change: %v %s", v.Listeners, errorTexts(v.Errors))
	}
	// Only a default chain left: Envoy does a full update.
	p = writeFile(t, dir, "lds.yaml", discovery("5", fmt.Sprintf("%s\nname: a\naddress: {socket_address: {address: 127.0.0.1, port_value: 0}}\ndefault_filter_chain:\n  filters:\n  - name: envoy.filters.network.echo\n", listenerURL)))
	if v := parseL(t, p, o, prev); len(v.Listeners) != 1 || v.Listeners[0].Change != Full {
		t.Errorf("default chain only: %v %s", v.Listeners, errorTexts(v.Errors))
	}
	// A rejected version of a keeps its name: not removed.
	p = writeFile(t, dir, "lds.yaml", discovery("6", strings.Replace(echoListener("a", 0, echoChain("one", 3)), "127.0.0.1", "nope", 1), reordered))
	if v := parseL(t, p, o, prev); len(v.Errors) != 1 || len(v.Removed) != 0 {
		t.Errorf("rejected a: removed %v, errors %s", v.Removed, errorTexts(v.Errors))
	}
}

func TestParseListenersFileRules(t *testing.T) {
	dir := t.TempDir()
	static := loadStatic(t, dir)
	o := Options{CheckOnly: true, Static: static}

	// Two resources of one name: the second is rejected, the first applies.
	p := writeFile(t, dir, "dup.yaml", discovery("1", echoListener("a", 0, echoChain("c", 0)), echoListener("a", 0, echoChain("d", 0))))
	u := parseL(t, p, o, nil)
	if len(u.Listeners) != 1 || len(u.Errors) != 1 || !strings.Contains(u.Errors[0].Error(), `resources[1] (listener "a"): name: duplicate listener "a" (also resources[0])`) {
		t.Errorf("duplicates: %d listeners, %s", len(u.Listeners), errorTexts(u.Errors))
	}

	// Two listeners on one address.
	p = writeFile(t, dir, "addr.yaml", discovery("1", echoListener("a", 12345, echoChain("c", 0)), echoListener("b", 12345, echoChain("c", 0))))
	u = parseL(t, p, o, nil)
	if len(u.Listeners) != 1 || len(u.Errors) != 1 || !strings.Contains(u.Errors[0].Error(), `address: address 127.0.0.1:12345 is already used by resources[0] (listener "a")`) {
		t.Errorf("address clash: %s", errorTexts(u.Errors))
	}

	// The Resource wrapper Envoy's filesystem subscription accepts, with its own version.
	wrapped := "\"@type\": type.googleapis.com/envoy.service.discovery.v3.Resource\nname: w\nversion: \"9\"\nresource:\n" +
		indentBy(echoListener("w", 0, echoChain("c", 0)), "  ")
	p = writeFile(t, dir, "wrapped.yaml", discovery("1", wrapped))
	u = parseL(t, p, o, nil)
	if len(u.Listeners) != 1 || u.Listeners[0].Name != "w" || u.Listeners[0].Version != "9" {
		t.Errorf("wrapped: %v %s", u.Listeners, errorTexts(u.Errors))
	}
	p = writeFile(t, dir, "wrapped.yaml", discovery("1", strings.Replace(wrapped, "name: w\n", "name: other\n", 1)))
	u = parseL(t, p, o, nil)
	if len(u.Errors) != 1 || !strings.HasPrefix(u.Errors[0].Error(), `resources[0].resource (listener "w"): name: "w" differs from the name of the Resource that wraps it, "other"`) {
		t.Errorf("wrapped name mismatch: %s", errorTexts(u.Errors))
	}
	p = writeFile(t, dir, "wrapped.yaml", discovery("1", strings.Replace(wrapped, "echo", "nope", 1)))
	u = parseL(t, p, o, nil)
	if len(u.Errors) != 1 || !strings.HasPrefix(u.Errors[0].Error(), `resources[0].resource (listener "w"): filter_chains[0].filters[0].name: unknown network filter "envoy.filters.network.nope"`) {
		t.Errorf("wrapped error: %s", errorTexts(u.Errors))
	}

	// An HCM's inline route_config: unknown clusters are refused unless validate_clusters
	// is false.
	hcm := func(validate string) string {
		return fmt.Sprintf(`%s
name: h
address: {socket_address: {address: 127.0.0.1, port_value: 0}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: h
      route_config:
        %s
        virtual_hosts:
        - name: all
          domains: ["*"]
          routes:
          - match: {prefix: /}
            route: {cluster: later}
          - match: {prefix: /s}
            route: {cluster: static_c}
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
`, listenerURL, validate)
	}
	p = writeFile(t, dir, "hcm.yaml", discovery("1", hcm("name: r")))
	u = parseL(t, p, o, nil)
	if len(u.Errors) != 1 || !strings.Contains(u.Errors[0].Error(), `resources[0] (listener "h"): filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route.cluster: cluster "later" is not defined (defined: "static_c")`) {
		t.Errorf("route to an unknown cluster: %s", errorTexts(u.Errors))
	}
	p = writeFile(t, dir, "hcm.yaml", discovery("1", hcm("validate_clusters: false")))
	if u = parseL(t, p, o, nil); len(u.Errors) != 0 || len(u.Listeners) != 1 {
		t.Errorf("validate_clusters false: %s", errorTexts(u.Errors))
	}
	// A cluster of Options.Clusters (CDS's) is known too.
	cds := writeFile(t, dir, "cds.yaml", discovery("1", staticCluster("later", 1)))
	cu, err := ParseClusters(cds, 2, o, nil)
	if err != nil || len(cu.Clusters) != 1 {
		t.Fatalf("ParseClusters: %v %v", err, cu)
	}
	p = writeFile(t, dir, "hcm.yaml", discovery("1", hcm("name: r"), tcpListener("t", 0, "later")))
	oc := o
	oc.Clusters = engine.NewClusterRegistry()
	oc.Clusters.Put(cu.Clusters[0].Cluster)
	if u = parseL(t, p, oc, nil); len(u.Errors) != 0 || len(u.Listeners) != 2 {
		t.Errorf("CDS cluster: %s", errorTexts(u.Errors))
	}
	// tcp_proxy may name a cluster no one has yet (Envoy accepts it; its connections
	// fail as no-cluster until CDS brings it).
	p = writeFile(t, dir, "tcp.yaml", discovery("1", tcpListener("t", 0, "nosuch")))
	if u = parseL(t, p, o, nil); len(u.Errors) != 0 || len(u.Listeners) != 1 {
		t.Errorf("tcp_proxy to a cluster yet to come: %s", errorTexts(u.Errors))
	}
}

func indentBy(s, by string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = by + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestResourceFileErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, file, content, want string }{
		{"not a mapping", "a.yaml", "- 1\n", "the file must be a mapping"},
		{"empty", "b.yaml", "", "the file is empty"},
		{"unknown top-level field", "c.yaml", "version_info: x\nresource: []\n", "resource: unknown field"},
		{"resources not a list", "d.yaml", "resources: 3\n", "resources: expected a list of resources"},
		{"YAML syntax", "e.yaml", "resources: [\n", "YAML"},
		{"YAML in a .json file", "f.json", "resources: []\n", "not valid JSON"},
		{"bad binary", "g.pb", "\xff\xff\xff", "cannot parse"},
		{"bad text", "h.pb_text", "resources { nope: 1 }", "invalid field name"},
		{"missing", "nosuch.yaml", "", "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.file)
			if c.file != "nosuch.yaml" {
				p = writeFile(t, dir, c.file, c.content)
			}
			_, err := ParseListeners(p, 1, Options{}, nil)
			var fe *FileError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), p+": ") {
				t.Errorf("err = %v, want a FileError with %q", err, c.want)
			}
			_, err = ParseClusters(p, 1, Options{}, nil)
			if !errors.As(err, &fe) {
				t.Errorf("clusters: err = %v", err)
			}
		})
	}
	// JSON with .json, as Envoy reads it.
	p := writeFile(t, dir, "ok.json", `{"version_info": "j", "resources": [{"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": "j",
	  "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
	  "filter_chains": [{"filters": [{"name": "envoy.filters.network.echo"}]}]}]}`)
	if u := parseL(t, p, Options{CheckOnly: true}, nil); len(u.Listeners) != 1 || u.Version != "j" {
		t.Errorf("JSON: %v %s", u.Listeners, errorTexts(u.Errors))
	}
}

func TestParseClusters(t *testing.T) {
	dir := t.TempDir()
	static := loadStatic(t, dir)
	o := Options{CheckOnly: true, Static: static}
	bad := strings.Replace(staticCluster("bad", 1), "STATIC", "EDS", 1)
	p := writeFile(t, dir, "cds.yaml", discovery("1", staticCluster("a", 1), bad, staticCluster("b", 2), staticCluster("a", 3), staticCluster("static_c", 4)))
	u, err := ParseClusters(p, 2, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Clusters) != 2 || len(u.Errors) != 3 {
		t.Fatalf("%d clusters, errors:\n%s", len(u.Clusters), errorTexts(u.Errors))
	}
	want := []string{
		`resources[1] (cluster "bad"): eds_cluster_config.eds_config: required: an EDS cluster reads its endpoints from a config source`,
		`resources[3] (cluster "a"): name: duplicate cluster "a" (also resources[0])`,
		`resources[4] (cluster "static_c"): name: cluster "static_c" is already defined in the bootstrap's static_resources`,
	}
	for i, w := range want {
		if !strings.HasPrefix(u.Errors[i].Error(), w) {
			t.Errorf("error %d:\n got %s\nwant %s", i, u.Errors[i].Error(), w)
		}
	}
	prev := map[string]*ClusterResource{}
	for _, r := range u.Clusters {
		if r.Change != Added || r.Cluster == nil || r.Cluster.Name() != r.Name || r.Message() == nil {
			t.Errorf("cluster %+v", r)
		}
		prev[r.Name] = r
	}
	// a unchanged, b's endpoint changed, a new c; nothing removed.
	p = writeFile(t, dir, "cds.yaml", discovery("2", staticCluster("a", 1), staticCluster("b", 5), staticCluster("c", 6)))
	u2, err := ParseClusters(p, 2, o, prev)
	if err != nil || len(u2.Errors) != 0 {
		t.Fatal(err, errorTexts(u2.Errors))
	}
	got := map[string]Change{}
	for _, r := range u2.Clusters {
		got[r.Name] = r.Change
	}
	if got["a"] != Unchanged || got["b"] != Full || got["c"] != Added || u2.Clusters[0].Cluster != prev["a"].Cluster || len(u2.Removed) != 0 {
		t.Errorf("changes %v, removed %v", got, u2.Removed)
	}
	p = writeFile(t, dir, "cds.yaml", discovery("3", staticCluster("c", 6)))
	u3, _ := ParseClusters(p, 2, o, prev)
	if !slices.Equal(u3.Removed, []string{"a", "b"}) {
		t.Errorf("removed %v", u3.Removed)
	}
}

// .pb and .pb_text files, as Envoy's loadFromFile reads them by extension.
func TestResourceFileProto(t *testing.T) {
	dir := t.TempDir()
	l := &listenerv3.Listener{
		Name:         "p",
		Address:      &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.echo"}}}},
	}
	a, err := anypb.New(l)
	if err != nil {
		t.Fatal(err)
	}
	anyBytes, err := proto.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	// The wire form of DiscoveryResponse{version_info: "b", resources: [a, Resource{version: "r", resource: a'}]}
	// written by hand (field numbers from envoy/service/discovery/v3/discovery.proto).
	l2 := proto.Clone(l).(*listenerv3.Listener)
	l2.Name = "q"
	a2, _ := anypb.New(l2)
	a2Bytes, _ := proto.Marshal(a2)
	var res []byte
	res = protowire.AppendTag(res, 1, protowire.BytesType)
	res = protowire.AppendString(res, "r")
	res = protowire.AppendTag(res, 2, protowire.BytesType)
	res = protowire.AppendBytes(res, a2Bytes)
	wrapped, _ := proto.Marshal(&anypb.Any{TypeUrl: "type.googleapis.com/envoy.service.discovery.v3.Resource", Value: res})
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, "b")
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, anyBytes)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, wrapped)
	p := writeFile(t, dir, "lds.pb", string(b))
	u := parseL(t, p, Options{CheckOnly: true}, nil)
	if u.Version != "b" || len(u.Listeners) != 2 || u.Listeners[0].Name != "p" || u.Listeners[1].Name != "q" || u.Listeners[1].Version != "r" {
		t.Fatalf(".pb: version %q, %v, %s", u.Version, u.Listeners, errorTexts(u.Errors))
	}
	if !proto.Equal(u.Listeners[0].Message(), l) {
		t.Errorf(".pb: read %v, want %v", u.Listeners[0].Message(), l)
	}

	txt := `version_info: "t"
resources {
  [type.googleapis.com/envoy.config.listener.v3.Listener] {
    name: "p"
    address { socket_address { address: "127.0.0.1" port_value: 0 } }
    filter_chains { filters { name: "envoy.filters.network.echo" } }
  }
}
resources {
  [type.googleapis.com/envoy.config.listener.v3.Listener] {
    name: "bad"
    address { socket_address { address: "nope" port_value: 0 } }
    filter_chains { filters { name: "envoy.filters.network.echo" } }
  }
}
`
	p = writeFile(t, dir, "lds.pb_text", txt)
	u = parseL(t, p, Options{CheckOnly: true}, nil)
	if u.Version != "t" || len(u.Listeners) != 1 || !proto.Equal(u.Listeners[0].Message(), l) || len(u.Errors) != 1 ||
		!strings.HasPrefix(u.Errors[0].Error(), `resources[1] (listener "bad"): address.socket_address.address: "nope" is not an IP address`) {
		t.Fatalf(".pb_text: %v %s", u.Listeners, errorTexts(u.Errors))
	}
}

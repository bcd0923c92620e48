package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portico-proxy/portico/engine"
)

// How far Portico gets with what istiod sends a sidecar (docs/istio.md). istiod needs
// Kubernetes and cannot run in this test, so testdata/istio/sidecar_config_dump.json is a
// small /config_dump written by hand in the shape istiod generates (see its README.md):
// the dump's dynamic listeners, clusters, route configurations and endpoints go through
// the readers an xDS response goes through (ParseListenerResources,
// ParseClusterResources), each resource an Any as the gRPC client receives it. What each
// resource is accepted or refused for is kept in testdata/istio/expect.txt, so that the
// test fails when a gap closes (a resource accepted anew: update the file with
// PORTICO_ISTIO_UPDATE=1) as well as when one opens.
//
// PORTICO_ISTIO_DUMP=a.json,b.json runs the same reading over other dumps (a real
// sidecar's or gateway's, or what testdata/istio/istiod, istiod's generator run in
// process, writes) and logs the counts and the refusal reasons ranked by how many
// resources each blocks; nothing is asserted of those.
const (
	istioDump   = "testdata/istio/sidecar_config_dump.json"
	istioExpect = "testdata/istio/expect.txt"
	istioUpdate = "PORTICO_ISTIO_UPDATE"
	istioDumps  = "PORTICO_ISTIO_DUMP"
)

// dumpResource is one dynamic resource of a config dump, as the xDS client receives it.
type dumpResource struct {
	kind string // "cluster", "listener", "route", "endpoint"
	name string
	any  *anypb.Any
	// unlinked are the type URLs in the resource that this binary has no Go type for (so
	// it cannot render the Any), by path in the resource: Istio's own filters
	// (istio.*, stats.PluginConfig, ...) and Envoy extensions Portico does not import.
	unlinked map[string]string
	// probe is the resource with each unlinked Any replaced by a placeholder of a linked
	// type (google.protobuf.StringValue), so that the strict decode runs over the rest of
	// it and reports every other problem too.
	probe *anypb.Any
}

// placeholder marks, inside a google.protobuf.StringValue, an Any whose type this binary
// lacks.
const placeholder = "portico-unlinked:"

const stringValueURL = "type.googleapis.com/google.protobuf.StringValue"

// readConfigDump reads the dynamic resources of an Envoy /config_dump (JSON, proto field
// names or lowerCamelCase), in the dump's order: clusters, endpoints, listeners, routes.
func readConfigDump(t *testing.T, path string) []dumpResource {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var root struct {
		Configs []map[string]json.RawMessage `json:"configs"`
	}
	if err := json.Unmarshal(data, &root); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	// Where each kind sits in its dump section: the list, the wrapper's state (for
	// listeners), and the field holding the resource.
	sections := map[string]struct {
		kind    string
		lists   []string
		states  []string
		members []string
	}{
		"ClustersConfigDump":  {"cluster", []string{"dynamic_active_clusters", "dynamicActiveClusters", "dynamic_warming_clusters", "dynamicWarmingClusters"}, nil, []string{"cluster"}},
		"EndpointsConfigDump": {"endpoint", []string{"dynamic_endpoint_configs", "dynamicEndpointConfigs"}, nil, []string{"endpoint_config", "endpointConfig"}},
		"ListenersConfigDump": {"listener", []string{"dynamic_listeners", "dynamicListeners"}, []string{"active_state", "activeState", "warming_state", "warmingState"}, []string{"listener"}},
		"RoutesConfigDump":    {"route", []string{"dynamic_route_configs", "dynamicRouteConfigs"}, nil, []string{"route_config", "routeConfig"}},
	}
	var out []dumpResource
	for _, c := range root.Configs {
		var typ string
		_ = json.Unmarshal(c["@type"], &typ)
		sec, ok := sections[typ[strings.LastIndex(typ, ".")+1:]]
		if !ok {
			continue
		}
		for _, list := range sec.lists {
			var items []map[string]json.RawMessage
			if raw, ok := c[list]; !ok || json.Unmarshal(raw, &items) != nil {
				continue
			}
			for _, item := range items {
				holders := []map[string]json.RawMessage{item}
				for _, st := range sec.states {
					var inner map[string]json.RawMessage
					if raw, ok := item[st]; ok && json.Unmarshal(raw, &inner) == nil {
						holders = append(holders[:0], inner)
						break
					}
				}
				for _, h := range holders {
					for _, m := range sec.members {
						if raw, ok := h[m]; ok {
							out = append(out, dumpAny(t, path, sec.kind, raw))
						}
					}
				}
			}
		}
	}
	return out
}

// dumpAny makes a resource of the dump the Any a gRPC client would receive: its JSON
// through protojson, with each Any of a type this binary lacks kept as that type URL and
// no value (what the client holds of a type it cannot resolve). Fields unknown to this
// go-control-plane are dropped, as a binary decode keeps them aside and the JSON
// rendering of the strict decode never sees them.
func dumpAny(t *testing.T, path, kind string, raw json.RawMessage) dumpResource {
	t.Helper()
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	r := dumpResource{kind: kind, unlinked: map[string]string{}}
	if obj, ok := v.(map[string]any); ok {
		r.name, _ = obj["name"].(string)
		if r.name == "" {
			r.name, _ = obj["cluster_name"].(string)
		}
		if r.name == "" {
			r.name, _ = obj["clusterName"].(string)
		}
		if _, ok := obj["@type"]; !ok {
			obj["@type"] = "type.googleapis.com/" + map[string]string{
				"cluster": clusterType, "listener": listenerType,
				"route": "envoy.config.route.v3.RouteConfiguration", "endpoint": "envoy.config.endpoint.v3.ClusterLoadAssignment"}[kind]
		}
		if url, _ := obj["@type"].(string); !linked(url) {
			r.unlinked[""] = url
			r.any = &anypb.Any{TypeUrl: url}
			r.probe = r.any
			return r
		}
	}
	v = markUnlinked(v, "", r.unlinked)
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	probe := &anypb.Any{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, probe); err != nil {
		t.Fatalf("%s: %s %q: %v", path, kind, r.name, err)
	}
	r.probe = probe
	r.any = proto.Clone(probe).(*anypb.Any)
	if err := restoreUnlinked(r.any); err != nil {
		t.Fatalf("%s: %s %q: %v", path, kind, r.name, err)
	}
	return r
}

func linked(url string) bool {
	_, err := protoregistry.GlobalTypes.FindMessageByURL(url)
	return err == nil
}

// markUnlinked replaces each object whose "@type" this binary cannot resolve by a
// StringValue naming it, recording the path (proto names, [i] indexes, as the decode's
// errors spell them).
func markUnlinked(v any, at string, found map[string]string) any {
	switch x := v.(type) {
	case map[string]any:
		if url, ok := x["@type"].(string); ok && !linked(url) {
			found[at] = url
			return map[string]any{"@type": stringValueURL, "value": placeholder + url}
		}
		for k, e := range x {
			p := k
			if at != "" {
				p = at + "." + k
			}
			x[k] = markUnlinked(e, p, found)
		}
	case []any:
		for i, e := range x {
			x[i] = markUnlinked(e, fmt.Sprintf("%s[%d]", at, i), found)
		}
	}
	return v
}

// restoreUnlinked turns the placeholders inside a back into Anys of their own type URL
// with no value, re-encoding each Any on the way.
func restoreUnlinked(a *anypb.Any) error {
	if a.GetTypeUrl() == stringValueURL {
		s := &wrapperspb.StringValue{}
		if err := a.UnmarshalTo(s); err != nil {
			return err
		}
		if url, ok := strings.CutPrefix(s.GetValue(), placeholder); ok {
			a.TypeUrl, a.Value = url, nil
		}
		return nil
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return err
	}
	if err := restoreIn(m.ProtoReflect()); err != nil {
		return err
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	a.Value = b
	return err
}

func restoreIn(m protoreflect.Message) error {
	var err error
	visit := func(v protoreflect.Message) {
		if err != nil {
			return
		}
		if a, ok := v.Interface().(*anypb.Any); ok {
			err = restoreUnlinked(a)
			return
		}
		err = restoreIn(v)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := range v.List().Len() {
				visit(v.List().Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, e protoreflect.Value) bool {
				visit(e.Message())
				return true
			})
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			visit(v.Message())
		}
		return err == nil
	})
	return err
}

// verdict is what Portico made of one resource.
type verdict struct {
	kind, name string
	accepted   bool
	// wire is the rejection as the xDS client would NACK it today (empty when accepted).
	wire string
	// reasons are the features the resource needs, from the probe: each refused
	// FieldError's Feature (or "invalid:PATH MSG" when it has none), with an unlinked
	// type shown as "unlinked:PATH-WITHOUT-INDEXES=TYPE".
	reasons []string
	// errs are the probe's errors, each with its field path and message.
	errs []*FieldError
}

// judgeDump runs a dump's resources through the readers the way an ADS client applies a
// response set: clusters first (CDS before LDS), the accepted ones registered so that the
// listeners can name them, then route configurations (ParseRouteResources, RDS).
// Endpoints go through ParseEndpointResources (EDS), each ClusterLoadAssignment on its own.
func judgeDump(t *testing.T, rs []dumpResource) []verdict {
	t.Helper()
	reg := engine.NewClusterRegistry()
	probeReg := engine.NewClusterRegistry()
	var out []verdict
	byKind := map[string][]dumpResource{}
	for _, r := range rs {
		byKind[r.kind] = append(byKind[r.kind], r)
	}
	for _, r := range byKind["cluster"] {
		v := verdict{kind: r.kind, name: r.name}
		u, err := ParseClusterResources("istio", "1", []*anypb.Any{r.any}, 1, Options{CheckOnly: true, Clusters: engine.NewClusterRegistry()}, nil)
		if err != nil {
			t.Fatalf("%s %q: %v", r.kind, r.name, err)
		}
		if len(u.Clusters) == 1 {
			v.accepted = true
			if r.kind == "cluster" {
				reg.Put(u.Clusters[0].Cluster)
			}
		} else {
			v.wire = u.Errors[0].Error()
		}
		pu, err := ParseClusterResources("istio", "1", []*anypb.Any{r.probe}, 1, Options{CheckOnly: true, Clusters: engine.NewClusterRegistry()}, nil)
		if err != nil {
			t.Fatalf("%s %q: %v", r.kind, r.name, err)
		}
		v.reasons, v.errs = reasonsOf(pu.Errors, r.unlinked)
		if r.kind == "cluster" {
			probeReg.Put(placeholderCluster(t, r.name))
		}
		out = append(out, v)
	}
	// Endpoints, by the EDS reader.
	for _, r := range byKind["endpoint"] {
		v := verdict{kind: r.kind, name: r.name}
		u, err := ParseEndpointResources("istio", "1", []*anypb.Any{r.any})
		if err != nil {
			t.Fatalf("%s %q: %v", r.kind, r.name, err)
		}
		if len(u.Endpoints) == 1 {
			v.accepted = true
		} else {
			v.wire = u.Errors[0].Error()
		}
		pu, err := ParseEndpointResources("istio", "1", []*anypb.Any{r.probe})
		if err != nil {
			t.Fatalf("%s %q: %v", r.kind, r.name, err)
		}
		v.reasons, v.errs = reasonsOf(pu.Errors, r.unlinked)
		out = append(out, v)
	}
	// Listeners, naming the accepted clusters (the probe: every cluster of the dump, so
	// that a listener's own gaps show, not its clusters').
	listeners := byKind["listener"]
	for _, r := range listeners {
		v := verdict{kind: r.kind, name: r.name}
		u, err := ParseListenerResources("istio", "1", []*anypb.Any{r.any}, 1, Options{CheckOnly: true, Clusters: reg}, nil)
		if err != nil {
			t.Fatalf("%s %q: %v", r.kind, r.name, err)
		}
		if len(u.Listeners) == 1 {
			v.accepted = true
		} else {
			v.wire = u.Errors[0].Error()
		}
		pu, err := ParseListenerResources("istio", "1", []*anypb.Any{r.probe}, 1, Options{CheckOnly: true, Clusters: probeReg}, nil)
		if err != nil {
			t.Fatalf("%s %q: %v", r.kind, r.name, err)
		}
		v.reasons, v.errs = reasonsOf(pu.Errors, r.unlinked)
		out = append(out, v)
	}
	// Route configurations: their clusters are not checked (validate_clusters is false
	// for RDS unless set, as in Envoy, and istiod sets it false).
	for _, r := range byKind["route"] {
		v := verdict{kind: r.kind, name: r.name}
		u, err := ParseRouteResources("istio", "1", []*anypb.Any{r.any}, Options{CheckOnly: true, Clusters: reg}, nil, nil)
		if err != nil {
			t.Fatalf("%s %q: %v", r.kind, r.name, err)
		}
		if len(u.Routes) == 1 {
			v.accepted = true
		} else {
			v.wire = u.Errors[0].Error()
		}
		pu, err := ParseRouteResources("istio", "1", []*anypb.Any{r.probe}, Options{CheckOnly: true, Clusters: probeReg}, nil, nil)
		if err != nil {
			t.Fatalf("%s %q: %v", r.kind, r.name, err)
		}
		v.reasons, v.errs = reasonsOf(pu.Errors, r.unlinked)
		out = append(out, v)
	}
	return out
}

func placeholderCluster(t *testing.T, name string) *engine.Cluster {
	t.Helper()
	c, err := engine.NewCluster(engine.ClusterConfig{Name: name, ConnectTimeout: engine.DefaultConnectTimeout, PerConnectionBufferLimit: engine.DefaultBufferLimit}, 1)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// reasonsOf turns a probe's rejection into features: the unlinked placeholders back into
// their type URLs, the rest by Feature, sorted, without repeats.
func reasonsOf(res []ResourceError, unlinked map[string]string) ([]string, []*FieldError) {
	if len(res) == 0 {
		return nil, nil
	}
	var es Errors
	if !errors.As(res[0].Err, &es) {
		return []string{"invalid: " + res[0].Err.Error()}, []*FieldError{{Msg: res[0].Err.Error()}}
	}
	set := map[string]bool{}
	for _, e := range es {
		var r string
		if url, ok := unlinkedAt(e.Path, unlinked); ok {
			r = "unlinked:" + stripIndexes(e.Path) + "=" + strings.TrimPrefix(url, "type.googleapis.com/")
		} else if e.Feature != "" {
			r = e.Feature
		} else {
			r = "invalid:" + stripIndexes(e.Path)
		}
		set[r] = true
	}
	var out []string
	for r := range set {
		out = append(out, r)
	}
	sort.Strings(out)
	return out, es
}

// unlinkedAt finds the unlinked type a problem's path is at or under.
func unlinkedAt(path string, unlinked map[string]string) (string, bool) {
	best := ""
	for p := range unlinked {
		if (path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[")) && len(p) >= len(best) {
			best = p
		}
	}
	if url, ok := unlinked[best]; ok && (best != "" || path == "") {
		return url, true
	}
	return "", false
}

func stripIndexes(p string) string {
	var b strings.Builder
	depth := 0
	for _, r := range p {
		switch {
		case r == '[':
			depth++
		case r == ']':
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// expectLine is how expect.txt states a verdict.
func (v verdict) expectLine() string {
	state := "accepted"
	if !v.accepted {
		state = "refused"
	}
	line := fmt.Sprintf("%s %s: %s", v.kind, v.name, state)
	if len(v.reasons) > 0 {
		line += " " + strings.Join(v.reasons, " ")
	}
	return line
}

// TestIstioSidecar reads the hand-made sidecar dump and checks the verdicts against
// expect.txt: the exact accepted set, each refusal's reasons, and for a cluster, listener
// or route configuration the first line of the NACK the xDS client would send istiod
// today.
func TestIstioSidecar(t *testing.T) {
	vs := judgeDump(t, readConfigDump(t, istioDump))
	if len(vs) == 0 {
		t.Fatal("no dynamic resources read from the dump")
	}
	var got []string
	for _, v := range vs {
		got = append(got, v.expectLine())
		if v.accepted {
			continue
		}
		// Without the list of supported types, which grows with every filter added.
		nack, _, _ := strings.Cut(firstLine(v.wire), " (supported: ")
		got = append(got, "  nack: "+nack)
		// Every problem the probe found names its field and why.
		if len(v.errs) == 0 {
			t.Errorf("%s %q: refused with no field errors: %s", v.kind, v.name, v.wire)
		}
		for _, e := range v.errs {
			if e.Path == "" || e.Msg == "" {
				t.Errorf("%s %q: a problem without its field or reason: %q", v.kind, v.name, e.Error())
			}
		}
	}
	if os.Getenv(istioUpdate) != "" {
		head := "# What Portico makes of each dynamic resource of sidecar_config_dump.json (see README.md):\n" +
			"# accepted, or refused with the features it needs (field path without indexes,\n" +
			"# =TYPE for a typed_config; unlinked:PATH=TYPE for a type Portico's binary lacks),\n" +
			"# and the first line of the NACK's error_detail today.\n" +
			"# Checked by TestIstioSidecar; rewrite with PORTICO_ISTIO_UPDATE=1 go test ./config -run Istio\n"
		if err := os.WriteFile(istioExpect, []byte(head+strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	data, err := os.ReadFile(istioExpect)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			want = append(want, l)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("verdicts differ from %s (if a gap closed, rewrite it with %s=1 and check the diff):\n%s", istioExpect, istioUpdate, lineDiff(want, got))
	}
}

// TestIstioUnlinkedNACK: a resource holding an Any of a type the binary lacks (Istio's
// own filters) is read with that Any as just its "@type", so its NACK names the resource
// and the type at its field, and, its name being known, the state-of-the-world removal of
// the listeners the response lacks still happens.
func TestIstioUnlinkedNACK(t *testing.T) {
	rs := readConfigDump(t, istioDump)
	var with *dumpResource
	for i := range rs {
		if rs[i].kind == "listener" && len(rs[i].unlinked) > 0 {
			with = &rs[i]
			break
		}
	}
	if with == nil {
		t.Fatal("the dump needs a listener with an unlinked type")
	}
	prev := map[string]*ListenerResource{}
	for _, name := range []string{"gone", with.name} {
		u, err := ParseListenerResources("istio", "0", []*anypb.Any{mustAny(t, echoListenerMsg(t, name, 0))}, 1, Options{CheckOnly: true}, nil)
		if err != nil || len(u.Listeners) != 1 {
			t.Fatalf("setup: %v %+v", err, u)
		}
		prev[name] = u.Listeners[0]
	}
	u, err := ParseListenerResources("istio", "1", []*anypb.Any{with.any}, 1, Options{CheckOnly: true}, prev)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Errors) != 1 {
		t.Fatalf("errors: %v", u.Errors)
	}
	msg := u.Errors[0].Error()
	if u.Errors[0].Name != with.name || !strings.Contains(msg, fmt.Sprintf("(listener %q)", with.name)) {
		t.Errorf("the NACK does not name listener %q: %s", with.name, msg)
	}
	for _, url := range with.unlinked {
		if !strings.Contains(msg, url) {
			t.Errorf("the NACK does not name the unlinked type %s: %s", url, msg)
		}
	}
	if !slices.Contains(u.Removed, "gone") || slices.Contains(u.Removed, with.name) {
		t.Errorf("removed %v, want gone (and not the rejected %q, which keeps its last good version)", u.Removed, with.name)
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + fmt.Sprintf(" (+%d lines)", strings.Count(s, "\n"))
	}
	return s
}

// lineDiff shows the lines only in want (-) and only in got (+).
func lineDiff(want, got []string) string {
	in := func(l []string, s string) bool {
		for _, x := range l {
			if x == s {
				return true
			}
		}
		return false
	}
	var b strings.Builder
	for _, l := range want {
		if !in(got, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range got {
		if !in(want, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}

// TestIstioDumps reports on the dumps named by PORTICO_ISTIO_DUMP (comma-separated).
func TestIstioDumps(t *testing.T) {
	env := os.Getenv(istioDumps)
	if env == "" {
		t.Skipf("set %s to dump files to report on them", istioDumps)
	}
	var all []verdict
	paths := strings.Split(env, ",")
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			rs := readConfigDump(t, path)
			vs := judgeDump(t, rs)
			all = append(all, vs...)
			var b strings.Builder
			for _, v := range vs {
				fmt.Fprintf(&b, "  %s\n", v.expectLine())
			}
			t.Log(istioReport(path, vs) + "  each resource:\n" + b.String())
		})
	}
	if len(paths) > 1 {
		t.Log(istioReport(fmt.Sprintf("all %d dumps", len(paths)), all))
	}
}

// istioReport counts the verdicts by kind and ranks the reasons by how many refused
// resources each blocks, and by how many it alone blocks (those it would unblock), then
// orders features greedily by resources unblocked.
func istioReport(path string, vs []verdict) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s\n", path)
	kinds := []string{"cluster", "endpoint", "listener", "route"}
	for _, k := range kinds {
		n, ok := 0, 0
		for _, v := range vs {
			if v.kind == k {
				n++
				if v.accepted {
					ok++
				}
			}
		}
		if n > 0 {
			fmt.Fprintf(&b, "  %-8s %3d read, %3d accepted, %3d refused\n", k, n, ok, n-ok)
		}
	}
	wires := map[string]int{}
	for _, v := range vs {
		if !v.accepted {
			w := v.wire
			if i := strings.Index(w, ": "); i >= 0 {
				w = w[i+2:] // the resource's own name off, to group alike NACKs
			}
			wires[v.kind+" NACK: "+firstLine(w)]++
		}
	}
	b.WriteString("  what the NACKs say today (first line, resources):\n")
	for _, w := range sortedByCount(wires) {
		fmt.Fprintf(&b, "    %3d  %s\n", wires[w], w)
	}
	ranking(&b, "refusal reasons, by field path", vs, func(r string) string { return r })
	ranking(&b, "refusal reasons, by feature (a typed_config's type wherever it sits)", vs, coarse)
	return b.String()
}

// coarse names a reason by the feature to build: a typed_config by its type alone, any
// other field by its path.
func coarse(r string) string {
	if i := strings.LastIndex(r, "typed_config="); i >= 0 {
		pre := ""
		if strings.HasPrefix(r, "unlinked:") {
			pre = "unlinked:"
		}
		return pre + r[i+len("typed_config="):]
	}
	return r
}

func sortedByCount(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if m[out[i]] != m[out[j]] {
			return m[out[i]] > m[out[j]]
		}
		return out[i] < out[j]
	})
	return out
}

// ranking writes the reasons (grouped by key) with how many refused resources each
// blocks and how many it alone blocks, then a greedy build order: the feature that lets
// the most resources in, given those above it are built.
func ranking(b *strings.Builder, title string, vs []verdict, key func(string) string) {
	blocks, alone := map[string]int{}, map[string]int{}
	needs := map[int]map[string]bool{}
	for i, v := range vs {
		if v.accepted {
			continue
		}
		needs[i] = map[string]bool{}
		for _, r := range v.reasons {
			needs[i][v.kind+" "+key(r)] = true
		}
		for r := range needs[i] {
			blocks[r]++
			if len(needs[i]) == 1 {
				alone[r]++
			}
		}
	}
	rs := sortedByCount(blocks)
	fmt.Fprintf(b, "  %s (resources blocked, of which by it alone):\n", title)
	for _, r := range rs {
		fmt.Fprintf(b, "    %3d %3d  %s\n", blocks[r], alone[r], r)
	}
	left := needs
	fmt.Fprintf(b, "  greedy build order (feature: +resources accepted once it and those above are built):\n")
	for step := 0; step < 15 && len(left) > 0; step++ {
		best, bestN, bestTouch := "", -1, -1
		for _, r := range rs {
			n, touch := 0, 0
			for _, need := range left {
				if need[r] {
					touch++
					if len(need) == 1 {
						n++
					}
				}
			}
			if touch > 0 && (n > bestN || n == bestN && touch > bestTouch) {
				best, bestN, bestTouch = r, n, touch
			}
		}
		if best == "" {
			break
		}
		for i, need := range left {
			delete(need, best)
			if len(need) == 0 {
				delete(left, i)
			}
		}
		fmt.Fprintf(b, "    %2d. %s: +%d\n", step+1, best, bestN)
	}
	if len(left) > 0 {
		fmt.Fprintf(b, "    (%d resources still need more)\n", len(left))
	}
}

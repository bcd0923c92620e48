package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// This file renders Envoy's /config_dump: an envoy.admin.v3.ConfigDump of the bootstrap,
// the clusters and the listeners, in that order (Envoy's, the config tracker's keys
// sorted), each an Any with its "@type", as protobuf's JSON with the proto field names,
// pretty-printed with one space per level as Envoy prints it. Fields annotated
// udpa.annotations.sensitive (private keys, session ticket keys, ...) are "[redacted]",
// as Envoy redacts them, since the dump goes to whoever reaches the admin.

// DumpEntry is one resource of a config dump as the listener or cluster manager holds it.
type DumpEntry struct {
	// Name is the resource's name, which ?name_regex= matches.
	Name string
	// Version is the version_info of the update that brought it ("" for static ones).
	Version     string
	LastUpdated time.Time // zero: not shown
	// Resource is the *listenerv3.Listener or *clusterv3.Cluster; it is not modified.
	Resource proto.Message
}

// DumpFailure is the last rejected update of a resource (envoy.admin.v3.UpdateFailureState).
type DumpFailure struct {
	Name, Details string
	// Failed is the rejected resource, or nil if it could not be read as one.
	Failed            proto.Message
	LastUpdateAttempt time.Time
}

// DumpState is what the listener and cluster managers hold now, for one dump. A nil
// StaticListeners (StaticClusters) means the bootstrap's static_resources, as loaded; the
// other lists are shown in their order.
type DumpState struct {
	StaticListeners, ActiveListeners, WarmingListeners, DrainingListeners []DumpEntry
	// ListenerFailures show as error_state, beside the active_state of the listener of
	// that name (the last good version) if there is one.
	ListenerFailures []DumpFailure
	LDSVersion       string // ListenersConfigDump.version_info

	StaticClusters, ActiveClusters, WarmingClusters []DumpEntry
	// ClusterFailures show as error_state of the dynamic_active_clusters entry of that
	// name, or of an entry of their own (error_state only) if none is active.
	ClusterFailures []DumpFailure
	CDSVersion      string // ClustersConfigDump.version_info

	// Endpoints are the EDS assignments in use (their Resource a
	// *endpointv3.ClusterLoadAssignment, Name its cluster_name), shown with ?include_eds.
	Endpoints []DumpEntry
	// HasRDS adds a RoutesConfigDump (rds.go): the inline route configurations of the
	// listeners given in RouteListeners as static_route_configs, and DynamicRoutes.
	HasRDS         bool
	RouteListeners []DumpEntry
	DynamicRoutes  []RouteDumpEntry
}

// DumpError is a /config_dump query that cannot be answered, with the HTTP status Envoy
// answers it with (400, or 404 for an unknown resource); the admin server uses it.
type DumpError struct {
	Status int
	Msg    string
}

func (e *DumpError) Error() string { return e.Msg }

// HTTPStatus is the status to answer with.
func (e *DumpError) HTTPStatus() int { return e.Status }

// RenderConfigDump renders Envoy's /config_dump for cfg (the bootstrap) and st (nil:
// nothing dynamic) as JSON. It reads Envoy's query parameters:
//
//   - resource=<field>: only the elements of that repeated field of a dump message
//     (dynamic_listeners, static_clusters, ...), each an Any of its own; a field that is
//     not repeated is 400, an unknown one 404.
//
//   - mask=<paths>: a FieldMask (comma-separated snake_case paths). Without resource it
//     trims each dump message and drops those it does not apply to (400 if none is
//     left); with resource it trims each element, a path's first field may be the
//     element's Any (static_listeners' "listener.name") and goes on inside the resource.
//     As in Envoy a path goes through singular messages only, not into lists or maps.
//
//   - name_regex=<RE2>: only the listeners and clusters whose whole name matches; the
//     bootstrap is shown whatever its names.
//
//   - include_eds: also the EDS assignments in use (EndpointsConfigDump's
//     dynamic_endpoint_configs; the static clusters' endpoints are in their
//     load_assignment, in static_clusters).
func RenderConfigDump(cfg *Config, st *DumpState, q url.Values) ([]byte, error) {
	if st == nil {
		st = &DumpState{}
	}
	match := func(string) bool { return true }
	if re := q.Get("name_regex"); re != "" {
		// Envoy's regex matcher matches the whole name.
		rx, err := regexp.Compile(`^(?:` + re + `)$`)
		if err != nil {
			return nil, &DumpError{http.StatusBadRequest, fmt.Sprintf("INVALID_ARGUMENT: Error while parsing name_regex from %s: %v", re, err)}
		}
		match = rx.MatchString
	}
	var dumps []proto.Message
	var bs *bootstrapv3.Bootstrap
	if cfg != nil && cfg.bootstrap != nil {
		bs = &bootstrapv3.Bootstrap{}
		if err := proto.Unmarshal(cfg.bootstrap, bs); err != nil {
			return nil, fmt.Errorf("config dump: the bootstrap: %w", err)
		}
	}
	// The static entries are packed from bs before bs itself is redacted (pack redacts
	// its own copy).
	clusters, err := clustersDump(bs, cfg, st, match)
	if err != nil {
		return nil, err
	}
	listeners, err := listenersDump(bs, cfg, st, match)
	if err != nil {
		return nil, err
	}
	if bs != nil {
		redact(bs.ProtoReflect(), false)
		dumps = append(dumps, &adminv3.BootstrapConfigDump{Bootstrap: bs, LastUpdated: stamp(cfg.loaded)})
	}
	dumps = append(dumps, clusters)
	if q.Has("include_eds") {
		eds, err := endpointsDump(st, match) // eds.go
		if err != nil {
			return nil, err
		}
		dumps = append(dumps, eds)
	}
	dumps = append(dumps, listeners)
	if st.HasRDS {
		routes, err := routesDump(st, match) // rds.go
		if err != nil {
			return nil, err
		}
		dumps = append(dumps, routes)
	}

	var paths []string
	for _, p := range strings.Split(q.Get("mask"), ",") {
		if p != "" {
			paths = append(paths, p)
		}
	}
	out := &adminv3.ConfigDump{}
	if q.Has("resource") {
		if err := addResource(out, dumps, q.Get("resource"), paths); err != nil {
			return nil, err
		}
	} else {
		for _, d := range dumps {
			if paths != nil && !trimToMask(d.ProtoReflect(), paths) {
				continue // as Envoy: a mask may fit some dump messages and not others
			}
			a, err := anypb.New(d)
			if err != nil {
				return nil, fmt.Errorf("config dump: pack %s: %w", d.ProtoReflect().Descriptor().FullName(), err)
			}
			out.Configs = append(out.Configs, a)
		}
		if paths != nil && len(out.Configs) == 0 {
			return nil, &DumpError{http.StatusBadRequest, fmt.Sprintf("FieldMask %s could not be successfully applied to any configs.", q.Get("mask"))}
		}
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("config dump: %w", err)
	}
	// protojson varies its spacing on purpose (so that nobody depends on it); Envoy's
	// layout, one space per level and ": ", is written by encoding/json instead.
	var pretty bytes.Buffer
	pretty.Grow(len(b) + len(b)/2)
	if err := json.Indent(&pretty, b, "", " "); err != nil {
		return nil, fmt.Errorf("config dump: %w", err)
	}
	pretty.WriteByte('\n')
	return pretty.Bytes(), nil
}

// ListenerInbound reports whether m, a *listenerv3.Listener (a ListenerResource's
// Message), has traffic_direction INBOUND: the listeners /drain_listeners?inboundonly
// drains. Anything else is not inbound. Portico reads traffic_direction for this alone.
func ListenerInbound(m proto.Message) bool {
	l, ok := m.(*listenerv3.Listener)
	return ok && l.GetTrafficDirection() == corev3.TrafficDirection_INBOUND
}

// InboundListeners are the names (as in Config.Listeners: made up for an unnamed one) of
// the bootstrap's static listeners whose traffic_direction is INBOUND (see
// ListenerInbound).
func (c *Config) InboundListeners() []string {
	if c == nil || c.bootstrap == nil {
		return nil
	}
	bs := &bootstrapv3.Bootstrap{}
	if proto.Unmarshal(c.bootstrap, bs) != nil { // it was marshalled from one at load
		return nil
	}
	ls := bs.GetStaticResources().GetListeners()
	all := listenerNames(ls)
	var names []string
	for i, l := range ls {
		if ListenerInbound(l) {
			names = append(names, all[i])
		}
	}
	return names
}

// stamp is t as a Timestamp, nil for the zero time.
func stamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// pack is a redacted copy of m in an Any; nil for nil.
func pack(m proto.Message) (*anypb.Any, error) {
	if m == nil {
		return nil, nil
	}
	c := proto.Clone(m)
	redact(c.ProtoReflect(), false)
	a, err := anypb.New(c)
	if err != nil {
		return nil, fmt.Errorf("config dump: pack %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return a, nil
}

func failureState(f *DumpFailure) (*adminv3.UpdateFailureState, error) {
	a, err := pack(f.Failed)
	if err != nil {
		return nil, err
	}
	return &adminv3.UpdateFailureState{FailedConfiguration: a, LastUpdateAttempt: stamp(f.LastUpdateAttempt), Details: f.Details}, nil
}

// staticEntries are the bootstrap's static resources as dump entries, updated when cfg
// was loaded, named by name (which may differ from the resource's own name field).
func staticEntries[T proto.Message](bs *bootstrapv3.Bootstrap, cfg *Config, list func(*bootstrapv3.Bootstrap) []T, name func([]T) []string) []DumpEntry {
	if bs == nil {
		return nil
	}
	rs := list(bs)
	names := name(rs)
	out := make([]DumpEntry, len(rs))
	for i, r := range rs {
		out[i] = DumpEntry{Name: names[i], LastUpdated: cfg.loaded, Resource: r}
	}
	return out
}

func clusterNames(cs []*clusterv3.Cluster) []string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.GetName()
	}
	return names
}

func clustersDump(bs *bootstrapv3.Bootstrap, cfg *Config, st *DumpState, match func(string) bool) (*adminv3.ClustersConfigDump, error) {
	d := &adminv3.ClustersConfigDump{VersionInfo: st.CDSVersion}
	static := st.StaticClusters
	if static == nil {
		static = staticEntries(bs, cfg, func(b *bootstrapv3.Bootstrap) []*clusterv3.Cluster { return b.GetStaticResources().GetClusters() }, clusterNames)
	}
	for _, e := range static {
		if !match(e.Name) {
			continue
		}
		a, err := pack(e.Resource)
		if err != nil {
			return nil, err
		}
		d.StaticClusters = append(d.StaticClusters, &adminv3.ClustersConfigDump_StaticCluster{Cluster: a, LastUpdated: stamp(e.LastUpdated)})
	}
	dynamic := func(es []DumpEntry) ([]*adminv3.ClustersConfigDump_DynamicCluster, []string, error) {
		var out []*adminv3.ClustersConfigDump_DynamicCluster
		var names []string
		for _, e := range es {
			if !match(e.Name) {
				continue
			}
			a, err := pack(e.Resource)
			if err != nil {
				return nil, nil, err
			}
			out = append(out, &adminv3.ClustersConfigDump_DynamicCluster{VersionInfo: e.Version, Cluster: a, LastUpdated: stamp(e.LastUpdated)})
			names = append(names, e.Name)
		}
		return out, names, nil
	}
	active, names, err := dynamic(st.ActiveClusters)
	if err != nil {
		return nil, err
	}
	if d.DynamicWarmingClusters, _, err = dynamic(st.WarmingClusters); err != nil {
		return nil, err
	}
	for i := range st.ClusterFailures {
		f := &st.ClusterFailures[i]
		if !match(f.Name) {
			continue
		}
		es, err := failureState(f)
		if err != nil {
			return nil, err
		}
		if j := slices.Index(names, f.Name); j >= 0 {
			active[j].ErrorState = es
		} else {
			active = append(active, &adminv3.ClustersConfigDump_DynamicCluster{ErrorState: es})
			names = append(names, f.Name)
		}
	}
	d.DynamicActiveClusters = active
	return d, nil
}

func listenersDump(bs *bootstrapv3.Bootstrap, cfg *Config, st *DumpState, match func(string) bool) (*adminv3.ListenersConfigDump, error) {
	d := &adminv3.ListenersConfigDump{VersionInfo: st.LDSVersion}
	static := st.StaticListeners
	if static == nil {
		// Unnamed listeners match name_regex by the name Portico gives them.
		static = staticEntries(bs, cfg, func(b *bootstrapv3.Bootstrap) []*listenerv3.Listener { return b.GetStaticResources().GetListeners() }, listenerNames)
	}
	for _, e := range static {
		if !match(e.Name) {
			continue
		}
		a, err := pack(e.Resource)
		if err != nil {
			return nil, err
		}
		d.StaticListeners = append(d.StaticListeners, &adminv3.ListenersConfigDump_StaticListener{Listener: a, LastUpdated: stamp(e.LastUpdated)})
	}
	// One DynamicListener per name, in the order names first appear: active, warming,
	// draining, then failures of listeners that have no good version.
	byName := map[string]*adminv3.ListenersConfigDump_DynamicListener{}
	get := func(name string) *adminv3.ListenersConfigDump_DynamicListener {
		dl := byName[name]
		if dl == nil {
			dl = &adminv3.ListenersConfigDump_DynamicListener{Name: name}
			byName[name] = dl
			d.DynamicListeners = append(d.DynamicListeners, dl)
		}
		return dl
	}
	for _, set := range []struct {
		es    []DumpEntry
		state func(*adminv3.ListenersConfigDump_DynamicListener) **adminv3.ListenersConfigDump_DynamicListenerState
	}{
		{st.ActiveListeners, func(dl *adminv3.ListenersConfigDump_DynamicListener) **adminv3.ListenersConfigDump_DynamicListenerState {
			return &dl.ActiveState
		}},
		{st.WarmingListeners, func(dl *adminv3.ListenersConfigDump_DynamicListener) **adminv3.ListenersConfigDump_DynamicListenerState {
			return &dl.WarmingState
		}},
		{st.DrainingListeners, func(dl *adminv3.ListenersConfigDump_DynamicListener) **adminv3.ListenersConfigDump_DynamicListenerState {
			return &dl.DrainingState
		}},
	} {
		for _, e := range set.es {
			if !match(e.Name) {
				continue
			}
			a, err := pack(e.Resource)
			if err != nil {
				return nil, err
			}
			*set.state(get(e.Name)) = &adminv3.ListenersConfigDump_DynamicListenerState{VersionInfo: e.Version, Listener: a, LastUpdated: stamp(e.LastUpdated)}
		}
	}
	for i := range st.ListenerFailures {
		f := &st.ListenerFailures[i]
		if !match(f.Name) {
			continue
		}
		es, err := failureState(f)
		if err != nil {
			return nil, err
		}
		get(f.Name).ErrorState = es
	}
	return d, nil
}

// addResource puts the elements of the repeated field named resource of the first dump
// message that has such a field into out, each trimmed to the mask.
func addResource(out *adminv3.ConfigDump, dumps []proto.Message, resource string, paths []string) error {
	for _, d := range dumps {
		m := d.ProtoReflect()
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(resource))
		if fd == nil {
			continue
		}
		if !fd.IsList() || fd.Message() == nil {
			return &DumpError{http.StatusBadRequest, fmt.Sprintf("%s is not a repeated field. Use ?mask=%s to get only this field", resource, resource)}
		}
		l := m.Get(fd).List()
		for i := 0; i < l.Len(); i++ {
			el := l.Get(i).Message()
			if paths != nil {
				ok, err := trimResource(el, paths)
				if err != nil {
					return err
				}
				if !ok {
					var b strings.Builder
					for _, p := range paths {
						fmt.Fprintf(&b, "paths: %q\n", p)
					}
					return &DumpError{http.StatusBadRequest, fmt.Sprintf("FieldMask %s could not be successfully used.", b.String())}
				}
			}
			a, err := anypb.New(el.Interface())
			if err != nil {
				return fmt.Errorf("config dump: pack %s: %w", el.Descriptor().FullName(), err)
			}
			out.Configs = append(out.Configs, a)
		}
		return nil
	}
	return &DumpError{http.StatusNotFound, fmt.Sprintf("%s not found in config dump", resource)}
}

// anyName is the full name of google.protobuf.Any.
const anyName = "google.protobuf.Any"

// trimResource trims one element of a dump list to the mask. A path whose first field is
// a singular Any of the element goes on inside the resource packed there (unpacked,
// trimmed, packed again); the rest of the path is checked against that resource. It
// reports false if a path does not fit.
func trimResource(m protoreflect.Message, paths []string) (bool, error) {
	var outer []string
	inner := map[protoreflect.Name][]string{}
	whole := map[protoreflect.Name]bool{}
	fields := m.Descriptor().Fields()
	for _, p := range paths {
		first, rest, _ := strings.Cut(p, ".")
		fd := fields.ByName(protoreflect.Name(first))
		if fd == nil || fd.IsList() || fd.IsMap() || fd.Message() == nil || fd.Message().FullName() != anyName {
			outer = append(outer, p)
			continue
		}
		outer = append(outer, first)
		if rest == "" {
			whole[fd.Name()] = true
		} else {
			inner[fd.Name()] = append(inner[fd.Name()], rest)
		}
	}
	for name, ps := range inner {
		fd := fields.ByName(name)
		if whole[name] || !m.Has(fd) {
			continue
		}
		a := m.Get(fd).Message().Interface().(*anypb.Any)
		res, err := a.UnmarshalNew()
		if err != nil {
			return false, fmt.Errorf("config dump: unpack %s: %w", a.GetTypeUrl(), err)
		}
		if !trimToMask(res.ProtoReflect(), ps) {
			return false, nil
		}
		b, err := anypb.New(res)
		if err != nil {
			return false, fmt.Errorf("config dump: pack %s: %w", a.GetTypeUrl(), err)
		}
		m.Set(fd, protoreflect.ValueOfMessage(b.ProtoReflect()))
	}
	return trimToMask(m, outer), nil
}

// maskTree is a FieldMask as a tree: a field maps to its sub-tree, or to nil when the
// whole field is kept.
type maskTree map[protoreflect.Name]maskTree

// trimToMask keeps only the fields of m that the paths name, as protobuf's
// FieldMaskUtil::TrimMessage, after checking every path as GetFieldDescriptors does: each
// part names a field, and every part but the last a singular message. It reports false,
// leaving m as it was, if a path does not fit.
func trimToMask(m protoreflect.Message, paths []string) bool {
	root := maskTree{}
	for _, p := range paths {
		d := m.Descriptor()
		node := root
		parts := strings.Split(p, ".")
		for i, part := range parts {
			if d == nil {
				return false // the previous part was not a singular message
			}
			fd := d.Fields().ByName(protoreflect.Name(part))
			if fd == nil {
				return false
			}
			d = nil
			if fd.Message() != nil && !fd.IsList() && !fd.IsMap() {
				d = fd.Message()
			}
			if node == nil {
				continue // a shorter path keeps this field whole: only check the rest
			}
			child, seen := node[fd.Name()]
			switch {
			case i == len(parts)-1:
				node[fd.Name()] = nil
			case seen && child == nil:
				node = nil // kept whole already
			default:
				if child == nil {
					child = maskTree{}
					node[fd.Name()] = child
				}
				node = child
			}
		}
	}
	trimTree(m, root)
	return true
}

func trimTree(m protoreflect.Message, t maskTree) {
	var drop []protoreflect.FieldDescriptor
	var into []protoreflect.FieldDescriptor
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		sub, ok := t[fd.Name()]
		switch {
		case !ok:
			drop = append(drop, fd)
		case sub != nil:
			into = append(into, fd)
		}
		return true
	})
	for _, fd := range drop {
		m.Clear(fd)
	}
	for _, fd := range into {
		trimTree(m.Mutable(fd).Message(), t[fd.Name()])
	}
}

// redacted is what a sensitive string or bytes field shows, as in Envoy.
const redacted = "[redacted]"

// sensitiveExt is the udpa.annotations.sensitive field option, found by name so that
// this package does not import the annotations' package for one extension.
func sensitiveExt() protoreflect.ExtensionType {
	xt, err := protoregistry.GlobalTypes.FindExtensionByName("udpa.annotations.sensitive")
	if err != nil {
		return nil
	}
	return xt
}

// redact replaces, in place, every field marked udpa.annotations.sensitive and everything
// below one as Envoy's MessageUtil::redact does: strings and bytes become "[redacted]",
// other scalars are cleared, messages are redacted field by field, map values (not keys)
// likewise; an Any is unpacked, redacted and packed again. An Any of an unknown type is
// left alone (the loader knows every type a configuration can hold).
func redact(m protoreflect.Message, sensitive bool) {
	redactWith(m, sensitive, sensitiveExt())
}

func redactWith(m protoreflect.Message, sensitive bool, xt protoreflect.ExtensionType) {
	if m.Descriptor().FullName() == anyName {
		a, ok := m.Interface().(*anypb.Any)
		if !ok {
			return
		}
		inner, err := a.UnmarshalNew()
		if err != nil {
			return
		}
		redactWith(inner.ProtoReflect(), sensitive, xt)
		deterministic := proto.MarshalOptions{Deterministic: true}
		if b, err := deterministic.Marshal(inner); err == nil {
			a.Value = b
		}
		return
	}
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		s := sensitive
		if !s && xt != nil {
			if opts := fd.Options(); opts != nil {
				v, _ := proto.GetExtension(opts, xt).(bool)
				s = v
			}
		}
		isMsg := fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			vd := fd.MapValue()
			vMsg := vd.Kind() == protoreflect.MessageKind || vd.Kind() == protoreflect.GroupKind
			if !vMsg && !s {
				continue
			}
			var keys []protoreflect.MapKey
			mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k)
				return true
			})
			for _, k := range keys {
				if vMsg {
					redactWith(mp.Mutable(k).Message(), s, xt)
				} else {
					mp.Set(k, redactedScalar(vd))
				}
			}
		case fd.IsList():
			l := m.Mutable(fd).List()
			switch {
			case isMsg:
				for j := 0; j < l.Len(); j++ {
					redactWith(l.Get(j).Message(), s, xt)
				}
			case !s:
			case fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind:
				for j := 0; j < l.Len(); j++ {
					l.Set(j, redactedScalar(fd))
				}
			default:
				m.Clear(fd)
			}
		case isMsg:
			redactWith(m.Mutable(fd).Message(), s, xt)
		case !s:
		case fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind:
			m.Set(fd, redactedScalar(fd))
		default:
			m.Clear(fd)
		}
	}
}

// redactedScalar is "[redacted]" as a value of fd's kind (string or bytes), or fd's zero
// value for any other kind (Envoy clears those).
func redactedScalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(redacted)
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(redacted))
	}
	return fd.Default()
}

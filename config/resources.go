package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/chain"
	"github.com/portico-proxy/portico/filters/http/router"
)

// Resource files, the contents of Envoy's file-based LDS and CDS. A file holds a
// DiscoveryResponse:
//
//	version_info: "7"
//	resources:
//	- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
//	  name: web
//	  ...
//
// and, as Envoy's filesystem subscription accepts, a resource may also come wrapped in an
// envoy.service.discovery.v3.Resource ({"@type": ...Resource, name, version, resource:
// {"@type": ...Listener, ...}}). The file goes through the bootstrap's stages (YAML, the
// JSON pass, protojson, the subset check, ValidateAll, translation), each resource on its
// own: as in Envoy, a bad resource is rejected and keeps its last good version while the
// good ones apply. Problems in the envelope itself (not a mapping, resources not a list,
// an unknown top-level field) reject the whole file, as Envoy's update_failure.

const (
	listenerType = "envoy.config.listener.v3.Listener"
	clusterType  = "envoy.config.cluster.v3.Cluster"
	resourceType = "envoy.service.discovery.v3.Resource"
)

// Change is how a resource differs from its previous version.
type Change int

const (
	// Added: there was no previous version.
	Added Change = iota
	// Unchanged: the resource equals the previous version (proto.Equal); the previous
	// translation is returned and nothing needs doing.
	Unchanged
	// ChainsOnly: only filter_chains or default_filter_chain differ (Envoy's
	// supportUpdateFilterChain): the listener is updated in place; Kept lists the chains
	// carried over, whose connections stay.
	ChainsOnly
	// Full: anything else; the new version replaces the old one (for a listener, the
	// old one drains).
	Full
)

func (c Change) String() string {
	switch c {
	case Added:
		return "added"
	case Unchanged:
		return "unchanged"
	case ChainsOnly:
		return "chains-only"
	case Full:
		return "full"
	}
	return fmt.Sprintf("Change(%d)", int(c))
}

// ResourceError is one rejected resource of a file (Envoy: update_rejected). Its last good
// version, if any, stays.
type ResourceError struct {
	Name  string // empty when the resource has none that could be read
	Index int    // in the file's resources
	// Err is the problems found, usually Errors whose paths are relative to the resource
	// (`filter_chains[0].filters[0]`).
	Err error
	// Failed is the resource as read, for /config_dump's error_state; nil when it could
	// not be decoded.
	Failed proto.Message

	kind    string // "listener", "cluster"
	wrapped bool   // the file had it in a discovery Resource
}

// Where names the resource as the messages do: `resources[1] (listener "web")`, or
// `listener "web"` for one that is not in a resource file (a static one).
func (e *ResourceError) Where() string {
	if e.Index < 0 {
		return fmt.Sprintf("%s %q", e.kind, e.Name)
	}
	w := index("resources", e.Index)
	if e.wrapped {
		w += ".resource"
	}
	if e.Name != "" {
		w += fmt.Sprintf(" (%s %q)", e.kind, e.Name)
	}
	return w
}

// position is where a resource was in its file, for the errors that name it later.
type position struct {
	index   int // -1: not from a resource file
	wrapped bool
}

var notInFile = position{index: -1}

func (p position) rejected(kind, name string, err error, failed proto.Message) *ResourceError {
	return &ResourceError{Name: name, Index: p.index, Err: err, Failed: failed, kind: kind, wrapped: p.wrapped}
}

// where names the resource as the messages do (ResourceError.Where).
func (p position) where(kind, name string) string { return p.rejected(kind, name, nil, nil).Where() }

// Error gives each problem on a line of its own, prefixed by Where.
func (e *ResourceError) Error() string {
	lines := strings.Split(e.Err.Error(), "\n")
	for i, l := range lines {
		lines[i] = e.Where() + ": " + l
	}
	return strings.Join(lines, "\n")
}

func (e *ResourceError) Unwrap() error { return e.Err }

// FileError is a resource file that could not be read as a whole (Envoy: update_failure):
// nothing in it applies.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string {
	lines := strings.Split(e.Err.Error(), "\n")
	for i, l := range lines {
		lines[i] = e.Path + ": " + l
	}
	return strings.Join(lines, "\n")
}

func (e *FileError) Unwrap() error { return e.Err }

// parts is what translating one resource or filter chain made, besides the engine value:
// the caller registers the stats sources, starts the runners and closes the closers.
type parts struct {
	stats   []engine.StatsSource
	closers []io.Closer
	runners []Runner
}

// mark is a position in the translator's lists, to find what one translation added.
type mark struct{ stats, closers, runners int }

func (t *translator) mark() mark {
	return mark{len(t.cfg.StatsSources), len(t.cfg.Closers), len(t.cfg.Runners)}
}

// since copies what was added to the lists after m.
func (t *translator) since(m mark) parts {
	return parts{
		stats:   slices.Clone(t.cfg.StatsSources[m.stats:]),
		closers: slices.Clone(t.cfg.Closers[m.closers:]),
		runners: slices.Clone(t.cfg.Runners[m.runners:]),
	}
}

// ListenerResource is one listener, static or from LDS, translated.
type ListenerResource struct {
	Name    string
	Version string // the file's version_info; empty for a static listener
	// Config is ready for engine.Server.AddListener or UpdateListener.
	Config engine.ListenerConfig
	// Change is how it differs from the previous version given to ParseListeners.
	Change Change
	// Kept, with ChainsOnly, are the chains carried over from the previous version: the
	// same *engine.FilterChain values (factories, stats, open log files), in the new
	// Config's filter-chain manager, so their connections stay. The previous version's
	// chains not in Kept are to be drained.
	Kept []*engine.FilterChain
	// StatsSources, Closers and Runners are this version's, the kept chains' included.
	// When it replaces a version, Released says what of the old one to let go.
	StatsSources []engine.StatsSource
	Closers      []io.Closer
	Runners      []Runner

	msg    *listenerv3.Listener
	pos    position
	wire   []byte                // as it came from a management server (see sameWire)
	rds    []string              // rds.go: the route_config_names its HCMs request
	chains []*engine.FilterChain // index-aligned with msg.FilterChains (LDS ones only)
	def    *engine.FilterChain
	parts  map[*engine.FilterChain]parts
}

// Message is the resource as read, for /config_dump. Do not modify it.
func (r *ListenerResource) Message() proto.Message { return r.msg }

// Rejected is the error for this version when applying it failed with err: it names the
// resource where its file had it, as the reading errors do.
func (r *ListenerResource) Rejected(err error) *ResourceError {
	return r.pos.rejected("listener", r.Name, err, r.msg)
}

// Released is what r holds that next (the version replacing it; nil when r is removed)
// does not: close the closers and drop the stats sources once r's connections are gone.
func (r *ListenerResource) Released(next *ListenerResource) ([]io.Closer, []engine.StatsSource) {
	if next == nil {
		return r.Closers, r.StatsSources
	}
	return released(r.Closers, next.Closers), released(r.StatsSources, next.StatsSources)
}

// Drained, for a ChainsOnly r, is what engine.Server.UpdateListenerChains drains: prev's
// filter chains that r does not keep.
func (r *ListenerResource) Drained(prev *ListenerResource) []*engine.FilterChain {
	var out []*engine.FilterChain
	for _, ch := range append(slices.Clip(prev.chains), prev.def) {
		if ch != nil && !slices.Contains(r.Kept, ch) && !slices.Contains(out, ch) {
			out = append(out, ch)
		}
	}
	return out
}

func released[T comparable](old, next []T) []T {
	var out []T
	for _, v := range old {
		if !slices.Contains(next, v) {
			out = append(out, v)
		}
	}
	return out
}

// ListenerUpdate is an LDS file read and translated.
type ListenerUpdate struct {
	Version   string
	Listeners []*ListenerResource // the good ones, Unchanged included, in the file's order
	Errors    []ResourceError     // the rejected ones: their previous versions stay
	Warnings  []string            // prefixed by the resource, as the errors
	// Removed are the names in prev that the file no longer has (a rejected resource
	// still counts as present: its last good version stays). Empty when a resource of the
	// file has no name that could be read: Envoy would not remove anything then either.
	Removed []string
}

// ClusterResource is one cluster, static or from CDS, translated.
type ClusterResource struct {
	Name    string
	Version string
	Cluster *engine.Cluster
	Change  Change // Added, Unchanged or Full
	// StatsSources, Runners (DNS resolution, health checks: start them, and cancel them
	// when the version is replaced) and Closers of this version.
	StatsSources []engine.StatsSource
	Runners      []Runner
	Closers      []io.Closer
	// EDS, for a cluster of type EDS, names its ClusterLoadAssignment (eds.go); nil for
	// any other type. Its Cluster starts with no hosts.
	EDS *EDSConfig

	msg  *clusterv3.Cluster
	pos  position
	wire []byte // as it came from a management server (see sameWire)
}

// Message is the resource as read, for /config_dump. Do not modify it.
func (r *ClusterResource) Message() proto.Message { return r.msg }

// Rejected is the error for this version when applying it failed with err: it names the
// resource where its file had it, as the reading errors do.
func (r *ClusterResource) Rejected(err error) *ResourceError {
	return r.pos.rejected("cluster", r.Name, err, r.msg)
}

// ClusterUpdate is a CDS file read and translated.
type ClusterUpdate struct {
	Version  string
	Clusters []*ClusterResource
	Errors   []ResourceError
	Warnings []string
	Removed  []string // as ListenerUpdate.Removed
}

// rawResource is one element of a file's resources, before decoding.
type rawResource struct {
	index    int
	v        any    // the element as read
	name     string // from its "name", when it is a string
	named    bool
	wrapped  bool
	version  string // a wrapping Resource's version
	wrapName string // a wrapping Resource's name
}

func (item rawResource) pos() position { return position{item.index, item.wrapped} }

// versionIn is the resource's version: its wrapping Resource's, else the file's.
func (item rawResource) versionIn(f *resourceFile) string {
	if item.version != "" {
		return item.version
	}
	return f.version
}

// resourceFile is a resource file's envelope.
type resourceFile struct {
	version string
	items   []rawResource
	marks   utf8Marks
}

// readResourceFile reads a resource file's envelope.
func readResourceFile(path string) (*resourceFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	fail := func(msg string, args ...any) (*resourceFile, error) {
		return nil, &FileError{Path: path, Err: Errors{{Msg: fmt.Sprintf(msg, args...)}}}
	}
	switch fileFormat(path) {
	case formatProto, formatProtoTxt:
		if data, err = protoFileJSON(data, fileFormat(path)); err != nil {
			return fail("%v", err)
		}
	case formatJSON:
		if !json.Valid(data) {
			// Envoy reads any other extension as JSON; YAML here is a mistake.
			return fail("not valid JSON (the file's extension makes it JSON, as in Envoy; name it .yaml for YAML)")
		}
	}
	return resourceDoc(data, path)
}

// resourceDoc reads a DiscoveryResponse document (YAML or JSON) from source (a file's
// path, or what names another origin in messages).
func resourceDoc(data []byte, path string) (*resourceFile, error) {
	fail := func(msg string, args ...any) (*resourceFile, error) {
		return nil, &FileError{Path: path, Err: Errors{{Msg: fmt.Sprintf(msg, args...)}}}
	}
	root, marks, err := decodeYAML(data)
	if err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	obj, ok := root.(object)
	if !ok {
		if root == nil {
			return fail("the file is empty (want a DiscoveryResponse: version_info, resources)")
		}
		return fail("the file must be a mapping (a DiscoveryResponse: version_info, resources), got %s", describe(root))
	}
	f := &resourceFile{marks: marks}
	var es Errors
	for _, m := range obj {
		name, _ := m.Key.(string)
		switch name {
		case "version_info", "versionInfo":
			s, ok := m.Value.(string)
			if !ok && m.Value != nil {
				es = append(es, &FieldError{Path: name, Msg: fmt.Sprintf("expected a string, got %s", describe(m.Value))})
			}
			f.version = s
		case "resources":
			list, ok := m.Value.([]any)
			if !ok && m.Value != nil {
				es = append(es, &FieldError{Path: name, Msg: fmt.Sprintf("expected a list of resources, got %s", describe(m.Value))})
			}
			for i, v := range list {
				f.items = append(f.items, rawItem(i, v))
			}
		case "type_url", "typeUrl":
			// Envoy does not check it either; the resources carry their own types.
		case "nonce", "canary", "control_plane", "controlPlane":
			// Fields of a server's response; nothing to do with them from a file.
		default:
			es = append(es, &FieldError{Path: name, Msg: "unknown field (a DiscoveryResponse has version_info and resources)"})
		}
	}
	if len(es) > 0 {
		return nil, &FileError{Path: path, Err: es}
	}
	return f, nil
}

// rawItem reads what the envelope needs of one resource: its name, and whether a
// discovery Resource wraps it.
func rawItem(i int, v any) rawResource {
	r := rawResource{index: i, v: v}
	obj, _ := v.(object)
	if t, _ := get(obj, "@type"); t == typeURLPrefix+resourceType {
		r.wrapped = true
		if ver, ok := get(obj, "version"); ok {
			r.version, _ = ver.(string)
		}
		if n, ok := get(obj, "name"); ok {
			r.wrapName, _ = n.(string)
		}
		inner, _ := get(obj, "resource")
		obj, _ = inner.(object)
	}
	if n, ok := get(obj, "name"); ok {
		r.name, r.named = n.(string)
	}
	return r
}

// nameChecks reports the name rules of a resource that decoded (kind "listener" or
// "cluster"): required, the same as its Resource wrapper's, not static, not already in the
// file.
func nameChecks(c *collector, item rawResource, kind, name string, static map[string]bool, seen map[string]int) {
	switch {
	case name == "":
		c.addCanonical("name", "required for a %s from a file (it names the resource across versions)", kind)
	case static[name]:
		c.addCanonical("name", "%s %q is already defined in the bootstrap's static_resources (a file cannot change a static %s)", kind, name, kind)
	case item.wrapName != "" && item.wrapName != name:
		c.addCanonical("name", "%q differs from the name of the Resource that wraps it, %q", name, item.wrapName)
	}
	if at, dup := seen[name]; dup && name != "" {
		c.addCanonical("name", "duplicate %s %q (also resources[%d])", kind, name, at)
	}
}

// decodeResource runs the decoding stages on one resource: the JSON pass, protojson, the
// subset check and validation, with paths relative to the resource. It returns the
// collector holding the problems and the message (nil when it could not be decoded).
func decodeResource(r rawResource, m proto.Message, marks utf8Marks) (*collector, proto.Message) {
	c := &collector{}
	k := &checker{c: c, marks: marks}
	top := rootLoc("", "")
	want := string(m.ProtoReflect().Descriptor().FullName())
	obj, ok := r.v.(object)
	if !ok {
		c.add("", "", "expected a resource (an object with an \"@type\"), got %s", describe(r.v))
		return c, nil
	}
	if r.wrapped {
		for i := range obj {
			switch name, _ := obj[i].Key.(string); name {
			case "@type", "name", "version", "resource":
			case "aliases", "ttl", "cache_control", "metadata", "resource_name":
				k.unsupported(top.field(name, name), "", "not supported by Portico in a resource file")
			default:
				if name != "" {
					k.errorf(top.field(name, name), "unknown field")
				}
			}
		}
		inner, _ := get(obj, "resource")
		if obj, ok = inner.(object); !ok {
			c.add("resource", "resource", "expected the wrapped resource (an object with an \"@type\"), got %s", describe(inner))
			return c, nil
		}
	}
	url, _ := get(obj, "@type")
	if url != typeURLPrefix+want {
		c.add("@type", "@type", "%s, want %q", typeProblem(url), typeURLPrefix+want)
		return c, nil
	}
	k.fields(obj, m.ProtoReflect().Descriptor(), top, "@type")
	for i := range obj {
		if name, _ := obj[i].Key.(string); name == "@type" {
			obj[i].Key = removed{}
		}
	}
	clean, err := appendJSON(nil, obj)
	if err == nil {
		err = protojson.Unmarshal(clean, m)
	}
	if err != nil {
		c.add("", "", "cannot decode the resource: %v", err)
		return c, nil
	}
	c.subset(m.ProtoReflect(), top)
	c.validate(m, &top)
	return c, m
}

func typeProblem(url any) string {
	switch u := url.(type) {
	case nil:
		return "required"
	case string:
		if strings.Contains(u, ".api.v2.") {
			return fmt.Sprintf("resource type %q is Envoy's v2 API, which Portico does not read (nor does Envoy today): use the v3 type", u)
		}
		return fmt.Sprintf("resource type %q does not belong in this file", u)
	}
	return fmt.Sprintf("expected a type URL, got %s", describe(url))
}

// resourceState is the per-resource part of a translator translating an LDS listener.
type resourceState struct {
	// reuse finds, for a chain equal to one of the previous version, that chain's
	// translation; nil when nothing may be reused.
	reuse func(fc *listenerv3.FilterChain) *engine.FilterChain
	built map[*listenerv3.FilterChain]*engine.FilterChain
	parts map[*engine.FilterChain]parts
	kept  []*engine.FilterChain
}

// chainFor translates a filter chain, or with an LDS in-place update takes the previous
// version's translation of an equal chain, so that nothing is opened anew for it and its
// connections can stay.
func (t *translator) chainFor(fc *listenerv3.FilterChain, at, listenerStat string) (*engine.FilterChain, bool) {
	d := t.dyn
	if d == nil {
		return t.filterChain(fc, at, listenerStat)
	}
	if d.reuse != nil {
		if ch := d.reuse(fc); ch != nil {
			d.built[fc] = ch
			d.kept = append(d.kept, ch)
			return ch, true
		}
	}
	m := t.mark()
	ch, ok := t.filterChain(fc, at, listenerStat)
	if ok {
		d.built[fc] = ch
		d.parts[ch] = t.since(m)
	}
	return ch, ok
}

// staticListener records a static listener as a resource.
func (t *translator) staticListener(l *listenerv3.Listener, lc engine.ListenerConfig, m mark) {
	p := t.since(m)
	t.cfg.StaticListeners = append(t.cfg.StaticListeners, &ListenerResource{
		Name: lc.Name, Config: lc, StatsSources: p.stats, Closers: p.closers, Runners: p.runners, msg: l, rds: rdsNames(l), pos: notInFile,
	})
}

// staticCluster records a static cluster as a resource.
func (t *translator) staticCluster(cl *clusterv3.Cluster, c *engine.Cluster, m mark) {
	p := t.since(m)
	t.cfg.StaticClusters = append(t.cfg.StaticClusters, &ClusterResource{
		Name: cl.GetName(), Cluster: c, StatsSources: p.stats, Closers: p.closers, Runners: p.runners, msg: cl, pos: notInFile,
		EDS: t.eds[c], // eds.go: its eds_config is read after the static clusters
	})
}

// chainsOnly reports whether b differs from a only in its filter chains, so that it can
// be applied in place (Envoy's supportUpdateFilterChain): the listeners are equal without
// filter_chains and default_filter_chain, and b has filter_chains (Envoy does a full
// update of a listener left with only a default chain).
func chainsOnly(a, b *listenerv3.Listener) bool {
	if len(b.GetFilterChains()) == 0 {
		return false
	}
	ca, cb := proto.Clone(a).(*listenerv3.Listener), proto.Clone(b).(*listenerv3.Listener)
	for _, l := range []*listenerv3.Listener{ca, cb} {
		l.FilterChains, l.DefaultFilterChain = nil, nil
	}
	return proto.Equal(ca, cb)
}

// knownClusters is what a listener of a file may name: the static clusters, o.known and
// those of the ones it names that o.Clusters has now (a registry cannot be listed).
func knownClusters(o Options, l *listenerv3.Listener) map[string]*engine.Cluster {
	m := map[string]*engine.Cluster{}
	if o.Static != nil {
		for _, r := range o.Static.StaticClusters {
			m[r.Name] = r.Cluster
		}
	}
	for n, c := range o.known {
		m[n] = c
	}
	if o.Clusters != nil {
		for _, n := range clusterRefs(l) {
			if _, ok := m[n]; !ok {
				if c := o.Clusters.Get(n); c != nil {
					m[n] = c
				}
			}
		}
	}
	return m
}

// resourceErrors turns a resource's collector into its errors, nil when it has none.
func resourceErrors(c *collector, m proto.Message) error {
	if m == nil {
		return c.result(nil)
	}
	return c.result(m)
}

// ParseListeners reads an LDS file and translates each listener in it, for the given
// number of workers; prev is the current version of each LDS listener (by name, nil at
// start), against which each is classified (see Change), and whose unchanged filter chains
// a ChainsOnly update reuses. The listeners may refer to the static clusters and
// o.Clusters; o.Static, when set, is the bootstrap, whose listener names and addresses
// the file's may not take.
//
// err != nil only when the file as a whole cannot be read or parsed (Envoy:
// update_failure; it is a *FileError). Problems of single resources are in Errors
// (Envoy: update_rejected), the others apply.
func ParseListeners(path string, workers int, o Options, prev map[string]*ListenerResource) (*ListenerUpdate, error) {
	f, err := document(workers, func() (*resourceFile, error) { return readResourceFile(path) })
	if err != nil {
		return nil, err
	}
	return listenersOf(f, workers, o, prev, nil, nil), nil
}

// document checks the worker count, then reads a resource document with read.
func document(workers int, read func() (*resourceFile, error)) (*resourceFile, error) {
	if workers < 1 {
		return nil, fmt.Errorf("config: worker count %d, need at least 1", workers)
	}
	return read()
}

// removedNames is the state-of-the-world rule: the names of prev that the document no longer
// has (seen), sorted; none when one of its resources had no name that could be read
// (allNamed false), as Envoy would remove nothing then either.
func removedNames[R any](prev map[string]R, seen map[string]int, allNamed bool) []string {
	if !allNamed {
		return nil
	}
	var out []string
	for name := range prev {
		if _, ok := seen[name]; !ok {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// ParseListenerResources is ParseListeners for listeners that arrived another way (an
// xDS DiscoveryResponse's version_info and resources): each goes through the same checks
// and translation as a file's, with errors located as resources[i]. from names the origin
// in the error of a response that cannot be read at all (a *FileError).
func ParseListenerResources(from, version string, resources []*anypb.Any, workers int, o Options, prev map[string]*ListenerResource) (*ListenerUpdate, error) {
	skip := sameWire(resources, typeURLPrefix+listenerType, prev, func(r *ListenerResource) (string, []byte) { return r.Name, r.wire })
	f, err := document(workers, func() (*resourceFile, error) { return anyResources(from, version, resources, skip) })
	if err != nil {
		return nil, err
	}
	return listenersOf(f, workers, o, prev, skip, wireOf(resources, typeURLPrefix+listenerType)), nil
}

// sameWire finds the resources of a response that are byte for byte what the previous
// version of a resource came as (a server sends every resource of a type in each
// state-of-the-world response, and a delta client hands over its whole set): those are
// Unchanged without being decoded, checked and translated again, so a version that
// changes one listener of 1,000 costs one listener's work. It returns them by index; a
// previous version matched twice is taken once (the second is read, as a duplicate).
func sameWire[R any](resources []*anypb.Any, typeURL string, prev map[string]R, key func(R) (string, []byte)) map[int]string {
	if len(prev) == 0 {
		return nil
	}
	byWire := make(map[string]string, len(prev))
	for _, r := range prev {
		if name, w := key(r); w != nil {
			byWire[string(w)] = name
		}
	}
	var skip map[int]string
	taken := map[string]bool{}
	for i, a := range resources {
		if a.GetTypeUrl() != typeURL {
			continue
		}
		if name, ok := byWire[string(a.GetValue())]; ok && !taken[name] {
			if skip == nil {
				skip = map[int]string{}
			}
			skip[i], taken[name] = name, true
		}
	}
	return skip
}

// wireOf returns, for a document read from resources, the bytes resource i came as when
// it is a bare Any of typeURL (nil otherwise: a file, or a wrapped Resource).
func wireOf(resources []*anypb.Any, typeURL string) func(int) []byte {
	return func(i int) []byte {
		if i < len(resources) && resources[i].GetTypeUrl() == typeURL {
			return resources[i].GetValue()
		}
		return nil
	}
}

// listenersOf translates the listeners of a resource document.
// skip names the items that are a previous version byte for byte (sameWire); wire gives
// the bytes each item came as (nil for a file).
func listenersOf(f *resourceFile, workers int, o Options, prev map[string]*ListenerResource, skip map[int]string, wire func(int) []byte) *ListenerUpdate {
	u := &ListenerUpdate{Version: f.version}
	static := map[string]bool{}
	addrs := map[netip.AddrPort]string{} // concrete addresses taken, by whom
	if o.Static != nil {
		for _, r := range o.Static.StaticListeners {
			static[r.Name] = true
			if r.Config.Address.Port() != 0 {
				addrs[r.Config.Address] = fmt.Sprintf("static listener %q", r.Name)
			}
		}
	}
	if o.Clusters == nil {
		o.Clusters = engine.NewClusterRegistry()
	}
	seen := map[string]int{}
	allNamed := true
	for _, item := range f.items {
		if name, ok := skip[item.index]; ok && prev[name] != nil {
			if _, dup := seen[name]; !dup {
				same := *prev[name]
				same.Version, same.Change, same.Kept = f.version, Unchanged, nil
				seen[name] = item.index
				if same.Config.Address.Port() != 0 {
					addrs[same.Config.Address] = fmt.Sprintf("%s (listener %q)", index("resources", item.index), name)
				}
				u.Listeners = append(u.Listeners, &same)
				continue
			}
		}
		r, rerr, warns := parseListener(item, f, workers, o, prev, static, seen, addrs)
		u.Warnings = append(u.Warnings, warns...)
		if !item.named || item.name == "" {
			allNamed = false
		}
		see(seen, item)
		if rerr != nil {
			u.Errors = append(u.Errors, *rerr)
			continue
		}
		if r.Config.Address.Port() != 0 {
			addrs[r.Config.Address] = fmt.Sprintf("%s (listener %q)", index("resources", item.index), r.Name)
		}
		if wire != nil {
			r.wire = wire(item.index)
		}
		u.Listeners = append(u.Listeners, r)
	}
	u.Warnings = append(u.Warnings, marksLeft(f.marks)...)
	u.Removed = removedNames(prev, seen, allNamed)
	return u
}

// see records a named item's index under its name the first time the name is met (a
// later item of that name is a duplicate, rejected by resourceHead).
func see(seen map[string]int, item rawResource) {
	if item.named && item.name != "" {
		if _, dup := seen[item.name]; !dup {
			seen[item.name] = item.index
		}
	}
}

// marksLeft reports invalid UTF-8 the JSON pass did not meet (it can only be in a part of
// the envelope that is not read).
func marksLeft(m utf8Marks) []string {
	var out []string
	for _, run := range m.unreported() {
		out = append(out, lineRef(run.line)+": "+run.msg())
	}
	return out
}

// namedResource is a listener or a cluster message.
type namedResource interface {
	proto.Message
	GetName() string
}

// resourceHead decodes one resource of a file into msg and runs the checks every kind
// shares (its name, then what the decode found). It returns the collector the
// translation goes on with and the resource's version, or the error that rejects it.
func resourceHead(item rawResource, f *resourceFile, kind string, msg namedResource, static map[string]bool, seen map[string]int) (*collector, string, *ResourceError) {
	c, m := decodeResource(item, msg, f.marks)
	if m != nil {
		nameChecks(c, item, kind, msg.GetName(), static, seen)
	}
	if err := resourceErrors(c, m); err != nil {
		re := item.pos().rejected(kind, item.name, err, nil)
		if m != nil {
			re.Failed = m
		}
		return c, "", re
	}
	return c, item.versionIn(f), nil
}

// rejected is the error of a resource that decoded (msg) and failed later.
func rejected(item rawResource, kind string, msg proto.Message, err error) *ResourceError {
	return item.pos().rejected(kind, item.name, err, msg)
}

// parseListener decodes, checks and translates one LDS resource.
func parseListener(item rawResource, f *resourceFile, workers int, o Options, prev map[string]*ListenerResource,
	static map[string]bool, seen map[string]int, addrs map[netip.AddrPort]string) (*ListenerResource, *ResourceError, []string) {
	l := &listenerv3.Listener{}
	c, version, re := resourceHead(item, f, "listener", l, static, seen)
	if re != nil {
		return nil, re, nil
	}
	var warns []string
	fail := func(err error) (*ListenerResource, *ResourceError, []string) {
		return nil, rejected(item, "listener", l, err), warns
	}
	name := l.GetName()
	p := prev[name]
	if p != nil && proto.Equal(p.msg, l) {
		same := *p
		same.Version, same.Change, same.Kept = version, Unchanged, nil
		return &same, nil, nil
	}
	change := Added
	if p != nil {
		change = Full
		if chainsOnly(p.msg, l) {
			change = ChainsOnly
		}
	}
	// The clusters' HTTP stats are the clusters' own (their ClusterResource), so
	// t.cfg.Clusters stays empty: the routers' upstreams add none to the listener's.
	t := &translator{c: c, workers: workers, checkOnly: o.CheckOnly, registry: o.Clusters,
		clusters: knownClusters(o, l), cfg: &Config{Chains: map[string]*chain.Manager{}}}
	t.routes, t.cfg.ADS, t.adsConfigured = listenerRDS(o) // rds.go
	t.dyn = &resourceState{built: map[*listenerv3.FilterChain]*engine.FilterChain{}, parts: map[*engine.FilterChain]parts{}}
	if change == ChainsOnly {
		t.dyn.reuse = reuser(p)
	}
	lc, ok := t.listener(l, "")
	where := item.pos().where("listener", name)
	for _, w := range t.cfg.Warnings {
		warns = append(warns, where+": "+w)
	}
	if ok && lc.Address.Port() != 0 {
		if by, taken := addrs[lc.Address]; taken {
			t.errorf("address", "address %s is already used by %s", lc.Address, by)
		}
	}
	if err := resourceErrors(c, l); err != nil || !ok {
		t.cfg.Close() // what this version opened; the kept chains' files are prev's
		if err == nil {
			err = Errors{{Msg: "the listener could not be built"}}
		}
		return fail(err)
	}
	r := &ListenerResource{
		Name: name, Version: version, Config: lc, Change: change, Kept: t.dyn.kept,
		StatsSources: t.cfg.StatsSources, Closers: t.cfg.Closers, Runners: t.cfg.Runners,
		msg: l, parts: t.dyn.parts, rds: rdsNames(l), pos: item.pos(),
	}
	for _, fc := range l.GetFilterChains() {
		r.chains = append(r.chains, t.dyn.built[fc])
	}
	if dfc := l.GetDefaultFilterChain(); dfc != nil {
		r.def = t.dyn.built[dfc]
	}
	for _, ch := range t.dyn.kept {
		pp := p.parts[ch]
		r.parts[ch] = pp
		r.StatsSources = append(r.StatsSources, pp.stats...)
		r.Closers = append(r.Closers, pp.closers...)
		r.Runners = append(r.Runners, pp.runners...)
	}
	return r, nil, warns
}

// reuser matches a new filter chain against the previous version's chains, each taken
// at most once.
func reuser(p *ListenerResource) func(fc *listenerv3.FilterChain) *engine.FilterChain {
	type cand struct {
		msg *listenerv3.FilterChain
		ch  *engine.FilterChain
	}
	var cands []cand
	for i, fc := range p.msg.GetFilterChains() {
		if i < len(p.chains) && p.chains[i] != nil {
			cands = append(cands, cand{fc, p.chains[i]})
		}
	}
	if dfc := p.msg.GetDefaultFilterChain(); dfc != nil && p.def != nil {
		cands = append(cands, cand{dfc, p.def})
	}
	used := make([]bool, len(cands))
	return func(fc *listenerv3.FilterChain) *engine.FilterChain {
		for i, c := range cands {
			if !used[i] && proto.Equal(c.msg, fc) {
				used[i] = true
				return c.ch
			}
		}
		return nil
	}
}

// ParseClusters reads a CDS file and translates each cluster in it, as ParseListeners
// does listeners; prev is the current version of each CDS cluster, by name. o.Static, when
// set, is the bootstrap, whose cluster names the file's may not take.
func ParseClusters(path string, workers int, o Options, prev map[string]*ClusterResource) (*ClusterUpdate, error) {
	f, err := document(workers, func() (*resourceFile, error) { return readResourceFile(path) })
	if err != nil {
		return nil, err
	}
	return clustersOf(f, workers, o, prev, nil, nil), nil
}

// ParseClusterResources is ParseClusters for clusters that arrived another way (xDS; see
// ParseListenerResources).
func ParseClusterResources(from, version string, resources []*anypb.Any, workers int, o Options, prev map[string]*ClusterResource) (*ClusterUpdate, error) {
	skip := sameWire(resources, typeURLPrefix+clusterType, prev, func(r *ClusterResource) (string, []byte) { return r.Name, r.wire })
	f, err := document(workers, func() (*resourceFile, error) { return anyResources(from, version, resources, skip) })
	if err != nil {
		return nil, err
	}
	return clustersOf(f, workers, o, prev, skip, wireOf(resources, typeURLPrefix+clusterType)), nil
}

// clustersOf translates the clusters of a resource document.
func clustersOf(f *resourceFile, workers int, o Options, prev map[string]*ClusterResource, skip map[int]string, wire func(int) []byte) *ClusterUpdate {
	u := &ClusterUpdate{Version: f.version}
	static := map[string]bool{}
	if o.Static != nil {
		for _, r := range o.Static.StaticClusters {
			static[r.Name] = true
		}
	}
	seen := map[string]int{}
	allNamed := true
	for _, item := range f.items {
		if name, ok := skip[item.index]; ok && prev[name] != nil {
			if _, dup := seen[name]; !dup {
				same := *prev[name]
				same.Version, same.Change = f.version, Unchanged
				seen[name] = item.index
				u.Clusters = append(u.Clusters, &same)
				continue
			}
		}
		r, rerr, warns := parseCluster(item, f, workers, o, prev, static, seen)
		u.Warnings = append(u.Warnings, warns...)
		if !item.named || item.name == "" {
			allNamed = false
		}
		see(seen, item)
		if rerr != nil {
			u.Errors = append(u.Errors, *rerr)
			continue
		}
		if wire != nil {
			r.wire = wire(item.index)
		}
		u.Clusters = append(u.Clusters, r)
	}
	u.Warnings = append(u.Warnings, marksLeft(f.marks)...)
	u.Removed = removedNames(prev, seen, allNamed)
	return u
}

func parseCluster(item rawResource, f *resourceFile, workers int, o Options, prev map[string]*ClusterResource,
	static map[string]bool, seen map[string]int) (*ClusterResource, *ResourceError, []string) {
	cl := &clusterv3.Cluster{}
	c, version, re := resourceHead(item, f, "cluster", cl, static, seen)
	if re != nil {
		return nil, re, nil
	}
	var warns []string
	fail := func(err error) (*ClusterResource, *ResourceError, []string) {
		return nil, rejected(item, "cluster", cl, err), warns
	}
	name := cl.GetName()
	p := prev[name]
	if p != nil && proto.Equal(p.msg, cl) {
		same := *p
		same.Version, same.Change = version, Unchanged
		return &same, nil, nil
	}
	change := Added
	if p != nil {
		change = Full
	}
	reg := o.Clusters
	if reg == nil {
		reg = engine.NewClusterRegistry()
	}
	t := &translator{c: c, workers: workers, checkOnly: o.CheckOnly, registry: reg, clusters: map[string]*engine.Cluster{}, cfg: &Config{}}
	if o.Static != nil { // an EDS cluster's eds_config names the bootstrap's servers (eds.go)
		t.cfg.ADS, t.adsConfigured = o.Static.ADS, o.Static.ADS != nil
		t.grpcClusters, t.grpcH2 = o.Static.grpcClusters, o.Static.grpcH2
		for _, r := range o.Static.StaticClusters {
			t.clusters[r.Name] = r.Cluster
		}
	} else {
		t.edsStandalone = o.CheckOnly
	}
	ec := t.cluster(cl, "")
	t.resolveEDS()
	where := item.pos().where("cluster", name)
	for _, w := range t.cfg.Warnings {
		warns = append(warns, where+": "+w)
	}
	if err := resourceErrors(c, cl); err != nil || ec == nil {
		t.cfg.Close()
		if err == nil {
			err = Errors{{Msg: "the cluster could not be built"}}
		}
		return fail(err)
	}
	// Its HTTP side (pools, HTTP stats), attached by the translation, is this
	// resource's too.
	stats := append(t.cfg.StatsSources, router.Attach(ec))
	return &ClusterResource{
		Name: name, Version: version, Cluster: ec, Change: change,
		StatsSources: stats, Runners: t.cfg.Runners, Closers: t.cfg.Closers, msg: cl,
		EDS: t.eds[ec], pos: item.pos(),
	}, nil, warns
}

// IsResourceFile reports whether the file at path looks like a DiscoveryResponse (a
// mapping with resources or version_info, which a bootstrap does not have) rather than a
// bootstrap; false when it cannot be read as a mapping at all.
func IsResourceFile(path string) bool {
	if f := fileFormat(path); f == formatProto || f == formatProtoTxt {
		return true
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	root, _, err := decodeYAML(data)
	obj, ok := root.(object)
	if err != nil || !ok {
		return false
	}
	_, res := get(obj, "resources")
	_, ver := get(obj, "version_info")
	_, verCamel := get(obj, "versionInfo")
	return res || ver || verCamel
}

// ResourceCheck is what CheckResourceFile found in a resource file.
type ResourceCheck struct {
	Kind     string // "listener" or "cluster": the type of the first resource
	Version  string
	Names    []string // the good resources
	Errors   []ResourceError
	Warnings []string
}

// CheckResourceFile validates an LDS or CDS file on its own, without a bootstrap
// (`portico validate -c lds.yaml`), creating nothing (as Options.CheckOnly). The kind of
// file is that of its first resource. A listener's references to clusters it cannot know
// (they come from the bootstrap or CDS) are warnings, not errors.
func CheckResourceFile(path string) (*ResourceCheck, error) {
	f, err := readResourceFile(path)
	if err != nil {
		return nil, err
	}
	kind := "listener"
	if len(f.items) > 0 {
		obj, _ := f.items[0].v.(object)
		if f.items[0].wrapped {
			inner, _ := get(obj, "resource")
			obj, _ = inner.(object)
		}
		if url, _ := get(obj, "@type"); url == typeURLPrefix+clusterType {
			kind = "cluster"
		}
	}
	rc := &ResourceCheck{Kind: kind}
	o := Options{CheckOnly: true}
	if kind == "cluster" {
		u, err := ParseClusters(path, 1, o, nil)
		if err != nil {
			return nil, err
		}
		rc.Version, rc.Errors, rc.Warnings = u.Version, u.Errors, u.Warnings
		for _, r := range u.Clusters {
			rc.Names = append(rc.Names, r.Name)
		}
		return rc, nil
	}
	placeholders, warns, err := placeholderClusters(f)
	if err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	o.Clusters = engine.NewClusterRegistry()
	for _, c := range placeholders {
		o.Clusters.Put(c)
	}
	u, err := ParseListeners(path, 1, o, nil)
	if err != nil {
		return nil, err
	}
	rc.Version, rc.Errors, rc.Warnings = u.Version, u.Errors, append(warns, u.Warnings...)
	for _, r := range u.Listeners {
		rc.Names = append(rc.Names, r.Name)
	}
	return rc, nil
}

// placeholderClusters makes an empty cluster for each cluster name the file's listeners
// refer to (tcp_proxy, inline routes), so that a standalone check translates them; each
// is a warning naming the listener.
func placeholderClusters(f *resourceFile) (map[string]*engine.Cluster, []string, error) {
	out := map[string]*engine.Cluster{}
	var warns []string
	for _, item := range f.items {
		l := &listenerv3.Listener{}
		if _, m := decodeResource(item, l, nil); m == nil {
			continue
		}
		where := item.pos().where("listener", l.GetName())
		for _, name := range clusterRefs(l) {
			if _, ok := out[name]; ok {
				continue
			}
			c, err := engine.NewCluster(engine.ClusterConfig{Name: name, ConnectTimeout: engine.DefaultConnectTimeout, PerConnectionBufferLimit: engine.DefaultBufferLimit}, 1)
			if err != nil {
				return nil, nil, fmt.Errorf("cluster %q: %w", name, err)
			}
			out[name] = c
			warns = append(warns, fmt.Sprintf("%s: cluster %q is not in this file: it must come from the bootstrap or CDS", where, name))
		}
	}
	return out, warns, nil
}

// clusterRefs lists the cluster names a listener's tcp_proxy filters and inline route
// configurations name, in order, without repeats.
func clusterRefs(l *listenerv3.Listener) []string {
	var names []string
	add := func(n string) {
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, fc := range listenerChains(l) {
		for _, f := range fc.GetFilters() {
			if f.GetTypedConfig() == nil {
				continue
			}
			m, err := f.GetTypedConfig().UnmarshalNew()
			if err != nil {
				continue
			}
			switch m := m.(type) {
			case *tcpproxyv3.TcpProxy:
				add(m.GetCluster())
				for _, cw := range m.GetWeightedClusters().GetClusters() {
					add(cw.GetName())
				}
			case *hcmv3.HttpConnectionManager:
				for _, vh := range m.GetRouteConfig().GetVirtualHosts() {
					for _, r := range vh.GetRoutes() {
						add(r.GetRoute().GetCluster())
						for _, cw := range r.GetRoute().GetWeightedClusters().GetClusters() {
							add(cw.GetName())
						}
					}
				}
			}
		}
	}
	return names
}

// UpdateProblems is what a resource file's read found wrong, for printing.
type UpdateProblems struct {
	Errors   []ResourceError
	Warnings []string
}

// Problems gives u's errors and warnings; a nil u has none.
func (u *ListenerUpdate) Problems() UpdateProblems {
	if u == nil {
		return UpdateProblems{}
	}
	return UpdateProblems{u.Errors, u.Warnings}
}

// Problems gives u's errors and warnings; a nil u has none.
func (u *ClusterUpdate) Problems() UpdateProblems {
	if u == nil {
		return UpdateProblems{}
	}
	return UpdateProblems{u.Errors, u.Warnings}
}

// anyResources makes a resource document of a response's resources, so that they take
// the file's path through the strict decode (the same checks, paths and messages): each
// Any becomes its JSON form, "@type" first. One that cannot be rendered (a type this
// binary does not link) keeps only its "@type", which the decode then reports as
// unsupported for that resource alone.
// placeholderResolver resolves the types Portico links, and stands in an empty message
// for any other: a resource holding an extension Portico does not have (Istio's own
// filters) is then written with that Any as just its "@type", so the strict decode that
// follows keeps the resource's name and reports the type at its field, as for a file.
type placeholderResolver struct{}

func (placeholderResolver) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(url)
	if errors.Is(err, protoregistry.NotFound) {
		return (&emptypb.Empty{}).ProtoReflect().Type(), nil
	}
	return mt, err
}

func (placeholderResolver) FindMessageByName(n protoreflect.FullName) (protoreflect.MessageType, error) {
	return protoregistry.GlobalTypes.FindMessageByName(n)
}

func (placeholderResolver) FindExtensionByName(n protoreflect.FullName) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByName(n)
}

func (placeholderResolver) FindExtensionByNumber(m protoreflect.FullName, n protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByNumber(m, n)
}

// anyResources writes resources as a resource document; those in skip (by index: a
// previous version's, byte for byte) only as their type and name, which is all that is
// read of them.
func anyResources(from, version string, resources []*anypb.Any, skip map[int]string) (*resourceFile, error) {
	var b []byte
	b = append(b, `{"version_info":`...)
	v, _ := json.Marshal(version)
	b = append(b, v...)
	b = append(b, `,"resources":[`...)
	for i, a := range resources {
		if i > 0 {
			b = append(b, ',')
		}
		if name, ok := skip[i]; ok {
			t, _ := json.Marshal(a.GetTypeUrl())
			n, _ := json.Marshal(name)
			b = append(append(append(append(append(b, `{"@type":`...), t...), `,"name":`...), n...), '}')
			continue
		}
		j, err := protojson.MarshalOptions{UseProtoNames: true, Resolver: placeholderResolver{}}.Marshal(a)
		if err != nil || !json.Valid(j) {
			t, _ := json.Marshal(a.GetTypeUrl())
			j = append(append([]byte(`{"@type":`), t...), '}')
		}
		b = append(b, j...)
	}
	b = append(b, "]}"...)
	return resourceDoc(b, from)
}

package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/portico-proxy/portico/engine"
)

// The bootstrap's dynamic_resources, the file-based half of Envoy's LDS and CDS: each of
// lds_config and cds_config may name a file (path_config_source, or the older plain path)
// holding a DiscoveryResponse of listeners or clusters. The file is read at start, and
// again each time it is replaced (see Watch); xDS over gRPC (ads_config,
// api_config_source) is refused by the subset check, naming the field.

// FileSource is one file-based subscription of the bootstrap (lds_config or cds_config).
type FileSource struct {
	// Path is the file to read, as written in the bootstrap (relative to the working
	// directory, as in Envoy).
	Path string
	// WatchedDirectory, when set, is the directory whose moves announce a new version of
	// Path (Kubernetes swaps a ConfigMap's `..data` symlink there); empty means the
	// file's own directory is watched for Path being renamed into place.
	WatchedDirectory string
	// Field is where the subscription is configured, for messages
	// ("dynamic_resources.lds_config").
	Field string
}

// Node is the bootstrap's node identity, which Envoy requires with any subscription.
type Node struct {
	ID, Cluster string
}

// supportedDynamic is the supported table's part for dynamic_resources (see supported).
var supportedDynamic = map[protoreflect.FullName][]protoreflect.Name{
	"envoy.config.bootstrap.v3.Bootstrap.DynamicResources": {"lds_config", "cds_config", "ads_config"},
	// initial_fetch_timeout bounds the wait for a first version from a server; a file is
	// read at once, so it changes nothing here (Envoy does not apply it to files either).
	"envoy.config.core.v3.ConfigSource":           {"path", "path_config_source", "resource_api_version", "initial_fetch_timeout", "ads", "api_config_source"},
	"envoy.config.core.v3.AggregatedConfigSource": {},
	"envoy.config.core.v3.PathConfigSource":       {"path", "watched_directory"},
	"envoy.config.core.v3.WatchedDirectory":       {"path"},
}

// dynamicClusters reads the node identity and dynamic_resources, and the CDS file when
// there is one, whose good clusters join the static ones for the listeners' references.
// It runs between the static clusters and the static listeners.
func (t *translator) dynamicClusters(bs *bootstrapv3.Bootstrap) {
	t.cfg.Node = Node{ID: bs.GetNode().GetId(), Cluster: bs.GetNode().GetCluster()}
	t.cfg.NodeProto = nodeProto(bs)
	dr := bs.GetDynamicResources()
	if dr == nil {
		return
	}
	const at = "dynamic_resources"
	t.adsConfigured = dr.GetAdsConfig() != nil
	t.cfg.ADS = t.adsServer(dr) // xds_source.go
	t.cfg.LDS, t.cfg.LDSXDS = t.subscription(dr.GetLdsConfig(), field(at, "lds_config"))
	t.cfg.CDS, t.cfg.CDSXDS = t.subscription(dr.GetCdsConfig(), field(at, "cds_config"))
	if t.cfg.LDS == nil && t.cfg.CDS == nil && t.cfg.LDSXDS == nil && t.cfg.CDSXDS == nil && !t.adsConfigured {
		return
	}
	// Envoy's checkLocalInfo: a subscription identifies itself by the node.
	if t.cfg.Node.ID == "" {
		t.errorf("node.id", "required when dynamic_resources configures a subscription (Envoy: node 'id' and 'cluster' are required)")
	}
	if t.cfg.Node.Cluster == "" {
		t.errorf("node.cluster", "required when dynamic_resources configures a subscription (Envoy: node 'id' and 'cluster' are required)")
	}
	if t.cfg.CDS == nil {
		return
	}
	o := Options{CheckOnly: t.checkOnly, Static: t.cfg}
	u, err := ParseClusters(t.cfg.CDS.Path, t.workers, o, nil)
	if err != nil {
		t.cfg.CDSError = err
		return
	}
	t.cfg.InitialCDS = u
	// The static listeners may name them (the caller publishes them in the registry
	// before the server starts).
	for _, r := range u.Clusters {
		t.clusters[r.Name] = r.Cluster
	}
}

// dynamicListeners reads the LDS file, after the static listeners (whose names an LDS
// listener may not take).
func (t *translator) dynamicListeners() {
	if t.cfg.LDS == nil || t.c.errorsUnder("dynamic_resources") || t.c.errorsUnder("node") {
		return
	}
	o := Options{CheckOnly: t.checkOnly, Static: t.cfg, Clusters: t.registry}
	if u := t.cfg.InitialCDS; u != nil {
		o.known = map[string]*engine.Cluster{}
		for _, r := range u.Clusters {
			o.known[r.Name] = r.Cluster
		}
	}
	u, err := ParseListeners(t.cfg.LDS.Path, t.workers, o, nil)
	if err != nil {
		t.cfg.LDSError = err
		return
	}
	t.cfg.InitialLDS = u
}

// subscription reads lds_config or cds_config: a file, or a management server.
func (t *translator) subscription(cs *corev3.ConfigSource, at string) (*FileSource, *XDSSubscription) {
	if cs == nil {
		return nil, nil
	}
	sub, isFile := t.xdsSubscription(cs, at)
	if isFile {
		return t.fileSource(cs, at), nil
	}
	return nil, sub
}

// fileSource reads one ConfigSource of dynamic_resources; nil when it is absent or not
// a file (other kinds are reported by the subset check).
func (t *translator) fileSource(cs *corev3.ConfigSource, at string) *FileSource {
	if cs == nil {
		return nil
	}
	//lint:ignore SA1019 deprecated: refused here, as Envoy refuses it
	if cs.GetResourceApiVersion() == corev3.ApiVersion_V2 {
		t.errorf(field(at, "resource_api_version"), "V2 is not supported (Envoy dropped the v2 API too): use V3")
	}
	src := &FileSource{Field: at}
	pathAt := field(at, "path")
	switch s := cs.GetConfigSourceSpecifier().(type) {
	case *corev3.ConfigSource_Path:
		//lint:ignore SA1019 deprecated, but Envoy's quick-start still writes it
		src.Path = s.Path
	case *corev3.ConfigSource_PathConfigSource:
		pathAt = field(field(at, "path_config_source"), "path")
		src.Path = s.PathConfigSource.GetPath()
		if wd := s.PathConfigSource.GetWatchedDirectory(); wd != nil {
			src.WatchedDirectory = wd.GetPath()
		}
	case nil:
		t.errorf(at, "a path_config_source is required (Portico reads LDS and CDS from files)")
		return nil
	default:
		return nil // api_config_source, ads, self: reported by the subset check
	}
	if src.Path == "" {
		if !t.c.reported(pathAt) {
			t.errorf(pathAt, "required")
		}
		return nil
	}
	// Envoy checks that the file exists when it reads the bootstrap: a typo would
	// otherwise give a proxy without listeners.
	if st, err := os.Stat(src.Path); err != nil {
		t.errorf(pathAt, "file must exist: %v", err)
		return nil
	} else if st.IsDir() {
		t.errorf(pathAt, "%s is a directory, not a file", src.Path)
		return nil
	}
	if src.WatchedDirectory != "" {
		if st, err := os.Stat(src.WatchedDirectory); err != nil || !st.IsDir() {
			t.errorf(field(field(field(at, "path_config_source"), "watched_directory"), "path"), "must be an existing directory: %s", describeStat(src.WatchedDirectory, err))
		}
	}
	return src
}

func describeStat(path string, err error) string {
	if err != nil {
		return err.Error()
	}
	return path + " is not a directory"
}

// format is how a resource file is written, from its extension as in Envoy.
type format int

const (
	formatYAML     format = iota // .yaml, .yml
	formatJSON                   // any other extension (.json)
	formatProto                  // .pb: binary protobuf
	formatProtoTxt               // .pb_text: protobuf text format
)

// fileFormat picks a file's format by its extension, as Envoy's loadFromFile does: any
// other extension is JSON.
func fileFormat(path string) format {
	switch filepath.Ext(path) {
	case ".yaml", ".yml":
		return formatYAML
	case ".pb":
		return formatProto
	case ".pb_text":
		return formatProtoTxt
	}
	return formatJSON
}

// Binary (.pb) and text (.pb_text) resource files are decoded with descriptors of the two
// discovery messages made here (Portico does not link the gRPC service package that
// defines them), then written as JSON for the same stages a YAML file goes through: their
// errors have paths, not lines.

// discoveryFile describes envoy.service.discovery.v3's DiscoveryResponse and Resource
// with the fields a file uses; the others stay unknown (binary: skipped; text: an error).
func discoveryFile() (protoreflect.FileDescriptor, error) {
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	msg := descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum()
	boolean := descriptorpb.FieldDescriptorProto_TYPE_BOOL.Enum()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	f := func(name string, n int32, l *descriptorpb.FieldDescriptorProto_Label, t *descriptorpb.FieldDescriptorProto_Type, typ string) *descriptorpb.FieldDescriptorProto {
		fd := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(n), Label: l, Type: t, JsonName: proto.String(jsonName(name))}
		if typ != "" {
			fd.TypeName = proto.String(typ)
		}
		return fd
	}
	fdp := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("portico/discovery_file.proto"),
		Package:    proto.String("envoy.service.discovery.v3"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/protobuf/any.proto"},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("DiscoveryResponse"),
			Field: []*descriptorpb.FieldDescriptorProto{
				f("version_info", 1, opt, str, ""),
				f("resources", 2, rep, msg, ".google.protobuf.Any"),
				f("canary", 3, opt, boolean, ""),
				f("type_url", 4, opt, str, ""),
				f("nonce", 5, opt, str, ""),
			},
		}, {
			Name: proto.String("Resource"),
			Field: []*descriptorpb.FieldDescriptorProto{
				f("version", 1, opt, str, ""),
				f("resource", 2, opt, msg, ".google.protobuf.Any"),
				f("name", 3, opt, str, ""),
				f("aliases", 4, rep, str, ""),
			},
		}},
	}
	return protodesc.NewFile(fdp, protoregistry.GlobalFiles)
}

func jsonName(s string) string {
	parts := strings.Split(s, "_")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

// discoveryTypes resolves the linked types and the discovery Resource.
type discoveryTypes struct{ resource protoreflect.MessageType }

func (d discoveryTypes) FindMessageByName(n protoreflect.FullName) (protoreflect.MessageType, error) {
	if n == d.resource.Descriptor().FullName() {
		return d.resource, nil
	}
	return protoregistry.GlobalTypes.FindMessageByName(n)
}

func (d discoveryTypes) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	n := url
	if i := strings.LastIndexByte(url, '/'); i >= 0 {
		n = url[i+1:]
	}
	return d.FindMessageByName(protoreflect.FullName(n))
}

func (discoveryTypes) FindExtensionByName(n protoreflect.FullName) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByName(n)
}

func (discoveryTypes) FindExtensionByNumber(m protoreflect.FullName, n protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByNumber(m, n)
}

// protoFileJSON decodes a .pb or .pb_text resource file into the JSON of its
// DiscoveryResponse.
func protoFileJSON(data []byte, f format) ([]byte, error) {
	fd, err := discoveryFile()
	if err != nil {
		return nil, fmt.Errorf("discovery descriptors: %w", err)
	}
	types := discoveryTypes{resource: dynamicpb.NewMessageType(fd.Messages().ByName("Resource"))}
	m := dynamicpb.NewMessage(fd.Messages().ByName("DiscoveryResponse"))
	if f == formatProto {
		err = proto.UnmarshalOptions{Resolver: types}.Unmarshal(data, m)
	} else {
		err = prototext.UnmarshalOptions{Resolver: types}.Unmarshal(data, m)
	}
	if err != nil {
		return nil, err
	}
	out, err := protojson.MarshalOptions{Resolver: types, UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// closeInitial closes what the resources of InitialLDS and InitialCDS opened, for a
// bootstrap that is refused (Close closes only the static resources': the dynamic ones
// are the caller's once the load succeeds, and may be replaced before it closes cfg).
func (c *Config) closeInitial() {
	if u := c.InitialLDS; u != nil {
		for _, r := range u.Listeners {
			for _, cl := range r.Closers {
				cl.Close()
			}
		}
	}
	if u := c.InitialCDS; u != nil {
		for _, r := range u.Clusters {
			for _, cl := range r.Closers {
				cl.Close()
			}
		}
	}
}

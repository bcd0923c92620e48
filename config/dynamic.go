package config

import (
	"os"
	"path/filepath"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/reflect/protoreflect"

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
	"envoy.config.bootstrap.v3.Bootstrap.DynamicResources": {"lds_config", "cds_config"},
	// initial_fetch_timeout bounds the wait for a first version from a server; a file is
	// read at once, so it changes nothing here (Envoy does not apply it to files either).
	"envoy.config.core.v3.ConfigSource":     {"path", "path_config_source", "resource_api_version", "initial_fetch_timeout"},
	"envoy.config.core.v3.PathConfigSource": {"path", "watched_directory"},
	"envoy.config.core.v3.WatchedDirectory": {"path"},
}

// dynamicClusters reads the node identity and dynamic_resources, and the CDS file when
// there is one, whose good clusters join the static ones for the listeners' references.
// It runs between the static clusters and the static listeners.
func (t *translator) dynamicClusters(bs *bootstrapv3.Bootstrap) {
	t.cfg.Node = Node{ID: bs.GetNode().GetId(), Cluster: bs.GetNode().GetCluster()}
	dr := bs.GetDynamicResources()
	if dr == nil {
		return
	}
	const at = "dynamic_resources"
	t.cfg.LDS = t.fileSource(dr.GetLdsConfig(), field(at, "lds_config"))
	t.cfg.CDS = t.fileSource(dr.GetCdsConfig(), field(at, "cds_config"))
	if t.cfg.LDS == nil && t.cfg.CDS == nil {
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

// Package config loads an Envoy v3 bootstrap (the subset Portico implements) and
// translates it into the engine's plain structs.
//
// The file goes through five stages, and every stage reports all the problems it finds,
// each with the path of the field as the user wrote it:
//
//  1. YAML (go.yaml.in/yaml/v2, as sigs.k8s.io/yaml reads it) into a generic JSON tree;
//     a syntax error carries its line.
//  2. A pass over the generic JSON guided by the proto descriptors: unknown fields and
//     mistyped values, inside typed_config Any values too. protojson alone would stop at
//     the first one, without a usable location. Offending values are removed so that the
//     remaining stages still run.
//  3. protojson into envoy.config.bootstrap.v3.Bootstrap, then the supported-subset
//     check: any set field Portico does not implement is an error, never silently
//     ignored.
//  4. The types' own protoc-gen-validate rules (ValidateAll, also on the messages inside
//     Any values).
//  5. Translation into engine.ListenerConfig, engine.Cluster and the filters' factories,
//     with the cross-reference checks (cluster names, CIDRs, duplicate names).
//
// This is the only package that sees protobuf types.
package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/chain"
	"github.com/portico-proxy/portico/filters/network/httpconnmgr"
)

// Config is a loaded, validated bootstrap, built for a given worker count; nothing is
// bound yet.
type Config struct {
	Admin    netip.AddrPort // zero if no admin section (or no admin address)
	Clusters []*engine.Cluster
	// Registry is where the filters of this configuration look clusters up by name
	// (Options.Clusters, or one made for it).
	Registry     *engine.ClusterRegistry
	Listeners    []engine.ListenerConfig
	StatsSources []engine.StatsSource // each tcp_proxy Factory and access-log Writer
	// Chains is each listener's filter-chain manager by listener name, for
	// `portico explain` (the same value as the listener's FilterChains).
	Chains map[string]*chain.Manager

	// Runners are background work the configuration needs while the server runs: DNS
	// resolvers of DNS clusters, active health checkers. Start each with Run after
	// Server.Start (before it is fine too: a host-set update before Start is applied
	// directly); cancelling the context stops it, and Run returns when it has.
	Runners []Runner

	// Warnings name what was accepted without doing what Envoy would (an optional HTTP
	// filter Portico does not have, skipped): the binary logs them.
	Warnings []string

	// Closers are what the configuration opened (access-log writers): close them, or
	// call Close, once the server no longer uses the configuration, to flush the logs.
	Closers []io.Closer

	// bootstrap is the Bootstrap as read, in protobuf's wire form (compact, and
	// translation drops the listeners' messages as it goes), and loaded is when, for
	// /config_dump.
	bootstrap []byte
	loaded    time.Time
	// grpcClusters and grpcH2 are the translator's (xds_source.go), kept so that a CDS
	// cluster's eds_config may name a management server of its own (eds.go).
	grpcClusters map[string]string
	grpcH2       map[string]*corev3.Http2ProtocolOptions

	// The lists above hold the static resources only (and, when there is a CDS file,
	// the HTTP upstreams shared with its clusters); the dynamic ones carry their own
	// lists (dynamic.go, resources.go).

	// StaticListeners and StaticClusters are the static resources as resources, in the
	// file's order, each with its own share of the lists above, so that static and
	// dynamic ones are handled alike (a file never updates a static one).
	StaticListeners []*ListenerResource
	StaticClusters  []*ClusterResource

	// Node is the bootstrap's node identity.
	Node Node
	// LDS and CDS are the file subscriptions of dynamic_resources; nil when absent.
	LDS, CDS *FileSource
	// InitialLDS and InitialCDS are the files' contents at load time (nil without the
	// subscription, or when the file as a whole could not be read: LDSError, CDSError;
	// Envoy then starts without those resources, and so may the caller). Their
	// resources' Errors do not fail the load: Envoy rejects those resources and starts.
	// Their resources' Closers, Runners and StatsSources are the caller's to handle
	// (Close does not close them).
	InitialLDS         *ListenerUpdate
	InitialCDS         *ClusterUpdate
	LDSError, CDSError error

	// ADS is dynamic_resources.ads_config (nil without it); LDSXDS and CDSXDS are the
	// lds_config and cds_config that name a management server, `ads: {}` or an
	// api_config_source of their own (xds_source.go). NodeProto is the node as
	// configured, to send to a management server.
	ADS            *XDSServer
	LDSXDS, CDSXDS *XDSSubscription
	NodeProto      *corev3.Node

	// RouteProviders are the route configurations the connection managers configured
	// with rds read (Options.Routes, or a set made for this configuration), static and
	// dynamic listeners' alike: the manager fills them from RDS (rds.go).
	RouteProviders *httpconnmgr.RouteProviders
}

// Runner is background work of a configuration (see Config.Runners). It never runs on a
// worker: what it learns reaches the workers as posted updates (Cluster.UpdateHosts,
// Host.SetHealthFlag).
type Runner interface {
	Run(ctx context.Context)
}

// Close flushes and closes what the configuration opened (access-log files). Call it
// after the server has stopped using the configuration.
func (c *Config) Close() error {
	var errs []error
	for _, cl := range c.Closers {
		if err := cl.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	c.Closers = nil
	return errors.Join(errs...)
}

// Options change how a bootstrap is loaded.
type Options struct {
	// CheckOnly checks access-log files instead of opening them, so that loading
	// creates no file (`portico validate`, `portico explain`); the loggers it builds
	// discard what they are given.
	CheckOnly bool
	// Clusters is the registry the filters look clusters up in by name (the server's,
	// engine.Server.ClusterRegistry, so that clusters it adds or replaces at run time
	// take effect); nil makes a new one. A configuration that loads publishes its static
	// clusters in it. For ParseListeners it is also where the clusters a listener names
	// are checked for (besides Static's).
	Clusters *engine.ClusterRegistry
	// Static, for ParseListeners and ParseClusters at run time, is the loaded bootstrap:
	// its static listeners' and clusters' names may not be taken by a file's resources,
	// nor its listeners' addresses, and its clusters may be named.
	Static *Config

	// Routes are the RDS route providers (Config.RouteProviders); nil makes a new set.
	// For ParseListeners, nil takes Static's.
	Routes *httpconnmgr.RouteProviders

	// known are more clusters a listener may name, by name: the CDS file's at start,
	// before anyone has published them (dynamic.go).
	known map[string]*engine.Cluster
}

// Load reads and parses the bootstrap file at path. Problems in the file are returned as
// Errors; paths inside it do not repeat the file name.
func Load(path string, workers int) (*Config, error) {
	return LoadWith(path, workers, Options{})
}

// LoadWith is Load with options.
func LoadWith(path string, workers int, o Options) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseWith(data, workers, o)
}

// Parse parses a bootstrap in YAML (or JSON, which is YAML) for the given number of
// workers. Problems in the document are returned as Errors, all of them.
func Parse(data []byte, workers int) (*Config, error) {
	return ParseWith(data, workers, Options{})
}

// ParseWith is Parse with options.
func ParseWith(data []byte, workers int, o Options) (*Config, error) {
	if workers < 1 {
		return nil, fmt.Errorf("config: worker count %d, need at least 1", workers)
	}
	root, marks, err := decodeYAML(data)
	if err != nil {
		return nil, err
	}
	obj, ok := root.(object)
	if !ok {
		if root == nil {
			return nil, Errors{{Msg: "the configuration is empty"}}
		}
		return nil, Errors{{Msg: fmt.Sprintf("the configuration must be a mapping (a Bootstrap), got %s", describe(root))}}
	}

	c := &collector{}
	bs := &bootstrapv3.Bootstrap{}
	k := &checker{c: c, marks: marks}
	var doc any = obj
	k.message(&doc, bs.ProtoReflect().Descriptor(), rootLoc("", ""), nil)
	for _, run := range marks.unreported() {
		k.errorf(lineLoc(run.line), "%s", run.msg())
	}

	clean, err := appendJSON(nil, obj)
	if err == nil {
		err = protojson.Unmarshal(clean, bs)
	}
	if err != nil {
		// The JSON pass is meant to leave nothing protojson rejects; if it did, say so
		// rather than translate a half-read configuration.
		c.add("", "", "cannot decode the bootstrap: %v", err)
		return nil, c.result(nil)
	}
	// The subset check runs first so that validation errors inside an unsupported
	// field, already reported as such, are not repeated.
	top := rootLoc("", "")
	c.subset(bs.ProtoReflect(), top)
	c.validate(bs, &top)
	wire, err := proto.Marshal(bs)
	if err != nil {
		c.add("", "", "cannot keep the bootstrap for /config_dump: %v", err)
	}
	reg := o.Clusters
	if reg == nil {
		reg = engine.NewClusterRegistry()
	}
	routes := o.Routes
	if routes == nil {
		routes = httpconnmgr.NewRouteProviders()
	}
	cfg := (&translator{c: c, workers: workers, checkOnly: o.CheckOnly, registry: reg, routes: routes}).bootstrap(bs)
	if err := c.result(bs); err != nil {
		cfg.Close()
		cfg.closeInitial() // dynamic.go: what the LDS and CDS files' resources opened
		return nil, err
	}
	cfg.bootstrap, cfg.loaded = wire, time.Now()
	cfg.Registry = reg
	for _, cl := range cfg.Clusters {
		reg.Put(cl)
	}
	return cfg, nil
}

var yamlLineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// yamlErrors turns a YAML error ("error converting YAML to JSON: yaml: line 3: …", or a
// list of "line N: …" for unmarshal errors) into field errors located by line.
func yamlErrors(err error) Errors {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:")
	var es Errors
	for _, line := range strings.Split(msg, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if m := yamlLineRE.FindStringSubmatch(line); m != nil {
			es = append(es, &FieldError{Path: "line " + m[1], Msg: "YAML: " + m[2]})
		} else {
			es = append(es, &FieldError{Msg: "YAML: " + line})
		}
	}
	if len(es) == 0 {
		es = Errors{{Msg: "YAML: " + msg}}
	}
	return es
}

// Command controlplane is a small xDS management server for trying Portico (or Envoy)
// with a control plane: it serves the resources of one YAML file to every proxy that
// connects, over ADS (state of the world and delta), and pushes a new version each time
// the file changes. It logs what each proxy ACKs and NACKs, and -status serves the same
// as JSON.
//
//	go run ./examples/xds/controlplane -resources examples/xds/resources.yaml
//
// It is built on go-control-plane's SnapshotCache and server, as most Go control planes
// are; every proxy gets the same snapshot, whatever its node.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	yaml "go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	// The resource types and extensions Portico reads, registered for "@type".
	_ "github.com/portico-proxy/portico/config"
)

// fleet makes every node share one snapshot.
type fleet struct{}

func (fleet) ID(*corev3.Node) string { return "fleet" }

func main() {
	addr := flag.String("addr", "127.0.0.1:18000", "where the gRPC server listens")
	path := flag.String("resources", "examples/xds/resources.yaml", "the YAML file of resources to serve")
	status := flag.String("status", "", "if set, where GET /status answers what each proxy ACKed and NACKed, as JSON")
	poll := flag.Duration("poll", 500*time.Millisecond, "how often the file is checked for a change")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, *addr, *path, *status, *poll); err != nil {
		log.Error("controlplane", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, addr, path, statusAddr string, poll time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cache := cachev3.NewSnapshotCache(true, fleet{}, nil)
	st := newStatus()
	srv := serverv3.NewServer(ctx, cache, st.callbacks(log))
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, srv)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		gs.Stop()
	}()
	if statusAddr != "" {
		go func() {
			h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(st.snapshot())
			})
			if err := http.ListenAndServe(statusAddr, h); err != nil {
				log.Error("status server", "err", err)
			}
		}()
	}

	// The file is read now and whenever its content changes.
	var lastSum [32]byte
	version := 0
	load := func() {
		data, err := os.ReadFile(path)
		if err != nil {
			log.Error("reading the resources", "path", path, "err", err)
			return
		}
		sum := sha256.Sum256(data)
		if sum == lastSum {
			return
		}
		res, err := parse(data)
		if err != nil {
			log.Error("the resources file is not valid; the proxies keep the last version", "path", path, "err", err)
			lastSum = sum
			return
		}
		version++
		snap, err := cachev3.NewSnapshot(strconv.Itoa(version), res)
		if err == nil {
			err = cache.SetSnapshot(ctx, "fleet", snap)
		}
		if err != nil {
			log.Error("setting the snapshot", "err", err)
			return
		}
		lastSum = sum
		log.Info("serving a new version", "version", version, "listeners", len(res[resource.ListenerType]),
			"clusters", len(res[resource.ClusterType]), "endpoints", len(res[resource.EndpointType]), "routes", len(res[resource.RouteType]))
	}
	load()
	go func() {
		t := time.NewTicker(poll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				load()
			}
		}
	}()
	log.Info("xDS management server listening", "address", ln.Addr().String(), "resources", path)
	if err := gs.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// parse reads a YAML document with a resources list (as an Envoy resource file) into
// resources by type URL.
func parse(data []byte) (map[resource.Type][]types.Resource, error) {
	var doc struct {
		Resources []map[string]any `yaml:"resources"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	out := map[resource.Type][]types.Resource{}
	for i, r := range doc.Resources {
		js, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("resources[%d]: %w", i, err)
		}
		var a anypb.Any
		if err := protojson.Unmarshal(js, &a); err != nil {
			return nil, fmt.Errorf("resources[%d]: %w", i, err)
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("resources[%d]: %w", i, err)
		}
		switch a.GetTypeUrl() {
		case resource.ListenerType, resource.ClusterType, resource.EndpointType, resource.RouteType:
		default:
			return nil, fmt.Errorf("resources[%d]: type %q is not served (listeners, clusters, endpoints and route configurations are)", i, a.GetTypeUrl())
		}
		out[a.GetTypeUrl()] = append(out[a.GetTypeUrl()], m.(types.Resource))
	}
	return out, nil
}

// status is what each proxy last ACKed and NACKed, by node id and type.
type status struct {
	mu      sync.Mutex
	streams map[int64]string
	nodes   map[string]map[string]*typeStatus
}

type typeStatus struct {
	Acked  string `json:"acked,omitempty"`
	Nacked string `json:"nacked,omitempty"`
	Error  string `json:"error,omitempty"`
}

func newStatus() *status {
	return &status{streams: map[int64]string{}, nodes: map[string]map[string]*typeStatus{}}
}

func (s *status) callbacks(log *slog.Logger) serverv3.Callbacks {
	note := func(id int64, node *corev3.Node, typeURL, version, nonce, nack string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		n := s.streams[id]
		if node.GetId() != "" {
			n = node.GetId()
			s.streams[id] = n
		}
		if n == "" || nonce == "" {
			return // a subscription, not the answer to a response
		}
		if s.nodes[n] == nil {
			s.nodes[n] = map[string]*typeStatus{}
		}
		ts := s.nodes[n][typeURL]
		if ts == nil {
			ts = &typeStatus{}
			s.nodes[n][typeURL] = ts
		}
		short := typeURL[len("type.googleapis.com/"):]
		if nack != "" {
			ts.Nacked, ts.Error = version, nack
			log.Warn("NACK", "node", n, "type", short, "kept_version", version, "error", nack)
			return
		}
		if ts.Acked != version {
			log.Info("ACK", "node", n, "type", short, "version", version)
		}
		ts.Acked = version
	}
	return serverv3.CallbackFuncs{
		StreamRequestFunc: func(id int64, r *discoveryv3.DiscoveryRequest) error {
			note(id, r.GetNode(), r.GetTypeUrl(), r.GetVersionInfo(), r.GetResponseNonce(), r.GetErrorDetail().GetMessage())
			return nil
		},
		StreamDeltaRequestFunc: func(id int64, r *discoveryv3.DeltaDiscoveryRequest) error {
			note(id, r.GetNode(), r.GetTypeUrl(), "(delta)", r.GetResponseNonce(), r.GetErrorDetail().GetMessage())
			return nil
		},
		StreamClosedFunc: func(id int64, _ *corev3.Node) {
			s.mu.Lock()
			delete(s.streams, id)
			s.mu.Unlock()
		},
	}
}

func (s *status) snapshot() map[string]map[string]typeStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]map[string]typeStatus{}
	names := make([]string, 0, len(s.nodes))
	for n := range s.nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out[n] = map[string]typeStatus{}
		for typ, ts := range s.nodes[n] {
			out[n][typ] = *ts
		}
	}
	return out
}

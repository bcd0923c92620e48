package xds

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// startLDSOnly is a management server with the listener discovery service alone (no
// ADS), as a server for an api_config_source without ADS may be.
func startLDSOnly(t *testing.T) (*cachev3.SnapshotCache, string) {
	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gs := grpc.NewServer()
	listenerservice.RegisterListenerDiscoveryServiceServer(gs, serverv3.NewServer(ctx, cache, nil))
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); cancel(); <-done })
	return &cache, ln.Addr().String()
}

// TestPerTypeService: with PerType the client opens the type's own service, in both
// protocols; ADS against such a server fails, and each failure reaches OnStreamFailure.
func TestPerTypeService(t *testing.T) {
	checkGoroutines(t)
	for _, delta := range []bool{false, true} {
		cache, addr := startLDSOnly(t)
		snap, err := cachev3.NewSnapshot("v1", resources(nil, []string{"l1"}))
		if err != nil {
			t.Fatal(err)
		}
		if err := (*cache).SetSnapshot(context.Background(), "node-1", snap); err != nil {
			t.Fatal(err)
		}
		r := &recorder{}
		c := New(Options{Target: addr, Node: node(), Types: []string{ListenerType}, PerType: true, Delta: delta}, r.handle)
		stop := runClient(t, c)
		eventually(t, "the listener from LDS alone", func() bool { return len(r.snapshot()) > 0 && slices.Equal(r.snapshot()[0].names, []string{"l1"}) })
		stop()

		var failures atomic.Int64
		ads := New(Options{Target: addr, Node: node(), Types: []string{ListenerType}, Delta: delta,
			Backoff:         func(int) time.Duration { return 10 * time.Millisecond },
			OnStreamFailure: func(error) { failures.Add(1) }}, (&recorder{}).handle)
		stop = runClient(t, ads)
		eventually(t, "ADS to fail against an LDS-only server", func() bool { return failures.Load() >= 2 })
		stop()
	}
	if err := New(Options{Target: "127.0.0.1:1", Types: []string{ListenerType, ClusterType}, PerType: true}, nil).Run(context.Background()); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("PerType with two types: %v", err)
	}
}

func TestNackStatusIsEnvoys(t *testing.T) {
	long := strings.Repeat("x", 5000)
	s := nackStatus(errors.New(long))
	if s.GetCode() != int32(codes.Internal) || len(s.GetMessage()) != maxNackMessage+len("...(truncated)") || !strings.HasSuffix(s.GetMessage(), "...(truncated)") {
		t.Fatalf("code %d, message of %d bytes", s.GetCode(), len(s.GetMessage()))
	}
	if s := nackStatus(errors.New("short")); s.GetMessage() != "short" {
		t.Fatalf("message %q", s.GetMessage())
	}
}

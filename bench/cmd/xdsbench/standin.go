package main

import (
	"context"
	"fmt"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-proxy/portico/config/xds"
)

// standins are in-process config/xds clients in place of the Portico
// processes: the same ADS protocol (ACK with version and nonce), but the
// handler applies nothing and ACKs at once. They measure the control plane
// and the protocol alone (a floor under the real proxies' figures), and let
// the measuring code run before the binary speaks xDS. Nothing serves, so
// the serve check is skipped, and there is no process to sample.
type standins struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startStandins(n int, cpAddr string, h func(typeURL, version string) error) (*standins, []*proxy) {
	if h == nil {
		h = func(string, string) error { return nil }
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &standins{cancel: cancel}
	var ps []*proxy
	for i := 1; i <= n; i++ {
		p := &proxy{node: fmt.Sprintf("proxy-%d", i), ip: fmt.Sprintf("127.0.1.%d", i), done: make(chan struct{})}
		c := xds.New(xds.Options{
			Target: cpAddr,
			Node:   &corev3.Node{Id: p.node, Cluster: "fleet"},
			Types:  []string{xds.ClusterType, xds.ListenerType},
		}, func(typ, version string, _ []*anypb.Any) error { return h(typ, version) })
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer close(p.done)
			p.err = c.Run(ctx)
		}()
		ps = append(ps, p)
	}
	return s, ps
}

func (s *standins) stop() {
	s.cancel()
	s.wg.Wait()
}

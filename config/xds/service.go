package xds

import (
	"context"
	"fmt"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"google.golang.org/grpc"
)

// A client with Options.PerType set talks to one type's own discovery service (Envoy's
// api_config_source without ADS: envoy.service.listener.v3.ListenerDiscoveryService and
// its kin), not to the aggregated one; the messages and the rules are the same.

type (
	sotwStream  = grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]
	deltaStream = grpc.BidiStreamingClient[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]
)

// openSotW opens a state-of-the-world stream: ADS, or types[0]'s own service.
func openSotW(ctx context.Context, conn *grpc.ClientConn, o *Options) (sotwStream, error) {
	if !o.PerType {
		return discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	}
	switch o.Types[0] {
	case ListenerType:
		return listenerservice.NewListenerDiscoveryServiceClient(conn).StreamListeners(ctx)
	case ClusterType:
		return clusterservice.NewClusterDiscoveryServiceClient(conn).StreamClusters(ctx)
	case EndpointType:
		return endpointservice.NewEndpointDiscoveryServiceClient(conn).StreamEndpoints(ctx)
	case RouteType:
		return routeservice.NewRouteDiscoveryServiceClient(conn).StreamRoutes(ctx)
	}
	return nil, fmt.Errorf("xds: no discovery service of its own for %s", o.Types[0])
}

// openDelta is openSotW for the incremental protocol.
func openDelta(ctx context.Context, conn *grpc.ClientConn, o *Options) (deltaStream, error) {
	if !o.PerType {
		return discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	}
	switch o.Types[0] {
	case ListenerType:
		return listenerservice.NewListenerDiscoveryServiceClient(conn).DeltaListeners(ctx)
	case ClusterType:
		return clusterservice.NewClusterDiscoveryServiceClient(conn).DeltaClusters(ctx)
	case EndpointType:
		return endpointservice.NewEndpointDiscoveryServiceClient(conn).DeltaEndpoints(ctx)
	case RouteType:
		return routeservice.NewRouteDiscoveryServiceClient(conn).DeltaRoutes(ctx)
	}
	return nil, fmt.Errorf("xds: no discovery service of its own for %s", o.Types[0])
}

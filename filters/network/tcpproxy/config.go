// Package tcpproxy is envoy.filters.network.tcp_proxy: it connects each downstream
// connection to an upstream host of a cluster and copies bytes both ways.
package tcpproxy

import (
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/accesslog"
)

// Name is the filter's Envoy name.
const Name = "envoy.filters.network.tcp_proxy"

// DefaultIdleTimeout is Envoy's idle_timeout default.
const DefaultIdleTimeout = time.Hour

// WeightedCluster is one entry of weighted_clusters (or the single `cluster`, weight 1).
type WeightedCluster struct {
	// Cluster is used as it is when the Config has no Registry; with one, Name is looked
	// up for each connection instead (Cluster may then be nil).
	Cluster *engine.Cluster
	Name    string
	Weight  uint32
}

// Config is the translated TcpProxy message.
type Config struct {
	StatPrefix string
	Clusters   []WeightedCluster
	// Registry, if set, is where the clusters are looked up by name for each connection,
	// so that a cluster added, replaced or removed at run time (CDS) takes effect for new
	// connections; a name not found closes the connection as no-route (flag NC).
	Registry *engine.ClusterRegistry
	// IdleTimeout closes a connection with no bytes either way for this long; 0 disables.
	// The translator applies DefaultIdleTimeout when the field is absent.
	IdleTimeout time.Duration
	// MaxConnectAttempts is how many upstream connects are tried (≥1).
	MaxConnectAttempts int
	AccessLogs         []accesslog.Logger
}

// Package echo is envoy.filters.network.echo: it writes back whatever it reads.
package echo

import "github.com/portico-proxy/portico/engine"

// Name is the filter's Envoy name.
const Name = "envoy.filters.network.echo"

// Factory creates echo filters.
type Factory struct{}

// Name implements engine.NetworkFilterFactory.
func (Factory) Name() string { return Name }

// CreateFilter implements engine.NetworkFilterFactory.
func (Factory) CreateFilter(c *engine.Connection) engine.ReadFilter { return filter{c} }

type filter struct{ c *engine.Connection }

func (filter) OnNewConnection() engine.FilterStatus { return engine.Continue }

func (f filter) OnData(data []byte, endStream bool) engine.FilterStatus {
	f.c.Write(data, endStream)
	return engine.StopIteration
}

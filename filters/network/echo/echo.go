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
func (Factory) CreateFilter(c *engine.Connection) engine.ReadFilter {
	f := &filter{c}
	c.AddCallbacks(f)
	return f
}

// filter echoes on one connection. It is its own connection's flow control: a client that
// sends without reading fills the write buffer, and above the high watermark the filter
// stops reading until the client has taken half of it, so memory stays bounded by
// per_connection_buffer_limit_bytes however much the client sends.
type filter struct{ c *engine.Connection }

func (*filter) OnNewConnection() engine.FilterStatus { return engine.Continue }

func (f *filter) OnData(data []byte, endStream bool) engine.FilterStatus {
	f.c.Write(data, endStream)
	return engine.StopIteration
}

// OnEvent implements engine.ConnectionCallbacks.
func (*filter) OnEvent(engine.ConnectionEvent) {}

// OnAboveWriteBufferHighWatermark implements engine.ConnectionCallbacks: stop reading.
func (f *filter) OnAboveWriteBufferHighWatermark() { f.c.ReadDisable(true) }

// OnBelowWriteBufferLowWatermark implements engine.ConnectionCallbacks: read again.
func (f *filter) OnBelowWriteBufferLowWatermark() { f.c.ReadDisable(false) }

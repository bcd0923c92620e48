// Package httpinspector is envoy.filters.listener.http_inspector: on a plaintext socket it
// looks at the first line and records the application protocol "http/1.0", "http/1.1" or
// "h2c" so that filter chains can match on it. It drains nothing: the connection sees
// every byte.
package httpinspector

import "github.com/portico-proxy/portico/engine"

// Name is the filter's Envoy name.
const Name = "envoy.filters.listener.http_inspector"

// MaxInspectSize is Envoy's MAX_INSPECT_SIZE: a first line not finished within this many
// bytes closes the socket (Envoy's read_error). Envoy starts with an 8 KiB buffer and
// doubles it up to this; Portico's listener-filter buffer grows the same way.
const MaxInspectSize = 64 << 10

// Config is the filter's configuration. Envoy's HttpInspector proto has no fields.
type Config struct{}

// Filter is stateless; one instance serves every socket.
type Filter struct{ cfg Config }

// New returns the filter.
func New(cfg Config) *Filter { return &Filter{cfg: cfg} }

// Name implements engine.ListenerFilter.
func (*Filter) Name() string { return Name }

// OnAccept implements engine.ListenerFilter. Like Envoy, the filter steps aside when an
// earlier filter (tls_inspector) detected a transport other than raw_buffer: it only
// sniffs plaintext.
func (*Filter) OnAccept(s *engine.ActiveSocket) engine.FilterStatus {
	return accept(&s.Info)
}

func accept(info *engine.SocketInfo) engine.FilterStatus {
	if tp := info.TransportProtocol; tp != "" && tp != engine.TransportRawBuffer {
		return engine.Continue
	}
	return engine.StopIteration
}

// MaxReadBytes implements engine.ListenerFilter.
func (*Filter) MaxReadBytes() int { return MaxInspectSize }

// OnData implements engine.ListenerFilter.
func (*Filter) OnData(s *engine.ActiveSocket, data []byte) engine.FilterStatus {
	st, fail := inspect(&s.Info, data)
	if fail {
		s.Fail()
	}
	return st
}

// inspect is OnData without the ActiveSocket, so tests can drive it on a real socket. It
// returns the status and whether the socket must be rejected.
func inspect(info *engine.SocketInfo, data []byte) (engine.FilterStatus, bool) {
	proto, st := Parse(data)
	switch st {
	case Done:
		info.SetApplicationProtocols(proto.ALPN())
		return engine.Continue, false
	case NotHTTP:
		return engine.Continue, false
	default:
		// Envoy closes when MAX_INSPECT_SIZE bytes hold no complete first line.
		return engine.StopIteration, len(data) >= MaxInspectSize
	}
}

// Package proxyprotocol is envoy.filters.listener.proxy_protocol.
package proxyprotocol

import "github.com/portico-proxy/portico/engine"

// Name is the filter's Envoy name.
const Name = "envoy.filters.listener.proxy_protocol"

// Config is the filter's configuration (translated from its typed_config).
type Config struct{}

// Filter is stateless; one instance serves every socket.
type Filter struct{ cfg Config }

// New returns the filter.
func New(cfg Config) *Filter { return &Filter{cfg: cfg} }

// Name implements engine.ListenerFilter.
func (*Filter) Name() string { return Name }

// OnAccept implements engine.ListenerFilter. TODO(issue 3).
func (*Filter) OnAccept(s *engine.ActiveSocket) engine.FilterStatus { return engine.Continue }

// MaxReadBytes implements engine.ListenerFilter.
func (*Filter) MaxReadBytes() int { return 0 }

// OnData implements engine.ListenerFilter.
func (*Filter) OnData(*engine.ActiveSocket, []byte) engine.FilterStatus { return engine.Continue }

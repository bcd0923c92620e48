// Package originaldst is envoy.filters.listener.original_dst: it restores the destination
// that iptables REDIRECT/DNAT rewrote, from SO_ORIGINAL_DST.
package originaldst

import "github.com/portico-proxy/portico/engine"

// Name is the filter's Envoy name.
const Name = "envoy.filters.listener.original_dst"

// Filter is stateless; one instance serves every socket.
type Filter struct{}

// New returns the filter.
func New() *Filter { return &Filter{} }

// Name implements engine.ListenerFilter.
func (*Filter) Name() string { return Name }

// OnAccept implements engine.ListenerFilter. TODO(issue 3): SO_ORIGINAL_DST.
func (*Filter) OnAccept(s *engine.ActiveSocket) engine.FilterStatus { return engine.Continue }

// MaxReadBytes implements engine.ListenerFilter.
func (*Filter) MaxReadBytes() int { return 0 }

// OnData implements engine.ListenerFilter.
func (*Filter) OnData(*engine.ActiveSocket, []byte) engine.FilterStatus { return engine.Continue }

package manager

import (
	"net/url"

	"github.com/portico-proxy/portico/admin"
	"github.com/portico-proxy/portico/config"
	"github.com/portico-proxy/portico/engine"
)

// control is the admin's view of the running process (admin.Control): the drain and
// health-check commands and /config_dump.
type control struct{ m *Manager }

// Control is the admin's view of the process (admin.Options.Control).
func (m *Manager) Control() admin.Control { return control{m} }

// DrainListeners is Envoy's /drain_listeners: without graceful the listeners stop
// accepting now; with it the drain sequence runs first (--drain-time-s, --drain-strategy)
// and the listeners stop at its end, unless skip_exit. Connections go on in both cases.
// It returns at once; the drain goes on in the background.
func (c control) DrainListeners(o admin.DrainOptions) error {
	m := c.m
	inbound := map[string]bool{}
	if o.InboundOnly {
		for _, n := range m.cfg.InboundListeners() {
			inbound[n] = true
		}
		m.mu.Lock()
		for name, r := range m.listeners {
			if config.ListenerInbound(r.Message()) {
				inbound[name] = true
			}
		}
		m.mu.Unlock()
	}
	stop := func() {
		m.srv.StopListenersMatching(func(l *engine.Listener) bool { return !o.InboundOnly || inbound[l.Name()] })
		m.log.Info("admin: listeners stopped", "inbound_only", o.InboundOnly)
	}
	if !o.Graceful {
		go stop()
		return nil
	}
	if !m.srv.StartDrainSequence(func() {
		if !o.SkipExit {
			stop()
		}
	}) {
		return nil // a drain already under way: Envoy ignores the second request
	}
	m.log.Info("admin: drain sequence started", "drain_time", m.drainTime.String(), "skip_exit", o.SkipExit)
	return nil
}

// SetHealthCheckFailed is told of /healthcheck/fail and /healthcheck/ok (the admin has
// changed /ready already): while failed, HTTP connections of drain_type DEFAULT
// listeners close after each response, as in Envoy.
func (c control) SetHealthCheckFailed(failed bool) {
	c.m.srv.SetHealthCheckFailed(failed)
	c.m.log.Info("admin: health check state changed", "failed", failed)
}

// ConfigDump renders /config_dump from what runs.
func (c control) ConfigDump(q url.Values) ([]byte, error) {
	return config.RenderConfigDump(c.m.cfg, c.m.dumpState(), q)
}

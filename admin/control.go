package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// DrainOptions are /drain_listeners' query parameters. Envoy reads each by its presence
// alone (?graceful, ?graceful=, ?graceful=false all set it), and so does Portico.
type DrainOptions struct {
	// Graceful starts the drain sequence first (--drain-time-s, --drain-strategy): the
	// listeners keep accepting and their connections are discouraged for the drain time,
	// then the listeners stop. Without it the listeners stop at once.
	Graceful bool
	// InboundOnly limits the drain to the listeners whose traffic_direction is INBOUND
	// (Envoy's StopListenersType::InboundOnly); the others are left alone.
	InboundOnly bool
	// SkipExit leaves the listeners running at the end of a graceful drain: only the
	// drain sequence runs. Envoy refuses it without Graceful ("skip_exit requires
	// graceful"), and so does the handler, so the hook never sees SkipExit alone.
	SkipExit bool
}

// Control is what the admin's state-changing endpoints and /config_dump ask of the
// program that owns the listeners (cmd/portico's listener manager). The admin only
// parses requests and calls it; every method may be called from any goroutine, several
// at once.
type Control interface {
	// DrainListeners is POST /drain_listeners. It starts what o asks and returns, as
	// Envoy answers at once and drains in the background; it must not wait out a
	// graceful drain. A drain already under way that covers o is not an error (Envoy
	// answers OK). An error answers 500 with its message.
	DrainListeners(o DrainOptions) error
	// SetHealthCheckFailed is POST /healthcheck/fail (true) and /healthcheck/ok (false),
	// called after /ready has changed; it is how health_check filters would learn it.
	SetHealthCheckFailed(failed bool)
	// ConfigDump renders GET /config_dump for its query (resource, mask, name_regex) as
	// JSON. An error answers 400 with its message, or the status its HTTPStatus method
	// gives if it has one (404 for an unknown resource, as Envoy).
	ConfigDump(q url.Values) (body []byte, err error)
}

// noControl answers the endpoints that need a Control when Options.Control is nil: the
// server runs, but nothing here can drain its listeners or dump its configuration.
const noControl = "not available: this admin server has no listener manager\n"

// requirePost answers Envoy's 405 to anything but POST on an endpoint that changes the
// server's state, so that a crawler or a prefetching browser cannot drain a proxy. It
// reports whether the request may go on.
func requirePost(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodPost {
		return true
	}
	w.Header().Set("Allow", http.MethodPost)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusMethodNotAllowed)
	fmt.Fprintf(w, "Method %s not allowed, POST required.", r.Method)
	return false
}

// ok is Envoy's answer to a command that was done.
func ok(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, "OK\n")
}

func (a *Admin) healthcheckFail(w http.ResponseWriter, r *http.Request) {
	if requirePost(w, r) {
		a.setHealthCheckFailed(true)
		ok(w)
	}
}

func (a *Admin) healthcheckOK(w http.ResponseWriter, r *http.Request) {
	if requirePost(w, r) {
		a.setHealthCheckFailed(false)
		ok(w)
	}
}

// setHealthCheckFailed changes /ready (and server.live, server.state) first, then tells
// the Control, so that whatever the Control does already sees the new state.
func (a *Admin) setHealthCheckFailed(failed bool) {
	if a.hcFailed.Swap(failed) != failed {
		a.log.Info("admin: health check state changed", "failed", failed, "state", a.State().String())
	}
	if a.control != nil {
		a.control.SetHealthCheckFailed(failed)
	}
}

// HealthCheckFailed reports whether /healthcheck/fail is in effect.
func (a *Admin) HealthCheckFailed() bool { return a.hcFailed.Load() }

func (a *Admin) drainListeners(w http.ResponseWriter, r *http.Request) {
	if !requirePost(w, r) {
		return
	}
	if a.control == nil {
		http.Error(w, noControl, http.StatusNotImplemented)
		return
	}
	q := r.URL.Query()
	o := DrainOptions{Graceful: q.Has("graceful"), InboundOnly: q.Has("inboundonly"), SkipExit: q.Has("skip_exit")}
	if o.SkipExit && !o.Graceful {
		// Without a drain sequence there would be nothing left to do.
		http.Error(w, "skip_exit requires graceful", http.StatusBadRequest)
		return
	}
	if err := a.control.DrainListeners(o); err != nil {
		http.Error(w, "drain_listeners: "+err.Error(), http.StatusInternalServerError)
		return
	}
	ok(w)
}

func (a *Admin) configDump(w http.ResponseWriter, r *http.Request) {
	if a.control == nil {
		http.Error(w, noControl, http.StatusNotImplemented)
		return
	}
	body, err := a.control.ConfigDump(r.URL.Query())
	if err != nil {
		code := http.StatusBadRequest
		var hs interface{ HTTPStatus() int }
		if errors.As(err, &hs) && hs.HTTPStatus() >= 400 && hs.HTTPStatus() < 600 {
			code = hs.HTTPStatus()
		}
		http.Error(w, err.Error(), code)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// The JSON form of /listeners: envoy.admin.v3.Listeners, field for field, written with
// encoding/json (the admin sees no protobuf). Zero values are left out, as protobuf's
// JSON does (port_value of an unbound port 0).
type (
	listenersJSON struct {
		ListenerStatuses []listenerStatusJSON `json:"listener_statuses,omitempty"`
	}
	listenerStatusJSON struct {
		Name         string      `json:"name,omitempty"`
		LocalAddress addressJSON `json:"local_address"`
	}
	addressJSON struct {
		SocketAddress socketAddressJSON `json:"socket_address"`
	}
	socketAddressJSON struct {
		Address   string `json:"address,omitempty"`
		PortValue uint16 `json:"port_value,omitempty"`
	}
)

// listenersAsJSON is /listeners?format=json, pretty-printed as Envoy prints it (one space
// per level).
func (a *Admin) listenersAsJSON(w http.ResponseWriter) {
	var out listenersJSON
	for _, l := range a.srv.Listeners() {
		ap := l.Address()
		out.ListenerStatuses = append(out.ListenerStatuses, listenerStatusJSON{
			Name:         l.Name(),
			LocalAddress: addressJSON{socketAddressJSON{Address: ap.Addr().String(), PortValue: ap.Port()}},
		})
	}
	b, err := json.MarshalIndent(out, "", " ")
	if err != nil { // plain structs of strings and numbers: cannot happen
		http.Error(w, "listeners: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}

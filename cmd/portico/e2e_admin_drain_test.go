package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// adminDrainTmpl has two HTTP listeners answered by a direct_response: "default" (drain_type
// DEFAULT) and "modify_only" (drain_type MODIFY_ONLY).
const adminDrainTmpl = `
admin: {address: {socket_address: {address: 127.0.0.1, port_value: {{.Admin}}}}}
static_resources:
  listeners:
{{range .Listeners}}
  - name: {{.Name}}
    drain_type: {{.Type}}
    address: {socket_address: {address: 127.0.0.1, port_value: {{.Port}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {{.Name}}
          route_config:
            virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200, body: {inline_string: "ok\n"}}}]}]
          http_filters: [{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]
{{end}}
`

// keepAlive is one HTTP/1.1 client connection sending requests one at a time.
type keepAlive struct {
	c net.Conn
	r *bufio.Reader
}

func dialKeepAlive(t *testing.T, port int) *keepAlive {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAlive{c, bufio.NewReader(c)}
}

// get sends a request and reports whether the response said "connection: close".
func (k *keepAlive) get(t *testing.T) (closing bool) {
	t.Helper()
	k.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := k.c.Write([]byte("GET / HTTP/1.1\r\nhost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Close
}

func adminPost(t *testing.T, p *proc, path string) {
	t.Helper()
	resp, err := http.Post("http://"+p.admin+path, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %d", path, resp.StatusCode)
	}
}

// TestHealthcheckFailDrainsHTTP: while /healthcheck/fail holds, every response on a
// drain_type DEFAULT listener says "connection: close" (Envoy's drain manager) and /ready
// is 503; a MODIFY_ONLY listener is not drained; /healthcheck/ok undoes it.
func TestHealthcheckFailDrainsHTTP(t *testing.T) {
	def, mod := freePort(t), freePort(t)
	params := map[string]any{"Admin": freePort(t), "Listeners": []map[string]any{
		{"Name": "default", "Type": "DEFAULT", "Port": def}, {"Name": "modify_only", "Type": "MODIFY_ONLY", "Port": mod}}}
	p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", params["Admin"]), "-c", writeConfig(t, adminDrainTmpl, params))
	k := dialKeepAlive(t, def)
	if k.get(t) {
		t.Fatal("connection: close before any drain")
	}
	adminPost(t, p, "/healthcheck/fail")
	if code, body, _ := p.get("/ready"); code != 503 || !strings.Contains(body, "DRAINING") {
		t.Fatalf("/ready after /healthcheck/fail: %d %q", code, body)
	}
	if !k.get(t) {
		t.Fatal("a DEFAULT listener's response lacks connection: close while health checks fail")
	}
	if dialKeepAlive(t, mod).get(t) {
		t.Fatal("a MODIFY_ONLY listener was drained by /healthcheck/fail")
	}
	adminPost(t, p, "/healthcheck/ok")
	if code, _, _ := p.get("/ready"); code != 200 {
		t.Fatalf("/ready after /healthcheck/ok: %d", code)
	}
	if dialKeepAlive(t, def).get(t) {
		t.Fatal("connection: close after /healthcheck/ok")
	}
}

// TestDrainListeners: /drain_listeners stops accepting at once while established
// connections go on; with graceful, the drain sequence (immediate strategy here) tells
// HTTP connections to close, and the listeners stop at its end.
func TestDrainListeners(t *testing.T) {
	refused := func(port int) bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	}
	t.Run("at once", func(t *testing.T) {
		port := freePort(t)
		params := map[string]any{"Admin": freePort(t), "Listeners": []map[string]any{{"Name": "default", "Type": "DEFAULT", "Port": port}}}
		p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", params["Admin"]), "-c", writeConfig(t, adminDrainTmpl, params))
		k := dialKeepAlive(t, port)
		adminPost(t, p, "/drain_listeners")
		eventually(t, "the listener stopped", func() bool { return refused(port) })
		if k.get(t) {
			t.Fatal("a non-graceful drain told the connection to close")
		}
	})
	t.Run("graceful", func(t *testing.T) {
		port := freePort(t)
		params := map[string]any{"Admin": freePort(t), "Listeners": []map[string]any{{"Name": "default", "Type": "DEFAULT", "Port": port}}}
		p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", params["Admin"]), "-c", writeConfig(t, adminDrainTmpl, params),
			"--drain-time-s", "2", "--drain-strategy", "immediate")
		k := dialKeepAlive(t, port)
		adminPost(t, p, "/drain_listeners?graceful")
		if !k.get(t) {
			t.Fatal("no connection: close during the graceful drain")
		}
		if refused(port) {
			t.Fatal("the listener stopped before the drain time")
		}
		eventually(t, "the listener stopped after the drain time", func() bool { return refused(port) })
	})
}

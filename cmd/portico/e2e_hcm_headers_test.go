package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// clientFrom is a keep-alive client whose connections come from the loopback address
// src (127.0.0.2 is not an "internal" address for Envoy, unlike 127.0.0.1).
func clientFrom(src string) *http.Client {
	c := hcmClient()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
	return c
}

func joined(seen echoSeen, k string) string { return strings.Join(seen.Header[k], ",") }

// xffList splits an x-forwarded-for value into its addresses.
func xffList(v string) []string {
	var out []string
	for _, a := range strings.Split(v, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// TestHCMForwardedHeaders: x-forwarded-for, x-forwarded-proto and x-request-id as the
// backend sees them, with use_remote_address false (the default) and true.
func TestHCMForwardedHeaders(t *testing.T) {
	be := newEchoBackend(t, "a")
	clusters := []hcmCluster{{Name: "a", Ports: []int{be.Port}}}

	t.Run("use_remote_address false", func(t *testing.T) {
		h := startHCM(t, hcmSetup{Clusters: clusters})
		cl := clientFrom("127.0.0.2")
		base := "http://" + h.Addr
		_, seen := doEcho(t, cl, newReq(t, "GET", base+"/", "h.example"))
		if xff := joined(seen, "X-Forwarded-For"); xff != "" {
			t.Errorf("x-forwarded-for %q added without use_remote_address", xff)
		}
		if p := joined(seen, "X-Forwarded-Proto"); p != "http" {
			t.Errorf("x-forwarded-proto %q, want http", p)
		}
		id1 := joined(seen, "X-Request-Id")
		if !uuidRE.MatchString(id1) {
			t.Errorf("generated x-request-id %q is not a v4 UUID", id1)
		}
		_, seen = doEcho(t, cl, newReq(t, "GET", base+"/", "h.example"))
		if id2 := joined(seen, "X-Request-Id"); id2 == id1 || !uuidRE.MatchString(id2) {
			t.Errorf("second x-request-id %q (first %q)", id2, id1)
		}
		_, seen = doEcho(t, cl, newReq(t, "GET", base+"/", "h.example",
			"X-Request-Id: client-chosen-id", "X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https"))
		if got := joined(seen, "X-Request-Id"); got != "client-chosen-id" {
			t.Errorf("x-request-id %q, want the client's (preserved when use_remote_address is false)", got)
		}
		if got := joined(seen, "X-Forwarded-For"); got != "203.0.113.7" {
			t.Errorf("x-forwarded-for %q, want the client's 203.0.113.7 untouched", got)
		}
		if got := joined(seen, "X-Forwarded-Proto"); got != "https" {
			t.Errorf("x-forwarded-proto %q, want the client's https kept", got)
		}
	})

	t.Run("use_remote_address true", func(t *testing.T) {
		h := startHCM(t, hcmSetup{Clusters: clusters, HCM: "use_remote_address: true"})
		cl := clientFrom("127.0.0.2")
		base := "http://" + h.Addr
		_, seen := doEcho(t, cl, newReq(t, "GET", base+"/", "h.example"))
		if got := xffList(joined(seen, "X-Forwarded-For")); len(got) != 1 || got[0] != "127.0.0.2" {
			t.Errorf("x-forwarded-for %q, want 127.0.0.2", got)
		}
		_, seen = doEcho(t, cl, newReq(t, "GET", base+"/", "h.example",
			"X-Forwarded-For: 203.0.113.7, 198.51.100.1", "X-Forwarded-Proto: https", "X-Request-Id: client-chosen-id"))
		if got := xffList(joined(seen, "X-Forwarded-For")); strings.Join(got, " ") != "203.0.113.7 198.51.100.1 127.0.0.2" {
			t.Errorf("x-forwarded-for %q, want the client's list then 127.0.0.2", got)
		}
		if got := joined(seen, "X-Forwarded-Proto"); got != "http" {
			t.Errorf("x-forwarded-proto %q, want http (an untrusted client's value is overwritten)", got)
		}
		if got := joined(seen, "X-Request-Id"); got == "client-chosen-id" || !uuidRE.MatchString(got) {
			t.Errorf("x-request-id %q from an external client at the edge, want a fresh UUID", got)
		}

		// nginx sees the same list.
		curl := requireTool(t, "curl")
		ng := nginxEcho(t)
		h2 := startHCM(t, hcmSetup{Clusters: []hcmCluster{{Name: "nginx", Ports: []int{ng}}}, HCM: "use_remote_address: true"})
		out, err := exec.Command(curl, "-sS", "--max-time", "10", "--interface", "127.0.0.2", "-H", "X-Forwarded-For: 10.9.8.7",
			fmt.Sprintf("http://%s/xff", h2.Addr)).CombinedOutput()
		if err != nil || !regexp.MustCompile(`^GET /xff 127\.0\.0\.1:\d+ 10\.9\.8\.7, ?127\.0\.0\.2\n$`).Match(out) {
			t.Errorf("nginx echo through use_remote_address: %q (%v)", out, err)
		}
	})

	t.Run("preserve_external_request_id", func(t *testing.T) {
		h := startHCM(t, hcmSetup{Clusters: clusters, HCM: "use_remote_address: true\npreserve_external_request_id: true\nalways_set_request_id_in_response: true"})
		resp, seen := doEcho(t, clientFrom("127.0.0.2"), newReq(t, "GET", "http://"+h.Addr+"/", "h.example", "X-Request-Id: client-chosen-id"))
		if got := joined(seen, "X-Request-Id"); got != "client-chosen-id" {
			t.Errorf("x-request-id %q, want client-chosen-id", got)
		}
		if got := resp.Header.Get("X-Request-Id"); got != "client-chosen-id" {
			t.Errorf("always_set_request_id_in_response: client saw %q", got)
		}
	})
}

// TestHCMHopByHop: the hop-by-hop request headers stop at portico (TE keeps only
// "trailers"), and so do the response's.
func TestHCMHopByHop(t *testing.T) {
	be := newEchoBackend(t, "a")
	h := startHCM(t, hcmSetup{Clusters: []hcmCluster{{Name: "a", Ports: []int{be.Port}}}})
	c, br := rawConn(t, h.Addr)
	fmt.Fprint(c, "GET /?hdr=Keep-Alive:timeout%3D9&hdr=Proxy-Connection:keep-alive&hdr=Upgrade:foo&hdr=X-End:kept HTTP/1.1\r\n"+
		"Host: h.example\r\n"+
		"Connection: keep-alive, X-Custom\r\n"+
		"Keep-Alive: timeout=5\r\n"+
		"Proxy-Connection: keep-alive\r\n"+
		"TE: trailers, deflate;q=0.5\r\n"+
		"Upgrade: foo\r\n"+
		"X-Custom: v\r\n"+
		"X-End: end\r\n"+
		"\r\n")
	resp, body := readResp(t, br, "GET")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var seen echoSeen
	decodeSeen(t, body, &seen)
	for _, k := range []string{"Keep-Alive", "Proxy-Connection", "Upgrade"} {
		if v, ok := seen.Header[k]; ok {
			t.Errorf("backend saw hop-by-hop %s: %q", k, v)
		}
	}
	if v := joined(seen, "Connection"); strings.Contains(strings.ToLower(v), "x-custom") {
		t.Errorf("backend saw the client's Connection header %q", v)
	}
	if v := joined(seen, "Te"); v != "trailers" {
		t.Errorf("backend saw TE %q, want trailers", v)
	}
	if v := joined(seen, "X-End"); v != "end" {
		t.Errorf("backend saw X-End %q", v)
	}
	for _, k := range []string{"Keep-Alive", "Proxy-Connection", "Upgrade"} {
		if v := resp.Header.Values(k); len(v) > 0 {
			t.Errorf("client saw the backend's hop-by-hop %s: %q", k, v)
		}
	}
	if resp.Header.Get("X-End") != "kept" {
		t.Errorf("client lost an end-to-end header: %v", resp.Header)
	}
	// The connection is still usable.
	fmt.Fprint(c, "GET /again HTTP/1.1\r\nHost: h.example\r\n\r\n")
	if resp, _ := readResp(t, br, "GET"); resp.StatusCode != 200 {
		t.Errorf("second request on the connection: %d", resp.StatusCode)
	}
}

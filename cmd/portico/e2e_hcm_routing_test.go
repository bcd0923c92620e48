package main

import (
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// routingRoutes is a route_config exercising virtual-host selection, every path
// specifier, header and query matchers, and every action.
const routingRoutes = `
name: local
request_headers_to_add:
- header: { key: x-rc-req, value: rc }
response_headers_to_add:
- header: { key: x-rc-resp, value: rc }
response_headers_to_remove: [x-secret-rc]
virtual_hosts:
- name: exact
  domains: ["exact.example", "exact-port.example:8080"]
  request_headers_to_add:
  - header: { key: x-vh-req, value: exact }
  response_headers_to_add:
  - header: { key: x-vh-resp, value: exact }
  routes:
  - match: { prefix: "/" }
    route: { cluster: a }
- name: suffix
  domains: ["*.suffix.example"]
  routes:
  - match: { prefix: "/" }
    route: { cluster: b }
- name: prefix
  domains: ["prefix.*"]
  routes:
  - match: { prefix: "/" }
    route: { cluster: c }
- name: main
  domains: ["*"]
  response_headers_to_remove: [x-secret-vh]
  routes:
  - match: { path: "/exact" }
    route: { cluster: b }
  - match: { prefix: "/CaseI", case_sensitive: false }
    route: { cluster: b }
  - match: { prefix: "/CaseS" }
    route: { cluster: c }
  - match: { safe_regex: { regex: "/re/[0-9]+" } }
    route: { cluster: c }
  - match: { path_separated_prefix: "/sep" }
    route: { cluster: b }
  - match:
      prefix: "/hdr"
      headers:
      - name: x-select
        string_match: { exact: b }
    route: { cluster: b }
  - match:
      prefix: "/hdr"
      headers:
      - name: x-select
        present_match: true
    route: { cluster: c }
  - match:
      prefix: "/q"
      query_parameters:
      - name: pick
        string_match: { exact: c }
    route: { cluster: c }
  - match: { prefix: "/weighted" }
    route:
      weighted_clusters:
        clusters:
        - { name: a, weight: 50 }
        - { name: b, weight: 50 }
  - match: { prefix: "/byheader" }
    route: { cluster_header: x-cluster }
  - match: { prefix: "/old/" }
    route: { cluster: a, prefix_rewrite: "/new/" }
  - match: { prefix: "/rx/" }
    route:
      cluster: a
      regex_rewrite:
        pattern: { regex: "^/rx/([a-z]+)/([a-z]+)$" }
        substitution: "/swapped/\\2/\\1"
  - match: { prefix: "/hostlit" }
    route: { cluster: a, host_rewrite_literal: rewritten.example }
  - match: { prefix: "/redir/https" }
    redirect: { https_redirect: true }
  - match: { prefix: "/redir/host" }
    redirect: { host_redirect: other.example, response_code: FOUND }
  - match: { prefix: "/redir/path" }
    redirect: { path_redirect: "/elsewhere", strip_query: true, response_code: TEMPORARY_REDIRECT }
  - match: { prefix: "/redir/prefix/" }
    redirect: { prefix_rewrite: "/moved/", response_code: PERMANENT_REDIRECT }
  - match: { prefix: "/direct" }
    direct_response: { status: 418, body: { inline_string: "short and stout\n" } }
  - match: { prefix: "/mut" }
    route: { cluster: a }
    request_headers_to_add:
    - header: { key: x-append, value: route }
    - header: { key: x-add-if-absent, value: route }
      append_action: ADD_IF_ABSENT
    - header: { key: x-overwrite, value: route }
      append_action: OVERWRITE_IF_EXISTS_OR_ADD
    - header: { key: x-overwrite-if-exists, value: route }
      append_action: OVERWRITE_IF_EXISTS
    - header: { key: x-client, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" }
    request_headers_to_remove: [x-drop-me]
    response_headers_to_add:
    - header: { key: x-route-resp, value: route }
    - header: { key: x-from-backend, value: route }
      append_action: OVERWRITE_IF_EXISTS_OR_ADD
    response_headers_to_remove: [x-secret-route]
  - match: { prefix: "/" }
    route: { cluster: a }
`

// TestHCMRouting: curl and a Go client through the binary, with the route table above,
// against three echo backends that say who they are and what they received.
func TestHCMRouting(t *testing.T) {
	a, b, c := newEchoBackend(t, "a"), newEchoBackend(t, "b"), newEchoBackend(t, "c")
	h := startHCM(t, hcmSetup{Routes: routingRoutes, Clusters: []hcmCluster{
		{Name: "a", Ports: []int{a.Port}}, {Name: "b", Ports: []int{b.Port}}, {Name: "c", Ports: []int{c.Port}}}})
	cl := hcmClient()
	base := "http://" + h.Addr

	t.Run("virtual hosts", func(t *testing.T) {
		for _, tc := range []struct{ host, want string }{
			{"exact.example", "a"},
			{"EXACT.example", "a"}, // domains compare case-insensitively
			{"exact-port.example:8080", "a"},
			{"exact-port.example", "a"}, // "*" catches it; main's "/" is a too
			{"x.suffix.example", "b"},
			{"deep.x.suffix.example", "b"},
			{"suffix.example", "a"}, // "*.suffix.example" needs a label before it
			{"prefix.anything", "c"},
			{"prefix.anything:9999", "c"},
			{"unknown.example", "a"},
		} {
			_, seen := doEcho(t, cl, newReq(t, "GET", base+"/vh", tc.host))
			if seen.Backend != tc.want {
				t.Errorf("Host %s: backend %q, want %q", tc.host, seen.Backend, tc.want)
			}
		}
		// The exact vhost's own header additions say it was chosen (not "*").
		resp, seen := doEcho(t, cl, newReq(t, "GET", base+"/vh", "exact.example"))
		if got := strings.Join(seen.Header["X-Vh-Req"], ","); got != "exact" || resp.Header.Get("X-Vh-Resp") != "exact" {
			t.Errorf("exact vhost: x-vh-req %q at the backend, x-vh-resp %q at the client", got, resp.Header.Get("X-Vh-Resp"))
		}
		_, seen = doEcho(t, cl, newReq(t, "GET", base+"/vh", "exact-port.example"))
		if len(seen.Header["X-Vh-Req"]) != 0 {
			t.Errorf("exact-port.example without its port matched the vhost listing it with :8080")
		}
	})

	t.Run("path matchers", func(t *testing.T) {
		for _, tc := range []struct {
			path, want string
			hdrs       []string
		}{
			{path: "/exact", want: "b"},
			{path: "/exact?x=1", want: "b"}, // the query is not part of the path
			{path: "/exact/more", want: "a"},
			{path: "/exactly", want: "a"},
			{path: "/casei/x", want: "b"},
			{path: "/CASEI", want: "b"},
			{path: "/CaseS", want: "c"},
			{path: "/cases", want: "a"}, // case-sensitive by default
			{path: "/re/123", want: "c"},
			{path: "/re/123?q=z", want: "c"},
			{path: "/re/12a", want: "a"}, // the regex must match the whole path
			{path: "/sep", want: "b"},
			{path: "/sep/x", want: "b"},
			{path: "/sep?x", want: "b"},
			{path: "/separate", want: "a"},
			{path: "/hdr", want: "b", hdrs: []string{"X-Select: b"}},
			{path: "/hdr", want: "c", hdrs: []string{"X-Select: other"}},
			{path: "/hdr", want: "a"},
			{path: "/q?pick=c", want: "c"},
			{path: "/q?a=1&pick=c", want: "c"},
			{path: "/q?pick=cc", want: "a"},
			{path: "/q", want: "a"},
			{path: "/byheader", want: "b", hdrs: []string{"X-Cluster: b"}},
			{path: "/byheader", want: "c", hdrs: []string{"X-Cluster: c"}},
		} {
			_, seen := doEcho(t, cl, newReq(t, "GET", base+tc.path, "any.example", tc.hdrs...))
			if seen.Backend != tc.want {
				t.Errorf("GET %s %v: backend %q, want %q", tc.path, tc.hdrs, seen.Backend, tc.want)
			}
		}
		// cluster_header naming no cluster: 503 (cluster_not_found_response_code).
		resp, _ := doEcho(t, cl, newReq(t, "GET", base+"/byheader", "any.example", "X-Cluster: nope"))
		if resp.StatusCode != 503 {
			t.Errorf("cluster_header to an unknown cluster: %d, want 503", resp.StatusCode)
		}
		resp, _ = doEcho(t, cl, newReq(t, "GET", base+"/byheader", "any.example"))
		if resp.StatusCode != 503 {
			t.Errorf("cluster_header absent: %d, want 503", resp.StatusCode)
		}
	})

	t.Run("weighted clusters", func(t *testing.T) {
		n := map[string]int{}
		for i := 0; i < 200; i++ {
			_, seen := doEcho(t, cl, newReq(t, "GET", base+"/weighted", "any.example"))
			n[seen.Backend]++
		}
		if n["a"] == 0 || n["b"] == 0 || n["a"]+n["b"] != 200 {
			t.Errorf("weighted 50/50 over 200 requests: %v", n)
		}
	})

	t.Run("rewrites", func(t *testing.T) {
		for _, tc := range []struct{ path, uri, host string }{
			{"/old/x?k=v", "/new/x?k=v", "any.example"},
			{"/rx/abc/def", "/swapped/def/abc", "any.example"},
			{"/rx/abc/def?z=1", "/swapped/def/abc?z=1", "any.example"},
			{"/hostlit/p", "/hostlit/p", "rewritten.example"},
		} {
			_, seen := doEcho(t, cl, newReq(t, "GET", base+tc.path, "any.example"))
			if seen.URI != tc.uri || seen.Host != tc.host {
				t.Errorf("GET %s: backend saw %q host %q, want %q host %q", tc.path, seen.URI, seen.Host, tc.uri, tc.host)
			}
			if tc.host == "rewritten.example" && strings.Join(seen.Header["X-Forwarded-Host"], ",") != "" {
				// Envoy adds x-forwarded-host only with append_x_forwarded_host.
				t.Errorf("host_rewrite_literal: unexpected x-forwarded-host %v", seen.Header["X-Forwarded-Host"])
			}
		}
	})

	t.Run("redirects", func(t *testing.T) {
		curl := requireTool(t, "curl")
		for _, tc := range []struct{ path, host, want string }{
			{"/redir/https/a?q=1", "r.example", "301 https://r.example/redir/https/a?q=1"},
			{"/redir/host/a?q=1", "r.example", "302 http://other.example/redir/host/a?q=1"},
			{"/redir/path/a?q=1", "r.example", "307 http://r.example/elsewhere"},
			{"/redir/prefix/a/b?q=1", "r.example", "308 http://r.example/moved/a/b?q=1"},
		} {
			out, err := exec.Command(curl, "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
				"-H", "Host: "+tc.host, base+tc.path).CombinedOutput()
			if err != nil || string(out) != tc.want {
				t.Errorf("curl %s (Host %s): %q (%v), want %q", tc.path, tc.host, out, err, tc.want)
			}
		}
		// https_redirect drops the port of the authority only when it is the old scheme's
		// default (Envoy's processRequestHost).
		for host, want := range map[string]string{
			"r.example:80":   "301 https://r.example/redir/https",
			"r.example:8080": "301 https://r.example:8080/redir/https",
		} {
			out, err := exec.Command(curl, "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
				"-H", "Host: "+host, base+"/redir/https").CombinedOutput()
			if err != nil || string(out) != want {
				t.Errorf("https_redirect with Host %s: %q (%v), want %q", host, out, err, want)
			}
		}
	})

	t.Run("direct response", func(t *testing.T) {
		resp, err := cl.Do(newReq(t, "GET", base+"/direct", "any.example"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 418 || string(body) != "short and stout\n" {
			t.Errorf("direct_response: %d %q, want 418 %q", resp.StatusCode, body, "short and stout\n")
		}
		if resp.Header.Get("X-Rc-Resp") != "rc" {
			t.Errorf("direct_response lacks the route_config's response header: %v", resp.Header)
		}
	})

	t.Run("header mutations", func(t *testing.T) {
		req := newReq(t, "GET", base+"/mut?hdr=X-From-Backend:backend&hdr=X-Secret-Route:s&hdr=X-Secret-Vh:s&hdr=X-Secret-Rc:s&hdr=X-Keep:k",
			"any.example",
			"X-Append: client", "X-Add-If-Absent: client", "X-Overwrite: client", "X-Drop-Me: gone")
		resp, seen := doEcho(t, cl, req)
		want := map[string]string{
			"X-Append":              "client,route", // APPEND_IF_EXISTS_OR_ADD, the default
			"X-Add-If-Absent":       "client",
			"X-Overwrite":           "route",
			"X-Overwrite-If-Exists": "", // absent: not added
			"X-Drop-Me":             "",
			"X-Rc-Req":              "rc",
			"X-Client":              "127.0.0.1",
		}
		for k, v := range want {
			if got := strings.Join(seen.Header[k], ","); got != v {
				t.Errorf("backend saw %s: %q, want %q", k, got, v)
			}
		}
		for k, v := range map[string]string{
			"X-Route-Resp": "route", "X-Rc-Resp": "rc", "X-From-Backend": "route", "X-Keep": "k",
			"X-Secret-Route": "", "X-Secret-Vh": "", "X-Secret-Rc": "",
		} {
			if got := strings.Join(resp.Header.Values(k), ","); got != v {
				t.Errorf("client saw %s: %q, want %q", k, got, v)
			}
		}
		// OVERWRITE_IF_EXISTS replaces a header the client sent.
		_, seen = doEcho(t, cl, newReq(t, "GET", base+"/mut", "any.example", "X-Overwrite-If-Exists: client"))
		if got := strings.Join(seen.Header["X-Overwrite-If-Exists"], ","); got != "route" {
			t.Errorf("OVERWRITE_IF_EXISTS with the header present: %q, want route", got)
		}
	})

	t.Run("stats", func(t *testing.T) {
		s := h.stats(t)
		if s["http.ingress_http.rq_redirect"] < 5 || s["http.ingress_http.rq_direct_response"] < 1 {
			t.Errorf("rq_redirect %v rq_direct_response %v", s["http.ingress_http.rq_redirect"], s["http.ingress_http.rq_direct_response"])
		}
	})
}

// TestHCMAutoHostRewrite: auto_host_rewrite sets the authority to the endpoint's
// hostname (Envoy: STATIC endpoints with a hostname).
func TestHCMAutoHostRewrite(t *testing.T) {
	a := newEchoBackend(t, "a")
	h := startHCM(t, hcmSetup{Routes: `
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - match: { prefix: "/" }
    route: { cluster: a, auto_host_rewrite: true }
`, Clusters: []hcmCluster{{Name: "a", Ports: []int{a.Port}, Hostname: "backend-a.internal"}}})
	_, seen := doEcho(t, hcmClient(), newReq(t, "GET", "http://"+h.Addr+"/x", "front.example"))
	if seen.Host != "backend-a.internal" {
		t.Errorf("auto_host_rewrite: backend saw Host %q, want backend-a.internal", seen.Host)
	}
}

// TestHCMRoutingNginx: the nginx echo location behind a prefix_rewrite, checked with curl.
func TestHCMRoutingNginx(t *testing.T) {
	curl := requireTool(t, "curl")
	ng := nginxEcho(t)
	h := startHCM(t, hcmSetup{Routes: `
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - match: { prefix: "/api/" }
    route: { cluster: nginx, prefix_rewrite: "/v2/" }
`, Clusters: []hcmCluster{{Name: "nginx", Ports: []int{ng}}}})
	out, err := exec.Command(curl, "-sS", "--max-time", "10", "-H", "Host: shop.example",
		fmt.Sprintf("http://%s/api/items?id=7", h.Addr)).CombinedOutput()
	if err != nil || string(out) != "GET /v2/items?id=7 shop.example \n" {
		t.Errorf("curl through portico to nginx: %q (%v)", out, err)
	}
	out, _ = exec.Command(curl, "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
		fmt.Sprintf("http://%s/other", h.Addr)).CombinedOutput()
	if string(out) != "404" {
		t.Errorf("no route: %q, want 404", out)
	}
	h.expectLog(t, 2, "404 NR - /other")
}

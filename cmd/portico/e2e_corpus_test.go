package main

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/portico-proxy/portico/internal/testpki"
)

// corpusDir is the folder of public Envoy bootstraps the config tests read (see
// config/corpus_test.go), relative to this package.
const corpusDir = "../../../shared/envoy-configs"

// TestCorpusStarts starts every bootstrap of the Envoy config corpus that `portico
// validate` accepts, as an Envoy user would run it, and checks that it becomes ready and
// stops cleanly on SIGTERM. The one change made to each file is where it listens: every
// listener and the admin get free loopback-safe ports (a shared machine's fixed ports may
// be taken), and DNS clusters do not wait for their first answer (their names are other
// hosts' service names here and may take a resolver timeout to fail).
func TestCorpusStarts(t *testing.T) {
	dir := os.Getenv("PORTICO_ENVOY_CONFIGS")
	if dir == "" {
		dir = corpusDir
		// The team's layout: the repository next to ../shared; look above the checkout.
		if wd, err := os.Getwd(); err == nil {
			for d := wd; filepath.Dir(d) != d; d = filepath.Dir(d) {
				if st, err := os.Stat(filepath.Join(d, "shared", "envoy-configs")); err == nil && st.IsDir() {
					dir = filepath.Join(d, "shared", "envoy-configs")
					break
				}
			}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the Envoy config corpus is missing: %v", err)
		}
		t.Skipf("no corpus: %v", err)
	}
	started := 0
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml") && !strings.HasSuffix(name, ".json") {
			continue
		}
		path, err := filepath.Abs(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		// The certificate files a bootstrap names (relative to where Envoy runs) are its
		// project's: run it where throwaway ones stand in for them.
		work := t.TempDir()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := testpki.WriteConfigFiles(work, data); err != nil {
			t.Fatal(err)
		}
		validate := exec.Command(porticoBin, "validate", "-c", path)
		validate.Dir = work
		if err := validate.Run(); err != nil {
			continue // refused: config/corpus_test.go says for what
		}
		started++
		t.Run(name, func(t *testing.T) {
			cfg, admin, httpPorts, httpsPorts := rewriteForTest(t, path)
			p := startPorticoWith(t, "", admin, func(c *exec.Cmd) { c.Dir = work }, "-c", cfg, "--concurrency", "1", "--drain-time-s", "1")
			// Its HTTP listeners answer: with their backends absent here, what they answer
			// is the proxy's own reply (a 503 with a flag, a redirect, a direct response).
			client := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			for _, port := range httpPorts {
				resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%s/", port))
				if err != nil {
					t.Errorf("listener on port %s: %v", port, err)
					continue
				}
				resp.Body.Close()
				t.Logf("listener on port %s: %d", port, resp.StatusCode)
			}
			// Its HTTPS listeners terminate TLS (with the stand-in certificates) and answer.
			for _, hp := range httpsPorts {
				tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: hp.sni}}
				c := &http.Client{Timeout: 5 * time.Second, Transport: tr, CheckRedirect: client.CheckRedirect}
				resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%s/", hp.port))
				tr.CloseIdleConnections()
				if err != nil {
					t.Errorf("TLS listener on port %s (SNI %q): %v", hp.port, hp.sni, err)
					continue
				}
				resp.Body.Close()
				t.Logf("TLS listener on port %s: %d over %s", hp.port, resp.StatusCode, tlsVersion(resp.TLS))
			}
			if code := p.stop(t, 15*time.Second); code != 0 {
				t.Errorf("exit code %d\n%s", code, p.stderr.String())
			}
		})
	}
	t.Logf("started %d accepted bootstraps", started)
	if started == 0 {
		t.Fatal("no bootstrap of the corpus was accepted")
	}
}

// rewriteForTest writes a copy of the bootstrap at path with free ports for its listeners
// and admin (admin on 127.0.0.1, added if absent) and wait_for_warm_on_init false on DNS
// clusters; it returns the copy's path and the admin address.
func rewriteForTest(t *testing.T, path string) (cfgPath, adminAddr string, httpPorts []string, httpsPorts []tlsPort) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	host, port, _ := strings.Cut(admin, ":")
	setMap(root, "admin", mapNode("address", mapNode("socket_address",
		mapNode("address", scalar(host), "port_value", scalar(port)))))
	if sr := get(root, "static_resources"); sr != nil {
		if ls := get(sr, "listeners"); ls != nil && ls.Kind == yaml.SequenceNode {
			for _, l := range ls.Content {
				if sa := get(get(l, "address"), "socket_address"); sa != nil {
					port := fmt.Sprint(freePort(t))
					setMap(sa, "port_value", scalar(port))
					// Listeners that bind (not bind_to_port: false), on an address this
					// host has, speaking plain HTTP to the proxy.
					b, _ := yaml.Marshal(l)
					addr := get(sa, "address")
					if strings.Contains(string(b), "http_connection_manager") && !strings.Contains(string(b), "transport_socket") &&
						!strings.Contains(string(b), "bind_to_port: false") && addr != nil &&
						(addr.Value == "0.0.0.0" || addr.Value == "127.0.0.1" || addr.Value == "::") {
						httpPorts = append(httpPorts, port)
					}
					if strings.Contains(string(b), "http_connection_manager") && strings.Contains(string(b), "DownstreamTlsContext") &&
						!strings.Contains(string(b), "bind_to_port: false") {
						httpsPorts = append(httpsPorts, tlsPort{port: port, sni: firstServerName(l)})
					}
				}
			}
		}
		if cs := get(sr, "clusters"); cs != nil && cs.Kind == yaml.SequenceNode {
			for _, c := range cs.Content {
				if typ := get(c, "type"); typ != nil && strings.Contains(strings.ToUpper(typ.Value), "DNS") {
					setMap(c, "wait_for_warm_on_init", scalar("false"))
				}
			}
		}
	}
	// Its management server is not here: start after a short initial fetch (the
	// same start-up Envoy makes when initial_fetch_timeout passes) rather than the
	// default 15 s per subscription.
	if dr := get(root, "dynamic_resources"); dr != nil {
		for _, k := range []string{"lds_config", "cds_config"} {
			if cs := get(dr, k); cs != nil && cs.Kind == yaml.MappingNode && get(cs, "path") == nil && get(cs, "path_config_source") == nil {
				setMap(cs, "initial_fetch_timeout", scalar("1s"))
			}
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(path))
	if strings.HasSuffix(dst, ".json") {
		dst = strings.TrimSuffix(dst, ".json") + ".yaml"
	}
	if err := os.WriteFile(dst, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst, admin, httpPorts, httpsPorts
}

// tlsPort is a listener that terminates TLS for HTTP, and a name its chains match.
type tlsPort struct{ port, sni string }

// firstServerName is the first filter_chain_match.server_names entry under n, if any.
func firstServerName(n *yaml.Node) string {
	if n == nil {
		return ""
	}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "server_names" {
				v := n.Content[i+1]
				if v.Kind == yaml.SequenceNode && len(v.Content) > 0 {
					return strings.Replace(v.Content[0].Value, "*.", "www.", 1)
				}
				return strings.Replace(v.Value, "*.", "www.", 1)
			}
		}
	}
	for _, c := range n.Content {
		if s := firstServerName(c); s != "" {
			return s
		}
	}
	return ""
}

func tlsVersion(cs *tls.ConnectionState) string {
	if cs == nil {
		return "plaintext"
	}
	return tls.VersionName(cs.Version)
}

func get(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func setMap(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, scalar(key), v)
}

func scalar(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: v} }

func mapNode(kv ...any) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i+1 < len(kv); i += 2 {
		v, ok := kv[i+1].(*yaml.Node)
		if !ok {
			v = scalar(fmt.Sprint(kv[i+1]))
		}
		n.Content = append(n.Content, scalar(kv[i].(string)), v)
	}
	return n
}

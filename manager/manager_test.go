package manager

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-proxy/portico/config"
	"github.com/portico-proxy/portico/engine"
)

// echoListener is an LDS listener whose one chain (named chain) echoes.
func echoListener(name string, port int, chain string) string {
	return fmt.Sprintf(`- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: %s
  address: {socket_address: {address: 127.0.0.1, port_value: %d}}
  filter_chains:
  - name: %s
    filters:
    - name: envoy.filters.network.echo
      typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo}
`, name, port, chain)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func replace(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestApplyPerResource: a version with a good and a bad listener applies the good one and
// keeps the bad one's last good version, counted as rejected and shown as a failure; the
// next good version clears it; a listener the file drops is removed. Run under -race: the
// manager's goroutine, the admin's reads and the workers.
func TestApplyPerResource(t *testing.T) {
	dir := t.TempDir()
	lds := filepath.Join(dir, "lds.yaml")
	a, b := freePort(t), freePort(t)
	replace(t, lds, "version_info: \"1\"\nresources:\n"+echoListener("a", a, "a1"))
	boot := filepath.Join(dir, "bootstrap.yaml")
	if err := os.WriteFile(boot, []byte(fmt.Sprintf(`
node: {id: node1, cluster: cluster1}
static_resources:
  clusters:
  - name: none
    load_assignment: {cluster_name: none}
dynamic_resources:
  lds_config: {path_config_source: {path: %s}, resource_api_version: V3}
`, lds)), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 2, DrainTime: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadWith(boot, 2, config.Options{Clusters: srv.ClusterRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		if err := srv.AddCluster(c); err != nil {
			t.Fatal(err)
		}
	}
	m := New(srv, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), 200*time.Millisecond)
	m.ApplyInitial()
	srv.Start()
	m.Start()
	t.Cleanup(func() { m.Stop(); srv.Close() })
	if got := len(srv.Listeners()); got != 1 {
		t.Fatalf("listeners at start: %d", got)
	}

	// a changes (in place), b is bad: a applies, b is rejected.
	bad := strings.Replace(echoListener("b", b, "b1"), "envoy.extensions.filters.network.echo.v3.Echo", "envoy.extensions.filters.network.echo.v3.Nope", 1)
	replace(t, lds, "version_info: \"2\"\nresources:\n"+echoListener("a", a, "a2")+bad)
	waitFor(t, "version 2", func() bool { return m.lm.lds.updateRejected.Value() == 1 })
	st := m.dumpState()
	if len(st.ActiveListeners) != 1 || st.ActiveListeners[0].Version != "2" || len(st.ListenerFailures) != 1 ||
		st.ListenerFailures[0].Name != "b" || !strings.Contains(st.ListenerFailures[0].Details, "Nope") || st.LDSVersion != "1" {
		t.Fatalf("after a partly bad version: %+v", st)
	}
	if m.lm.inPlace.Value() != 1 || len(srv.Listeners()) != 1 {
		t.Fatalf("in place %d, listeners %d", m.lm.inPlace.Value(), len(srv.Listeners()))
	}
	// b fixed, a dropped.
	replace(t, lds, "version_info: \"3\"\nresources:\n"+echoListener("b", b, "b1"))
	waitFor(t, "version 3", func() bool { return m.lm.lds.updateSuccess.Value() == 2 })
	st = m.dumpState()
	if len(st.ActiveListeners) != 1 || st.ActiveListeners[0].Name != "b" || len(st.ListenerFailures) != 0 || st.LDSVersion != "3" ||
		m.lm.removed.Value() != 1 || m.lm.added.Value() != 2 {
		t.Fatalf("after version 3: %+v, removed %d, added %d", st, m.lm.removed.Value(), m.lm.added.Value())
	}
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", b))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hi\n"))
	buf := make([]byte, 3)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi\n" {
		t.Fatalf("b echoes %q, %v", buf, err)
	}
}

// TestApplyListenersFromResponse: listeners that arrive as a response (xDS) rather than a
// file apply per resource the same way, and the rejection comes back in Envoy's words for
// the NACK.
func TestApplyListenersFromResponse(t *testing.T) {
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 1, DrainTime: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte("node: {id: node1, cluster: cluster1}\n"), 1)
	if err != nil {
		t.Fatal(err)
	}
	m := New(srv, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), 100*time.Millisecond)
	srv.Start()
	m.Start()
	t.Cleanup(func() { m.Stop(); srv.Close() })
	port := freePort(t)
	good := fmt.Sprintf(`{"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": "good",
		"address": {"socket_address": {"address": "127.0.0.1", "port_value": %d}},
		"filter_chains": [{"filters": [{"name": "echo", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo"}}]}]}`, port)
	bad := `{"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": "bad", "enable_mptcp": true,
		"address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}}}`
	var rs []*anypb.Any
	for _, j := range []string{good, bad} {
		a := &anypb.Any{}
		if err := protojson.Unmarshal([]byte(j), a); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, a)
	}
	u, err := config.ParseListenerResources("ads", "7", rs, 1, config.Options{Clusters: srv.ClusterRegistry(), Static: cfg}, nil)
	if err != nil {
		t.Fatal(err)
	}
	nack := m.ApplyListeners(u)
	if nack == nil || !strings.HasPrefix(nack.Error(), "Error adding/updating listener(s) ") || !strings.Contains(nack.Error(), `"bad"`) {
		t.Fatalf("NACK detail: %v", nack)
	}
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("the good listener of the response was not added: %v", err)
	}
	c.Close()
	if st := m.dumpState(); len(st.ActiveListeners) != 1 || len(st.ListenerFailures) != 1 || st.LDSVersion != "" {
		t.Fatalf("dump state %+v", st)
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestXDSExample runs the README's two terminals: examples/xds/controlplane serving
// examples/xds/resources.yaml, and Portico on examples/xds/bootstrap.yaml (their fixed
// ports replaced by free ones). A change to the file is pushed and served; a change
// Portico cannot take is NACKed and the last good version keeps serving.
func TestXDSExample(t *testing.T) {
	dir := t.TempDir()
	cpBin := filepath.Join(dir, "controlplane")
	if out, err := exec.Command("go", "build", "-o", cpBin, "../../examples/xds/controlplane").CombinedOutput(); err != nil {
		t.Fatalf("building the example control plane: %v\n%s", err, out)
	}
	cpPort, statusPort, webPort, adminPort := freePort(t), freePort(t), freePort(t), freePort(t)
	backend := serveHTTP(t, "from the backend")
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	res := strings.NewReplacer("port_value: 10082", fmt.Sprintf("port_value: %d", webPort),
		"port_value: 8080", fmt.Sprintf("port_value: %d", backend)).Replace(read("../../examples/xds/resources.yaml"))
	resPath := filepath.Join(dir, "resources.yaml")
	write := func(body string) {
		tmp := resPath + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, resPath); err != nil {
			t.Fatal(err)
		}
	}
	write(res)
	boot := strings.NewReplacer("port_value: 18000", fmt.Sprintf("port_value: %d", cpPort),
		"port_value: 9901", fmt.Sprintf("port_value: %d", adminPort)).Replace(read("../../examples/xds/bootstrap.yaml"))
	bootPath := filepath.Join(dir, "bootstrap.yaml")
	if err := os.WriteFile(bootPath, []byte(boot), 0o644); err != nil {
		t.Fatal(err)
	}

	cp := exec.Command(cpBin, "-addr", fmt.Sprintf("127.0.0.1:%d", cpPort), "-resources", resPath,
		"-status", fmt.Sprintf("127.0.0.1:%d", statusPort), "-poll", "100ms")
	var cpLog syncBuffer
	cp.Stdout, cp.Stderr = &cpLog, &cpLog
	if err := cp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cp.Process.Signal(syscall.SIGKILL)
		cp.Wait()
		if t.Failed() {
			t.Logf("control plane log:\n%s", cpLog.String())
		}
	})
	status := func() map[string]map[string]map[string]string {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/status", statusPort))
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var st map[string]map[string]map[string]string
		json.NewDecoder(resp.Body).Decode(&st)
		return st
	}
	eventually(t, "the control plane to listen", func() bool { return status() != nil })

	startPortico(t, fmt.Sprintf("127.0.0.1:%d", adminPort), "-c", bootPath)
	get := func(path string) string {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", webPort, path))
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		return b.String()
	}
	if got := get("/version"); got != "version 1\n" {
		t.Fatalf("/version: %q", got)
	}
	if got := get("/"); got != "from the backend" {
		t.Fatalf("/: %q", got)
	}
	write(strings.Replace(res, "version 1", "version 2", 1))
	eventually(t, "version 2 to be served", func() bool { return get("/version") == "version 2\n" })
	// A listener Portico cannot take: NACKed, and version 2 keeps serving.
	write(strings.Replace(strings.Replace(res, "version 1", "version 3", 1), "  name: web\n", "  name: web\n  enable_mptcp: true\n", 1))
	const lds = "type.googleapis.com/envoy.config.listener.v3.Listener"
	eventually(t, "the NACK", func() bool {
		return strings.Contains(status()["proxy-1"][lds]["error"], `(listener "web"): enable_mptcp: not supported by Portico`)
	})
	time.Sleep(200 * time.Millisecond)
	if got := get("/version"); got != "version 3\n" {
		// The route configuration of the same version is good, and applies: RDS is its
		// own resource.
		t.Fatalf("/version after the listener NACK: %q, want version 3 (the routes applied)", got)
	}
	if !strings.Contains(cpLog.String(), "msg=NACK node=proxy-1") {
		t.Fatalf("the control plane did not log the NACK")
	}
}

// serveHTTP is an HTTP server on loopback that answers every request with body; it
// returns the port.
func serveHTTP(t *testing.T, body string) int {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, body) })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

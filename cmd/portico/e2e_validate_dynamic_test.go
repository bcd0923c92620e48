package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The `portico validate` side of file-based LDS and CDS: a bootstrap's dynamic_resources
// files are read and each rejected resource is printed with its path; an LDS or CDS file
// given on its own is validated standalone.

const validateLDS = `version_info: "1"
resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: good
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
  filter_chains:
  - filters:
    - name: envoy.filters.network.tcp_proxy
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
        stat_prefix: t
        cluster: backend
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: web
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
  filter_chains:
  - filters:
    - name: envoy.filters.network.nope
      typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.nope.v3.Nope}
`

const validateCDS = `version_info: "c"
resources:
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: backend
  type: STATIC
  load_assignment:
    cluster_name: backend
    endpoints:
    - lb_endpoints:
      - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}
`

func writeTemp(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func runValidate(t *testing.T, path string) (string, int) {
	t.Helper()
	cmd := exec.Command(porticoBin, "validate", "-c", path)
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil {
		t.Fatalf("validate: %v", err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

func TestValidateDynamicResources(t *testing.T) {
	dir := t.TempDir()
	lds := writeTemp(t, dir, "lds.yaml", validateLDS)
	cds := writeTemp(t, dir, "cds.yaml", validateCDS)
	bootstrap := func(lds string) string {
		return writeTemp(t, dir, "bootstrap.yaml", fmt.Sprintf(`node: {id: node1, cluster: cluster1}
dynamic_resources:
  lds_config: {path_config_source: {path: %s}}
  cds_config: {path: %s}
`, lds, cds))
	}

	// One bad listener: validate names it and fails.
	out, code := runValidate(t, bootstrap(lds))
	want := lds + `: resources[1] (listener "web"): filter_chains[0].filters[0].typed_config: `
	if code != 1 || !strings.Contains(out, want) {
		t.Fatalf("exit %d, want 1 and %q:\n%s", code, want, out)
	}
	if strings.Contains(out, `"good"`) {
		t.Errorf("the good listener is reported:\n%s", out)
	}

	// Fixed: OK.
	fixed := writeTemp(t, dir, "lds-fixed.yaml", validateLDS[:strings.Index(validateLDS, "    - name: envoy.filters.network.nope")]+
		"    - name: envoy.filters.network.echo\n")
	out, code = runValidate(t, bootstrap(fixed))
	if code != 0 || !strings.Contains(out, "bootstrap.yaml: OK") {
		t.Fatalf("exit %d:\n%s", code, out)
	}

	// A missing file is the bootstrap's error.
	out, code = runValidate(t, bootstrap(filepath.Join(dir, "nosuch.yaml")))
	if code != 1 || !strings.Contains(out, "dynamic_resources.lds_config.path_config_source.path: file must exist") {
		t.Fatalf("exit %d:\n%s", code, out)
	}

	// A file that is not a DiscoveryResponse at all.
	broken := writeTemp(t, dir, "broken.yaml", "version_info: 1\nresources: {a: b}\n")
	out, code = runValidate(t, bootstrap(broken))
	if code != 1 || !strings.Contains(out, broken+": resources: expected a list of resources") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestValidateResourceFileStandalone(t *testing.T) {
	dir := t.TempDir()
	// An LDS file on its own: the bad listener is an error; the cluster it cannot know
	// is a warning.
	lds := writeTemp(t, dir, "lds.yaml", validateLDS)
	out, code := runValidate(t, lds)
	if code != 1 || !strings.Contains(out, lds+`: resources[1] (listener "web"): filter_chains[0].filters[0]`) ||
		!strings.Contains(out, `warning: resources[0] (listener "good"): cluster "backend" is not in this file`) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	good := writeTemp(t, dir, "good.yaml", validateLDS[:strings.Index(validateLDS, "- \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n  name: web")])
	out, code = runValidate(t, good)
	if code != 0 || !strings.Contains(out, `good.yaml: OK (1 listeners, version "1")`) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// A CDS file on its own.
	cds := writeTemp(t, dir, "cds.json", `{"version_info": "c", "resources": [
	  {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "a", "type": "STATIC"},
	  {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "b", "type": "EDS"}]}`)
	out, code = runValidate(t, cds)
	if code != 1 || !strings.Contains(out, cds+`: resources[1] (cluster "b"): eds_cluster_config.eds_config: required`) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// An EDS cluster over ads, checked without its bootstrap: a warning.
	eds := writeTemp(t, dir, "eds.json", `{"version_info": "e", "resources": [
	  {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "e", "type": "EDS", "eds_cluster_config": {"eds_config": {"ads": {}}}}]}`)
	out, code = runValidate(t, eds)
	if code != 0 || !strings.Contains(out, `warning: resources[0] (cluster "e"): eds_cluster_config.eds_config: uses ads: the bootstrap must configure dynamic_resources.ads_config`) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

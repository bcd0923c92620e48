package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/accesslog"
	"github.com/portico-proxy/portico/filters/listener/originaldst"
	"github.com/portico-proxy/portico/filters/listener/proxyprotocol"
	"github.com/portico-proxy/portico/filters/network/echo"
	"github.com/portico-proxy/portico/filters/network/tcpproxy"
)

func TestFullConfig(t *testing.T) {
	cfg, err := Load("testdata/full.yaml", 4)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	defer cfg.Close()

	if want := netip.MustParseAddrPort("127.0.0.1:9901"); cfg.Admin != want {
		t.Errorf("Admin = %v, want %v", cfg.Admin, want)
	}

	if len(cfg.Clusters) != 2 {
		t.Fatalf("%d clusters, want 2", len(cfg.Clusters))
	}
	be := cfg.Clusters[0].Config()
	if be.Name != "backend" || be.ConnectTimeout != 250*time.Millisecond || be.LBPolicy != engine.RoundRobin ||
		be.PerConnectionBufferLimit != 65536 {
		t.Errorf("backend = %+v", be)
	}
	wantEP := []engine.Endpoint{
		{Address: netip.MustParseAddrPort("127.0.0.1:20001"), Weight: 2},
		{Address: netip.MustParseAddrPort("[::1]:20002"), Weight: 1},
	}
	if len(be.Endpoints) != 2 || be.Endpoints[0] != wantEP[0] || be.Endpoints[1] != wantEP[1] {
		t.Errorf("backend endpoints = %v, want %v", be.Endpoints, wantEP)
	}
	lr := cfg.Clusters[1].Config()
	if lr.LBPolicy != engine.LeastRequest || lr.ConnectTimeout != engine.DefaultConnectTimeout ||
		lr.PerConnectionBufferLimit != engine.DefaultBufferLimit {
		t.Errorf("backend_lr = %+v", lr)
	}

	if len(cfg.Listeners) != 4 {
		t.Fatalf("%d listeners, want 4", len(cfg.Listeners))
	}
	byName := map[string]engine.ListenerConfig{}
	for _, l := range cfg.Listeners {
		byName[l.Name] = l
		if l.FilterChains == nil {
			t.Errorf("listener %s: no chain manager", l.Name)
		}
		if cfg.Chains[l.Name] == nil || engine.FilterChainManager(cfg.Chains[l.Name]) != l.FilterChains {
			t.Errorf("listener %s: Chains entry is not the listener's manager", l.Name)
		}
	}

	// Defaults.
	e := byName["echo"]
	if e.Address != netip.MustParseAddrPort("127.0.0.1:10000") || e.NoBindToPort || e.NoReusePort || e.ExactBalance ||
		e.UseOriginalDst || e.ListenerFiltersTimeout != engine.DefaultListenerFiltersTimeout ||
		e.ContinueOnListenerFiltersTimeout || e.PerConnectionBufferLimit != engine.DefaultBufferLimit ||
		e.Backlog != 0 || e.MaxAcceptPerEvent != 0 || e.Transparent || e.Freebind || len(e.ListenerFilters) != 0 {
		t.Errorf("echo listener defaults: %+v", e)
	}

	in := byName["ingress"]
	if in.Address != netip.MustParseAddrPort("0.0.0.0:10001") || !in.NoReusePort || !in.ExactBalance ||
		in.Backlog != 512 || in.MaxAcceptPerEvent != 16 || in.PerConnectionBufferLimit != 32768 ||
		in.ListenerFiltersTimeout != 5*time.Second || !in.ContinueOnListenerFiltersTimeout {
		t.Errorf("ingress listener: %+v", in)
	}
	if got := filterNames(in.ListenerFilters); got != "envoy.filters.listener.tls_inspector,envoy.filters.listener.http_inspector" {
		t.Errorf("ingress listener filters = %s", got)
	}

	vo := byName["virtual_outbound"]
	if !vo.UseOriginalDst || !vo.Transparent || !vo.Freebind || vo.ListenerFiltersTimeout != 0 {
		t.Errorf("virtual_outbound listener: %+v", vo)
	}
	// use_original_dst appends original_dst after the configured filters, as Envoy does.
	if got, want := filterNames(vo.ListenerFilters), proxyprotocol.Name+","+originaldst.Name; got != want {
		t.Errorf("virtual_outbound listener filters = %s, want %s", got, want)
	}

	v8 := byName["virtual_8080"]
	if !v8.NoBindToPort || v8.NoReusePort {
		t.Errorf("virtual_8080: NoBindToPort %v NoReusePort %v, want true false", v8.NoBindToPort, v8.NoReusePort)
	}

	// One StatsSource per tcp_proxy filter, labelled by its stat_prefix, and one per
	// access log (filesystem.*), labelled by its path.
	var prefixes, paths []string
	for _, s := range cfg.StatsSources {
		switch s.(type) {
		case *tcpproxy.Factory:
			prefixes = append(prefixes, s.StatsLabels()[0][1])
		case *accesslog.Writer:
			paths = append(paths, s.StatsLabels()[0][1])
		default:
			if s.StatsFamily() == "cluster" {
				continue // every cluster's membership_* gauges
			}
			t.Errorf("stats source %T, want *tcpproxy.Factory or *accesslog.Writer", s)
		}
	}
	if got := strings.Join(prefixes, ","); got != "tls_example,weighted,passthrough" {
		t.Errorf("tcp_proxy stat prefixes = %s", got)
	}
	if got := strings.Join(paths, ","); got != "/dev/null,/dev/stdout" {
		t.Errorf("access log paths = %s", got)
	}
}

func TestEchoChain(t *testing.T) {
	cfg, err := Parse([]byte(`
static_resources:
  listeners:
  - name: e
    address: { socket_address: { address: "::1", port_value: 7 } }
    filter_chains: [{ name: only, filters: [{ name: envoy.filters.network.echo }] }]
`), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	if cfg.Admin.IsValid() {
		t.Errorf("Admin = %v without an admin section", cfg.Admin)
	}
	l := cfg.Listeners[0]
	if l.Address != netip.MustParseAddrPort("[::1]:7") {
		t.Errorf("address %v", l.Address)
	}
	if len(cfg.StatsSources) != 0 || len(cfg.Clusters) != 0 {
		t.Errorf("unexpected stats sources or clusters: %v %v", cfg.StatsSources, cfg.Clusters)
	}
	// Reach the chain through the manager's input: the Build under test is another
	// package's, so only check that the manager exists and the listener uses it.
	if cfg.Chains["e"] == nil {
		t.Fatal("no chain manager for e")
	}
	_ = echo.Factory{}
}

// TestErrors loads each file under testdata/errors and compares the errors with the file's
// "# want: PATH: MESSAGE" lines: every wanted error must appear with exactly that path and
// a message starting with (or, for a message ending in "…", containing) the given text,
// and no other error may appear.
func TestErrors(t *testing.T) {
	files, err := filepath.Glob("testdata/errors/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			wants := wantLines(t, data)
			if len(wants) == 0 {
				t.Skip("no want lines")
			}
			cfg, err := Parse(data, 2)
			if err == nil {
				cfg.Close()
				t.Fatal("Parse succeeded")
			}
			checkErrors(t, err, wants)
		})
	}
}

type want struct{ path, msg string }

func wantLines(t *testing.T, data []byte) []want {
	var ws []want
	for _, line := range strings.Split(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, "# want: ")
		if !ok {
			continue
		}
		path, msg, ok := strings.Cut(rest, ": ")
		if !ok {
			t.Fatalf("bad want line %q", line)
		}
		ws = append(ws, want{path, msg})
	}
	return ws
}

func checkErrors(t *testing.T, err error, wants []want) {
	t.Helper()
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %T is not Errors: %v", err, err)
	}
	used := make([]bool, len(es))
	for _, w := range wants {
		found := false
		for i, e := range es {
			if !used[i] && e.Path == w.path && strings.HasPrefix(e.Msg, w.msg) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("missing error %s: %s", w.path, w.msg)
		}
	}
	for i, e := range es {
		if !used[i] {
			t.Errorf("unexpected error %q", e.Error())
		}
		if e.Path == "" {
			t.Errorf("error without a path: %q", e.Msg)
		}
	}
	if t.Failed() {
		t.Logf("all errors:\n%v", err)
	}
}

func TestYAMLSyntaxError(t *testing.T) {
	_, err := Load("testdata/errors/yaml_syntax.yaml", 1)
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 {
		t.Fatalf("want one error, got %v", err)
	}
	if es[0].Path != "line 5" || !strings.HasPrefix(es[0].Msg, "YAML: ") {
		t.Errorf("got %q, want path \"line 5\" and a YAML message", es[0].Error())
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml", 1)
	if err == nil || !strings.Contains(err.Error(), "does-not-exist.yaml") {
		t.Errorf("err = %v, want one naming the file", err)
	}
}

func TestBadDocuments(t *testing.T) {
	for _, tc := range []struct{ doc, msg string }{
		{"", "the configuration is empty"},
		{"- a\n- b\n", "the configuration must be a mapping"},
	} {
		_, err := Parse([]byte(tc.doc), 1)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Parse(%q) = %v, want %q", tc.doc, err, tc.msg)
		}
	}
	if _, err := Parse([]byte("{}"), 0); err == nil {
		t.Error("Parse with 0 workers succeeded")
	}
}

// TestAllowlistNames keeps the supported table honest: every message and field it names
// must exist, so a typo there cannot silently reject (or accept) a field.
func TestAllowlistNames(t *testing.T) {
	for msg, fields := range supported {
		md := descriptorByName(t, string(msg))
		if md == nil {
			continue
		}
		for _, f := range fields {
			if md.Fields().ByName(f) == nil {
				t.Errorf("%s has no field %s", msg, f)
			}
		}
	}
	for slot, types := range anySlots {
		for _, typ := range types {
			descriptorByName(t, typ)
		}
		if supportedFields(slot.Parent()) == nil {
			t.Errorf("any slot %s: its message is not in the supported table", slot)
		}
	}
}

func filterNames(fs []engine.ListenerFilter) string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.Name()
	}
	return strings.Join(names, ",")
}

func descriptorByName(t *testing.T, name string) protoreflect.MessageDescriptor {
	t.Helper()
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return nil
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		t.Errorf("%s is not a message", name)
		return nil
	}
	return md
}

// TestAccessLogWriters checks that the access-log writers a configuration opens are handed
// back for closing (Parse closes them itself when the configuration has errors).
func TestAccessLogWriters(t *testing.T) {
	cfg, err := Load("testdata/full.yaml", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Closers) != 2 { // the file log and the stdout log
		t.Errorf("%d closers, want 2", len(cfg.Closers))
	}
	if err := cfg.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if cfg.Closers != nil {
		t.Error("Close left Closers set")
	}
}

// TestCheckOnlyCreatesNoFile: loading with CheckOnly (portico validate) reports an
// unwritable access-log path with its field, and creates no file for a good one.
func TestCheckOnlyCreatesNoFile(t *testing.T) {
	data, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "access.log")
	good := strings.Replace(string(data), "path: /dev/null", "path: "+logPath, 1)
	cfg, err := ParseWith([]byte(good), 1, Options{CheckOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Closers) != 0 {
		t.Errorf("CheckOnly opened %d writers", len(cfg.Closers))
	}
	if _, err := os.Stat(logPath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CheckOnly created %s (stat: %v)", logPath, err)
	}

	bad := strings.Replace(string(data), "path: /dev/null", "path: "+filepath.Join(dir, "no/such/dir/access.log"), 1)
	_, err = ParseWith([]byte(bad), 1, Options{CheckOnly: true})
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 || !strings.HasSuffix(errs[0].Path, "typed_config.path") ||
		!strings.Contains(errs[0].Msg, "no such file or directory") {
		t.Fatalf("missing directory: got %v, want one error at …typed_config.path", err)
	}
	// Loading for real fails the same way.
	if _, err := Parse([]byte(bad), 1); err == nil {
		t.Error("Parse accepted an access log in a missing directory")
	}
}

// TestBufferLimitZero: an explicit per_connection_buffer_limit_bytes of 0 means no limit, as
// in Envoy; leaving it out means the 1 MiB default.
func TestBufferLimitZero(t *testing.T) {
	data, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(data), "per_connection_buffer_limit_bytes: 32768", "per_connection_buffer_limit_bytes: 0", 1)
	y = strings.Replace(y, "per_connection_buffer_limit_bytes: 65536", "per_connection_buffer_limit_bytes: 0", 1)
	cfg, err := Parse([]byte(y), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	var listeners, clusters int
	for _, l := range cfg.Listeners {
		if l.PerConnectionBufferLimit == engine.NoBufferLimit {
			listeners++
		}
	}
	for _, c := range cfg.Clusters {
		if c.Config().PerConnectionBufferLimit == engine.NoBufferLimit {
			clusters++
		}
	}
	if listeners != 1 || clusters != 1 {
		t.Errorf("%d listeners and %d clusters with no limit, want 1 and 1", listeners, clusters)
	}
}

// TestListenerStatPrefix: a listener's stat_prefix becomes the scope of its stats.
func TestListenerStatPrefix(t *testing.T) {
	data, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(data), "stat_prefix: ingress\n", "stat_prefix: edge_in\n", 1)
	cfg, err := Parse([]byte(y), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	got := map[string]string{}
	for _, l := range cfg.Listeners {
		got[l.Name] = l.StatPrefix
	}
	if got["ingress"] != "edge_in" || got["echo"] != "" {
		t.Errorf("stat prefixes by listener: %v; want ingress=edge_in, echo unset", got)
	}
}

// TestTimeoutAtMaximum: a timeout of exactly MaxDuration is accepted and reaches the engine
// unchanged; the limit named in the error text is MaxDuration.
func TestTimeoutAtMaximum(t *testing.T) {
	if MaxDuration.String() != "87600h0m0s" || !strings.HasPrefix(maxDurationText, "87600h ") {
		t.Fatalf("MaxDuration %v, error text %q", MaxDuration, maxDurationText)
	}
	cfg, err := Parse([]byte(`
static_resources:
  listeners:
  - name: e
    address: { socket_address: { address: 127.0.0.1, port_value: 7 } }
    listener_filters_timeout: 315360000s
    filter_chains: [{ filters: [{ name: envoy.filters.network.echo }] }]
`), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	if got := cfg.Listeners[0].ListenerFiltersTimeout; got != MaxDuration {
		t.Errorf("listener_filters_timeout = %v, want %v", got, MaxDuration)
	}
}

// TestYAMLValuesWithoutJSONForm covers what the generic tree cannot carry to protojson and
// the YAML reader used to reject with no location: !!binary text that is not UTF-8, invalid
// bytes in a file that also has a syntax error, and the file encodings YAML reads (UTF-16
// with a byte-order mark stays readable).
func TestYAMLValuesWithoutJSONForm(t *testing.T) {
	const echo = `
static_resources:
  listeners:
  - name: NAME
    address: { socket_address: { address: 127.0.0.1, port_value: 7 } }
    filter_chains: [{ filters: [{ name: envoy.filters.network.echo }] }]
`
	_, err := Parse([]byte(strings.Replace(echo, "NAME", "!!binary /w==", 1)), 1)
	checkErrors(t, err, []want{{"static_resources.listeners[0].name", `"\xff" is not valid UTF-8`}})

	bad := strings.Replace(echo, "NAME", "e\xff", 1) + "   oops: [\n"
	_, err = Parse([]byte(bad), 1)
	checkErrors(t, err, []want{{"line 6", "YAML: "}, {"line 4", "column 12: invalid UTF-8 ff"}})

	u := utf16.Encode([]rune(strings.Replace(echo, "NAME", "é", 1)))
	le := []byte{0xff, 0xfe}
	for _, c := range u {
		le = append(le, byte(c), byte(c>>8))
	}
	cfg, err := Parse(le, 1)
	if err != nil {
		t.Fatalf("UTF-16LE with a BOM: %v", err)
	}
	defer cfg.Close()
	if cfg.Listeners[0].Name != "é" {
		t.Errorf("UTF-16LE: listener name %q", cfg.Listeners[0].Name)
	}
}

// TestYAMLMergeKeysAndAliases: anchors, aliases and merge keys (which the YAML decoder
// applies only to Go maps, so such files take that path) read as before. (Strict yaml.v2
// rejects a key that overrides a merged one, as it did before.)
func TestYAMLMergeKeysAndAliases(t *testing.T) {
	for _, doc := range []string{`
static_resources:
  listeners:
  - <<: &common { filter_chains: [{ filters: [{ name: envoy.filters.network.echo }] }] }
    name: a
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
  - <<: *common
    name: b
    address: { socket_address: { address: 127.0.0.1, port_value: 2 } }
`, `
static_resources:
  listeners:
  - name: a
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains: &chains [{ filters: [{ name: envoy.filters.network.echo }] }]
  - name: b
    address: { socket_address: { address: 127.0.0.1, port_value: 2 } }
    filter_chains: *chains
`} {
		cfg, err := Parse([]byte(doc), 1)
		if err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		if len(cfg.Listeners) != 2 || cfg.Listeners[1].Name != "b" || cfg.Listeners[1].Address.Port() != 2 ||
			cfg.Listeners[1].FilterChains == nil {
			t.Errorf("listeners %+v\n%s", cfg.Listeners, doc)
		}
		cfg.Close()
	}
}

package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hcmAccessLogFormat is the access-log line every HCM test config writes.
const hcmAccessLogFormat = `%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_HOST% %REQ(:PATH)%\n`

// hcmCluster is one STATIC cluster of an HCM test config.
type hcmCluster struct {
	Name  string
	Ports []int
	// Extra is YAML at the cluster's level (circuit_breakers: ..., connect_timeout: ...).
	Extra string
	// Hostname is every endpoint's hostname (for auto_host_rewrite).
	Hostname string
}

// hcmSetup is an HCM listener in front of clusters: Envoy v3 YAML, as a user writes it.
type hcmSetup struct {
	// HCM is YAML at the HttpConnectionManager's level (use_remote_address: true ...).
	HCM string
	// Routes is the route_config (its fields, at its level); "" routes everything to the
	// first cluster.
	Routes   string
	Clusters []hcmCluster
	// Concurrency is --concurrency (0: 2).
	Concurrency int
}

// hcmProxy is a running portico with an HCM listener.
type hcmProxy struct {
	*proc
	Addr      string // the listener, 127.0.0.1:port
	Port      int
	AccessLog string
	Config    string
}

// indent prefixes every non-empty line of a YAML block with n spaces, after removing
// the block's common leading indentation.
func indent(s string, n int) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	common := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		k := len(l) - len(strings.TrimLeft(l, " "))
		if common < 0 || k < common {
			common = k
		}
	}
	pad := strings.Repeat(" ", n)
	var b strings.Builder
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		b.WriteString(pad)
		b.WriteString(l[common:])
		b.WriteByte('\n')
	}
	return b.String()
}

// hcmYAML renders the bootstrap for s.
func hcmYAML(s hcmSetup, admin, port int, accessLog string) string {
	routes := s.Routes
	if routes == "" {
		routes = fmt.Sprintf(`
name: local
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - match: { prefix: "/" }
    route: { cluster: %s }
`, s.Clusters[0].Name)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `admin:
  address: { socket_address: { address: 127.0.0.1, port_value: %d } }
static_resources:
  listeners:
  - name: hcm
    address: { socket_address: { address: 127.0.0.1, port_value: %d } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %s
              log_format:
                text_format_source:
                  inline_string: "%s"
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
`, admin, port, accessLog, hcmAccessLogFormat)
	if s.HCM != "" {
		b.WriteString(indent(s.HCM, 10))
	}
	b.WriteString("          route_config:\n")
	b.WriteString(indent(routes, 12))
	b.WriteString("  clusters:\n")
	for _, c := range s.Clusters {
		fmt.Fprintf(&b, `  - name: %s
    connect_timeout: 1s
    load_assignment:
      cluster_name: %s
      endpoints:
      - lb_endpoints:
`, c.Name, c.Name)
		for _, p := range c.Ports {
			host := ""
			if c.Hostname != "" {
				host = "hostname: " + c.Hostname + ", "
			}
			fmt.Fprintf(&b, "        - endpoint: { %saddress: { socket_address: { address: 127.0.0.1, port_value: %d } } }\n", host, p)
		}
		if c.Extra != "" {
			b.WriteString(indent(c.Extra, 4))
		}
	}
	return b.String()
}

// startHCM writes s as a config file and starts portico on it.
func startHCM(t *testing.T, s hcmSetup) *hcmProxy {
	t.Helper()
	admin, port := freePort(t), freePort(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "access.log")
	cfg := filepath.Join(dir, "portico.yaml")
	if err := os.WriteFile(cfg, []byte(hcmYAML(s, admin, port, log)), 0o644); err != nil {
		t.Fatal(err)
	}
	n := s.Concurrency
	if n == 0 {
		n = 2
	}
	p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", admin), "-c", cfg, "--concurrency", strconv.Itoa(n))
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(cfg)
			t.Logf("config:\n%s", b)
		}
	})
	return &hcmProxy{proc: p, Addr: fmt.Sprintf("127.0.0.1:%d", port), Port: port, AccessLog: log, Config: cfg}
}

// logLines waits until the access log holds at least n lines and returns them.
func (h *hcmProxy) logLines(t *testing.T, n int) []string {
	t.Helper()
	var lines []string
	eventually(t, fmt.Sprintf("%d access-log lines", n), func() bool {
		b, _ := os.ReadFile(h.AccessLog)
		lines = strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) == 1 && lines[0] == "" {
			lines = nil
		}
		return len(lines) >= n
	})
	return lines
}

// expectLog waits until the access log holds at least n lines, then reports an error
// (without stopping the test) unless one of them is want.
func (h *hcmProxy) expectLog(t *testing.T, n int, want string) {
	t.Helper()
	lines := h.logLines(t, n)
	for _, l := range lines {
		if l == want {
			return
		}
	}
	t.Errorf("access log has no line %q; it has:\n%s", want, strings.Join(lines, "\n"))
}

// statEventually waits until the summed stat name equals want.
func (h *hcmProxy) statEventually(t *testing.T, name string, want float64) {
	t.Helper()
	var got float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		got = h.stats(t)[name]
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stat %s = %v, want %v", name, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// echoSeen is what the echo backend received, as the JSON body of its answer.
type echoSeen struct {
	Backend  string              `json:"backend"`
	Method   string              `json:"method"`
	URI      string              `json:"uri"`
	Host     string              `json:"host"`
	Proto    string              `json:"proto"`
	Header   map[string][]string `json:"header"`
	TE       []string            `json:"te"`
	CL       int64               `json:"cl"`
	BodyLen  int64               `json:"body_len"`
	BodySHA  string              `json:"body_sha256"`
	Remote   string              `json:"remote"`
	Trailers map[string][]string `json:"trailers"`
}

// echoBackendT is a Go HTTP/1.1 server that tells what it received. Query parameters
// change its answer:
//
//	sleep=MS        wait before answering (ends early when the client goes away)
//	status=N        answer with status N
//	size=N          answer N bytes of detStream instead of the JSON (chunked=1: no length)
//	hdr=K:V         add a response header (repeatable)
//	failfirst=KEY   answer 503 to the first request carrying KEY, then normally
//	reset=1         send a head with Content-Length 100000 and 10 bytes, then RST
//	expect=ignore   (with Expect: 100-continue) answer without reading the body
type echoBackendT struct {
	t     *testing.T
	name  string
	Port  int
	Addr  string
	conns atomic.Int64 // connections accepted
	reqs  atomic.Int64 // requests served
	mu    sync.Mutex
	fail  map[string]int
	uris  []string // every request's target, in arrival order
	srv   *http.Server
}

func newEchoBackend(t *testing.T, name string) *echoBackendT {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoBackendT{t: t, name: name, Port: ln.Addr().(*net.TCPAddr).Port, Addr: ln.Addr().String(), fail: map[string]int{}}
	e.srv = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateNew {
				e.conns.Add(1)
			}
		},
	}
	go e.srv.Serve(ln)
	t.Cleanup(func() { e.srv.Close() })
	return e
}

func (e *echoBackendT) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.reqs.Add(1)
	e.mu.Lock()
	e.uris = append(e.uris, r.RequestURI)
	e.mu.Unlock()
	q := r.URL.Query()
	for _, kv := range q["hdr"] {
		k, v, _ := strings.Cut(kv, ":")
		w.Header().Add(k, v)
	}
	if key := q.Get("failfirst"); key != "" {
		e.mu.Lock()
		e.fail[key]++
		n := e.fail[key]
		e.mu.Unlock()
		if n == 1 {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(503)
			io.WriteString(w, "first attempt fails\n")
			return
		}
	}
	if ms := q.Get("sleep"); ms != "" {
		d, _ := strconv.Atoi(ms)
		select {
		case <-time.After(time.Duration(d) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
	}
	if q.Get("reset") == "1" {
		io.Copy(io.Discard, r.Body)
		c, bw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789")
		bw.Flush()
		time.Sleep(100 * time.Millisecond)
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
		return
	}
	if q.Get("expect") == "ignore" {
		w.Header().Set("Connection", "close")
		w.WriteHeader(417)
		return
	}
	if s := q.Get("size"); s != "" {
		n, _ := strconv.ParseInt(s, 10, 64)
		io.Copy(io.Discard, r.Body)
		if q.Get("chunked") != "1" {
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		}
		w.WriteHeader(200)
		io.CopyBuffer(w, newDetStream(n), make([]byte, 256<<10))
		return
	}
	h := sha256.New()
	n, _ := io.CopyBuffer(h, r.Body, make([]byte, 256<<10))
	seen := echoSeen{Backend: e.name, Method: r.Method, URI: r.RequestURI, Host: r.Host, Proto: r.Proto,
		Header: r.Header, TE: r.TransferEncoding, CL: r.ContentLength, BodyLen: n,
		BodySHA: hex.EncodeToString(h.Sum(nil)), Remote: r.RemoteAddr, Trailers: r.Trailer}
	b, _ := json.Marshal(seen)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Backend", e.name)
	status := 200
	if s := q.Get("status"); s != "" {
		status, _ = strconv.Atoi(s)
	}
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// client is an HTTP client that does not follow redirects, keeps connections alive and
// bounds every request.
func hcmClient() *http.Client {
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			DisableCompression:  true,
			MaxIdleConnsPerHost: 16,
			WriteBufferSize:     256 << 10,
			ReadBufferSize:      256 << 10,
			Proxy:               nil,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// doEcho sends a request and decodes the echo backend's answer.
func doEcho(t *testing.T, c *http.Client, req *http.Request) (*http.Response, echoSeen) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	var seen echoSeen
	if resp.StatusCode/100 == 2 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &seen); err != nil {
			t.Fatalf("%s %s: echo body %q: %v", req.Method, req.URL, b, err)
		}
	}
	return resp, seen
}

// get is a GET with an optional Host and headers ("K: V").
func newReq(t *testing.T, method, url, host string, hdrs ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for _, h := range hdrs {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return req
}

// detStream is a deterministic byte stream of n bytes: a fixed pseudo-random block of a
// prime length, with the block's index written into its first 8 bytes, so that lost,
// repeated or reordered blocks change the digest.
type detStream struct {
	n, off int64
}

const detBlockLen = 65521

var detBlock = func() []byte {
	b := make([]byte, detBlockLen)
	x := uint64(0x9E3779B97F4A7C15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x >> 32)
	}
	return b
}()

func newDetStream(n int64) *detStream { return &detStream{n: n} }

func (d *detStream) Read(p []byte) (int, error) {
	if d.off >= d.n {
		return 0, io.EOF
	}
	if rem := d.n - d.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	total := 0
	for len(p) > 0 {
		blk := d.off / detBlockLen
		in := int(d.off % detBlockLen)
		k := copy(p, detBlock[in:])
		if in < 8 {
			var idx [8]byte
			binary.LittleEndian.PutUint64(idx[:], uint64(blk))
			for i := in; i < 8 && i-in < k; i++ {
				p[i-in] ^= idx[i]
			}
		}
		p = p[k:]
		d.off += int64(k)
		total += k
	}
	return total, nil
}

var detSums sync.Map // size → hex sha256

// detSHA is the hex sha256 of detStream(n), computed once per size.
func detSHA(n int64) string {
	if v, ok := detSums.Load(n); ok {
		return v.(string)
	}
	h := sha256.New()
	io.CopyBuffer(h, newDetStream(n), make([]byte, 1<<20))
	s := hex.EncodeToString(h.Sum(nil))
	detSums.Store(n, s)
	return s
}

// rawConn dials addr with a deadline for the whole exchange.
func rawConn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(15 * time.Second))
	return c, bufio.NewReader(c)
}

// readResp reads one response (for a request of method) and its whole body.
func readResp(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "/", nil)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading a response body: %v", err)
	}
	return resp, string(b)
}

// closedSoon reports whether the peer closes c (EOF or reset) within 5 s, discarding
// anything else it sends.
func closedSoon(c net.Conn, br *bufio.Reader) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}

// nginxEcho runs nginx on a free port with an echo location and stub_status; it returns
// the port.
func nginxEcho(t *testing.T) int {
	t.Helper()
	port := freePort(t)
	_, done, stderr := runNginx(t, "", fmt.Sprintf(`  server {
    listen 127.0.0.1:%d;
    keepalive_requests 100000;
    location = /nginx_status { stub_status; }
    location / { default_type text/plain; return 200 "$request_method $request_uri $http_host $http_x_forwarded_for\n"; }
  }
`, port))
	eventually(t, "nginx to listen", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return true
		}
		select {
		case <-done:
			t.Fatalf("nginx exited: %s", stderr.String())
		default:
		}
		return false
	})
	return port
}

// nginxAccepts reads stub_status's "accepts" counter straight from nginx.
func nginxAccepts(t *testing.T, port int) int {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Get(fmt.Sprintf("http://127.0.0.1:%d/nginx_status", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	// Active connections: 1
	// server accepts handled requests
	//  3 3 10
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "server accepts") && i+1 < len(lines) {
			f := strings.Fields(lines[i+1])
			n, _ := strconv.Atoi(f[0])
			return n
		}
	}
	t.Fatalf("stub_status: %q", b)
	return 0
}

// decodeSeen decodes the echo backend's JSON answer.
func decodeSeen(t *testing.T, body string, seen *echoSeen) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), seen); err != nil {
		t.Fatalf("echo body %q: %v", body, err)
	}
}

// seenURIs is a copy of the targets the backend received.
func (e *echoBackendT) seenURIs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.uris...)
}

// readRespErr is readResp returning its error instead of failing the test (for
// goroutines and for responses that may not come).
func readRespErr(br *bufio.Reader, method string) (*http.Response, string, error) {
	req, _ := http.NewRequest(method, "/", nil)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// bodyPeer builds testdata/hcm/bodypeer (without the race detector: it generates and
// hashes GiB bodies) into the test's temp dir and returns its path.
func bodyPeer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bodypeer")
	out, err := exec.Command("go", "build", "-o", bin, "./testdata/hcm/bodypeer").CombinedOutput()
	if err != nil {
		t.Fatalf("building bodypeer: %v\n%s", err, out)
	}
	// Its stream is the tests' detStream.
	if got := runBodyPeer(t, bin, "sum", strconv.FormatInt(1<<20, 10)); got != detSHA(1<<20) {
		t.Fatalf("bodypeer's stream differs from detStream: %s vs %s", got, detSHA(1<<20))
	}
	return bin
}

// serveBodyPeer runs "bodypeer serve" until the test ends and returns its port.
func serveBodyPeer(t *testing.T, bin string) int {
	t.Helper()
	cmd := exec.Command(bin, "serve")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	go func() { cmd.Wait(); close(done) }()
	if err != nil {
		t.Fatalf("bodypeer serve: %v", err)
	}
	port, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("bodypeer serve printed %q", line)
	}
	return port
}

// runBodyPeer runs bodypeer with args (bounded to 2 minutes) and returns its output.
func runBodyPeer(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("bodypeer %v: %v %s", args, err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// bodyPeerSum is the sha256 of detStream(n), computed by bodypeer once per size.
func bodyPeerSum(t *testing.T, bin string, n int64) string {
	t.Helper()
	if v, ok := detSums.Load(n); ok {
		return v.(string)
	}
	s := runBodyPeer(t, bin, "sum", strconv.FormatInt(n, 10))
	detSums.Store(n, s)
	return s
}

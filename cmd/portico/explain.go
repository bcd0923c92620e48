package main

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/portico-proxy/portico/config"
	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/chain"
	"github.com/portico-proxy/portico/filters/network/httpconnmgr"
	"github.com/portico-proxy/portico/filters/network/tcpproxy"
	"github.com/portico-proxy/portico/http/header"
	"github.com/portico-proxy/portico/http/route"
	"github.com/portico-proxy/portico/transport/tls"
)

// explainDefaultSrc is the client address explain assumes when --src is not given.
const explainDefaultSrc = "127.0.0.1:50000"

// explain prints which listener and filter chain would serve a connection, using the same
// hand-off rule and chain index as the running proxy. Exit 0: a chain; 3: the socket
// would be closed; 1: bad config; 2: bad arguments.
func explain(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("explain", stderr)
	cfgPath := fs.String("c", "", "bootstrap file")
	fs.StringVar(cfgPath, "config-path", "", "same as -c")
	listener := fs.String("listener", "", "name of the listener that accepts the connection")
	dst := fs.String("dst", "", "destination IP:PORT (after original_dst)")
	src := fs.String("src", explainDefaultSrc, "source IP:PORT (after proxy_protocol)")
	directSrc := fs.String("direct-src", "", "directly connected peer IP:PORT (default: --src)")
	sni := fs.String("sni", "", "requested server name")
	transport := fs.String("transport", engine.TransportRawBuffer, "transport protocol: tls or raw_buffer")
	alpn := fs.String("alpn", "", "application protocols, comma-separated, in the client's order")
	host := fs.String("host", "", "HTTP: the request's Host (explains the route an http_connection_manager takes)")
	path := fs.String("path", "/", "HTTP: the request's path, with its query")
	method := fs.String("method", "GET", "HTTP: the request's method")
	var headers headerFlags
	fs.Var(&headers, "header", "HTTP: a request header \"Name: value\" (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" || *listener == "" || *dst == "" {
		fmt.Fprintln(stderr, "explain: -c, --listener and --dst are required")
		fs.Usage()
		return 2
	}
	addr := func(flag, s string) (netip.AddrPort, bool) {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			fmt.Fprintf(stderr, "explain: --%s %q: want IP:PORT (%v)\n", flag, s, err)
			return ap, false
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	var info engine.SocketInfo
	var ok bool
	if info.LocalAddr, ok = addr("dst", *dst); !ok {
		return 2
	}
	if info.RemoteAddr, ok = addr("src", *src); !ok {
		return 2
	}
	info.DirectRemoteAddr = info.RemoteAddr
	if *directSrc != "" {
		if info.DirectRemoteAddr, ok = addr("direct-src", *directSrc); !ok {
			return 2
		}
	}
	info.ServerName = strings.ToLower(*sni)
	info.TransportProtocol = *transport
	if *alpn != "" {
		info.SetApplicationProtocols(strings.Split(*alpn, ",")...)
	}

	cfg, err := config.LoadWith(*cfgPath, 1, config.Options{CheckOnly: true})
	if err != nil {
		printConfigErrors(stderr, *cfgPath, err)
		return 1
	}
	// The LDS file's listeners count too, as they would run.
	listeners := append([]engine.ListenerConfig(nil), cfg.Listeners...)
	chains := map[string]*chain.Manager{}
	for name, m := range cfg.Chains {
		chains[name] = m
	}
	if u := cfg.InitialLDS; u != nil {
		for _, r := range u.Listeners {
			if m, ok := r.Config.FilterChains.(*chain.Manager); ok {
				listeners = append(listeners, r.Config)
				chains[r.Name] = m
			}
		}
	}
	li := -1
	for i, l := range listeners {
		if l.Name == *listener {
			li = i
		}
	}
	if li < 0 {
		fmt.Fprintf(stderr, "explain: no listener named %q in %s\n", *listener, *cfgPath)
		return 2
	}
	serving := listeners[li]
	if serving.UseOriginalDst {
		// --dst is the restored destination, so the hand-off applies as on a worker.
		info.LocalAddrRestored = true
		if t := engine.HandoffTarget(listeners, info.LocalAddr); t >= 0 {
			serving = listeners[t]
		}
	}
	name, found := chains[serving.Name].FindChainName(&info)
	if !found {
		fmt.Fprintf(stdout, "listener=%s chain=none\n", serving.Name)
		return 3
	}
	fmt.Fprintf(stdout, "listener=%s chain=%s\n", serving.Name, name)
	explainTransport(chains[serving.Name].FindFilterChain(&info), info.ServerName, stdout)
	explainBytePath(chains[serving.Name].FindFilterChain(&info), explainClusters(cfg), stdout)
	if *host == "" {
		return 0
	}
	return explainHTTP(chains[serving.Name].FindFilterChain(&info), *method, *host, *path, headers, stdout, stderr)
}

// explainTransport prints the TLS the chain terminates: the certificate a client asking
// for sni would get, and the chain's ALPN.
func explainTransport(fc *engine.FilterChain, sni string, stdout io.Writer) {
	f, ok := fc.TransportSocket.(*tls.Factory)
	if !ok {
		return
	}
	leaf := f.CertificateFor(sni)
	names := leaf.DNSNames
	if len(names) == 0 {
		names = []string{leaf.Subject.CommonName}
	}
	fmt.Fprintf(stdout, "transport_socket=%s certificate=%s key=%s expires=%s", f.Name(),
		strings.Join(names, ","), leaf.PublicKeyAlgorithm, leaf.NotAfter.UTC().Format("2006-01-02"))
	if alpn := f.ALPN(); len(alpn) > 0 {
		fmt.Fprintf(stdout, " alpn=%s", strings.Join(alpn, ","))
	}
	fmt.Fprintln(stdout)
}

// explainClusters maps the names of the clusters a configuration starts with (static and
// from the CDS file) to them.
func explainClusters(cfg *config.Config) map[string]*engine.Cluster {
	m := map[string]*engine.Cluster{}
	for _, c := range cfg.Clusters {
		m[c.Name()] = c
	}
	if u := cfg.InitialCDS; u != nil {
		for _, r := range u.Clusters {
			if r.Cluster != nil {
				m[r.Name] = r.Cluster
			}
		}
	}
	return m
}

// sockmapAvailability is what explain says of a chain the kernel path can take: explain
// loads no BPF, and whether the running proxy has the sockmap depends on its privileges,
// its kernel and --enable-sockmap.
const sockmapAvailability = "userspace; kernel (sockmap) with --enable-sockmap as root with BPF (experimental)"

// explainBytePath prints which byte path a connection on the chain takes, with the same
// conditions as the engine's Connection.PairInKernel: the chain's only network filter is
// tcp_proxy (another filter must see the bytes), and neither side has a transport socket
// (TLS must see them too). An access log needs nothing from the bytes, so it does not
// matter. The upstream side is judged by the tcp_proxy's clusters as the configuration
// starts (a cluster only the management server knows is not judged).
func explainBytePath(fc *engine.FilterChain, clusters map[string]*engine.Cluster, stdout io.Writer) {
	fmt.Fprintf(stdout, "byte_path=%s\n", bytePath(fc, clusters))
}

func bytePath(fc *engine.FilterChain, clusters map[string]*engine.Cluster) string {
	var reasons, others []string
	var proxies []*tcpproxy.Factory
	for _, f := range fc.Filters {
		if p, ok := f.(*tcpproxy.Factory); ok {
			proxies = append(proxies, p)
		} else {
			others = append(others, f.Name())
		}
	}
	switch {
	case len(others) > 0:
		reasons = append(reasons, "another network filter: "+strings.Join(others, ","))
	case len(proxies) == 0:
		reasons = append(reasons, "no network filter")
	case len(proxies) > 1:
		reasons = append(reasons, fmt.Sprintf("%d %s filters", len(proxies), tcpproxy.Name))
	}
	if fc.TransportSocket != nil {
		reasons = append(reasons, "transport socket: "+shortTransportName(fc.TransportSocket.Name()))
	}
	if len(proxies) == 1 {
		// Every cluster the proxy may pick: with weighted clusters a connection to a TLS
		// one stays in userspace, so the chain as a whole is named by the worst case.
		for _, name := range proxies[0].ClusterNames() {
			c := clusters[name]
			if c == nil {
				continue
			}
			if ts := c.Config().TransportSocket; ts != nil {
				reasons = append(reasons, fmt.Sprintf("upstream transport socket: %s (cluster %s)",
					shortTransportName(ts.Name()), name))
			}
		}
	}
	if len(reasons) > 0 {
		return "userspace (" + strings.Join(reasons, "; ") + ")"
	}
	return sockmapAvailability
}

// shortTransportName is a transport socket's Envoy name without its prefix ("tls").
func shortTransportName(name string) string {
	return strings.TrimPrefix(name, "envoy.transport_sockets.")
}

// headerFlags collects repeated --header "Name: value" flags.
type headerFlags [][2]string

func (h *headerFlags) String() string { return fmt.Sprint(*h) }

func (h *headerFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("want \"Name: value\", got %q", v)
	}
	*h = append(*h, [2]string{strings.TrimSpace(name), strings.TrimSpace(value)})
	return nil
}

// explainHTTP prints the virtual host, route and action an HTTP request takes through
// the chain's http_connection_manager, with the route table the proxy uses. Exit 0: a
// route; 3: no route (404) or no HTTP connection manager in the chain.
func explainHTTP(fc *engine.FilterChain, method, host, path string, headers headerFlags, stdout, stderr io.Writer) int {
	var hcm *httpconnmgr.Factory
	for _, f := range fc.Filters {
		if h, ok := f.(*httpconnmgr.Factory); ok {
			hcm = h
		}
	}
	if hcm == nil {
		fmt.Fprintf(stdout, "http=none (the chain has no %s)\n", httpconnmgr.Name)
		return 3
	}
	var h header.Map
	h.AddString(":method", method)
	h.AddString(":path", path)
	h.AddString(":authority", host)
	h.AddString(":scheme", "http")
	for _, kv := range headers {
		h.AddString(kv[0], kv[1])
	}
	tab := hcm.Config().Routes
	if tab == nil {
		// rds: the routes come from the management server at run time.
		fmt.Fprintf(stdout, "routes=rds route_config_name=%s (not known before a management server sends it)\n", hcm.Config().RDS.Name())
		return 3
	}
	vh, rt := tab.Select(&h)
	if vh == nil {
		fmt.Fprintf(stdout, "virtual_host=none route=none status=404 flags=NR\n")
		return 3
	}
	if rt == nil {
		fmt.Fprintf(stdout, "virtual_host=%s route=none status=404 flags=NR\n", vh.Name())
		return 3
	}
	name := rt.Name()
	if name == "" {
		name = fmt.Sprintf("#%d", rt.Index())
	}
	fmt.Fprintf(stdout, "virtual_host=%s route=%s match=%s\n", vh.Name(), name, rt.Describe())
	switch rt.Kind() {
	case route.ActionRedirect:
		loc := rt.AppendRedirectLocation(nil, &h, "http")
		fmt.Fprintf(stdout, "redirect status=%d location=%s\n", rt.RedirectResponseCode(), loc)
	case route.ActionDirectResponse:
		status, body := rt.DirectResponse()
		fmt.Fprintf(stdout, "direct_response status=%d body_bytes=%d\n", status, len(body))
	default:
		switch {
		case rt.ClusterHeader() != "":
			c, _ := rt.PickCluster(&h, 0)
			fmt.Fprintf(stdout, "cluster_header=%s cluster=%s\n", rt.ClusterHeader(), c)
		default:
			names, weights := rt.WeightedClusters()
			if len(names) > 0 {
				parts := make([]string, len(names))
				for i := range names {
					parts[i] = fmt.Sprintf("%s:%d", names[i], weights[i])
				}
				fmt.Fprintf(stdout, "weighted_clusters=%s\n", strings.Join(parts, ","))
			} else {
				fmt.Fprintf(stdout, "cluster=%s\n", rt.Cluster())
			}
		}
		if p, ok := rt.AppendRewrittenPath(nil, &h); ok {
			fmt.Fprintf(stdout, "path_rewrite=%s\n", p)
		}
		fmt.Fprintf(stdout, "timeout=%s\n", rt.Timeout())
	}
	return 0
}

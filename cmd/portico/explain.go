package main

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/portico-proxy/portico/config"
	"github.com/portico-proxy/portico/engine"
)

// explainDefaultSrc is the client address explain assumes when --src is not given.
const explainDefaultSrc = "127.0.0.1:50000"

// explain prints which listener and filter chain would serve a connection, using the same
// hand-off rule and chain index as the running proxy. Exit 0: a chain; 3: the socket
// would be closed; 1: bad config; 2: bad arguments.
func explain(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("explain", stderr)
	path := fs.String("c", "", "bootstrap file")
	fs.StringVar(path, "config-path", "", "same as -c")
	listener := fs.String("listener", "", "name of the listener that accepts the connection")
	dst := fs.String("dst", "", "destination IP:PORT (after original_dst)")
	src := fs.String("src", explainDefaultSrc, "source IP:PORT (after proxy_protocol)")
	directSrc := fs.String("direct-src", "", "directly connected peer IP:PORT (default: --src)")
	sni := fs.String("sni", "", "requested server name")
	transport := fs.String("transport", engine.TransportRawBuffer, "transport protocol: tls or raw_buffer")
	alpn := fs.String("alpn", "", "application protocols, comma-separated, in the client's order")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" || *listener == "" || *dst == "" {
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

	cfg, err := config.LoadWith(*path, 1, config.Options{CheckOnly: true})
	if err != nil {
		printConfigErrors(stderr, *path, err)
		return 1
	}
	li := -1
	for i, l := range cfg.Listeners {
		if l.Name == *listener {
			li = i
		}
	}
	if li < 0 {
		fmt.Fprintf(stderr, "explain: no listener named %q in %s\n", *listener, *path)
		return 2
	}
	serving := cfg.Listeners[li]
	if serving.UseOriginalDst {
		// --dst is the restored destination, so the hand-off applies as on a worker.
		info.LocalAddrRestored = true
		if t := engine.HandoffTarget(cfg.Listeners, info.LocalAddr); t >= 0 {
			serving = cfg.Listeners[t]
		}
	}
	name, found := cfg.Chains[serving.Name].FindChainName(&info)
	if !found {
		fmt.Fprintf(stdout, "listener=%s chain=none\n", serving.Name)
		return 3
	}
	fmt.Fprintf(stdout, "listener=%s chain=%s\n", serving.Name, name)
	return 0
}

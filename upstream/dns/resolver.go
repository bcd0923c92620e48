// Package dns resolves the endpoints of Envoy's STRICT_DNS and LOGICAL_DNS clusters off
// the workers and hands the results to them as host-set updates (engine.Cluster.UpdateHosts).
//
// A Resolver answers one name at a time, as Envoy's DNS resolver extensions do: the c-ares
// one (envoy.network.dns_resolver.cares, Envoy's default) is mapped onto direct queries
// with github.com/miekg/dns, which exposes the answers' TTLs (respect_dns_ttl needs them);
// the getaddrinfo one onto Go's own resolver. A Cluster is one DNS cluster's resolution
// loop: it runs as a config.Runner on its own goroutines and never touches a worker.
//
// The engine does not import this package; config builds it from a bootstrap.
package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// Family is Envoy's Cluster.DnsLookupFamily.
type Family int

// Lookup families. Auto is Envoy's default: AAAA first, A if that gave no address.
const (
	Auto Family = iota
	V4Only
	V6Only
	V4Preferred
	All
)

func (f Family) String() string {
	switch f {
	case V4Only:
		return "V4_ONLY"
	case V6Only:
		return "V6_ONLY"
	case V4Preferred:
		return "V4_PREFERRED"
	case All:
		return "ALL"
	}
	return "AUTO"
}

// Defaults of the c-ares resolver as Envoy configures it (query_timeout_seconds,
// query_tries), and the TTL Envoy's getaddrinfo resolver gives every answer.
const (
	DefaultQueryTimeout = 5 * time.Second
	DefaultQueryTries   = 4
	SystemTTL           = 60 * time.Second
)

// ResolverConfig describes a resolver: Envoy's CaresDnsResolverConfig (or the cluster's
// deprecated dns_resolvers / use_tcp_for_dns_lookups / dns_resolution_config), or, with
// System, GetAddrInfoDnsResolverConfig.
type ResolverConfig struct {
	// Servers are the name servers to ask (resolvers); empty: resolv.conf's.
	Servers []netip.AddrPort
	// FallbackOnly uses Servers only when resolv.conf names no server
	// (use_resolvers_as_fallback).
	FallbackOnly bool
	// UseTCP sends every query over TCP (use_tcp_for_dns_lookups). Without it a truncated
	// UDP answer is asked again over TCP.
	UseTCP bool
	// NoSearch asks for the name as written, without resolv.conf's search domains
	// (no_default_search_domain).
	NoSearch bool
	// Timeout bounds each query attempt (query_timeout_seconds); 0: DefaultQueryTimeout.
	Timeout time.Duration
	// Tries is the number of attempts per query, each on the next server (query_tries);
	// 0: DefaultQueryTries.
	Tries int
	// Rotate starts each query on the next server rather than the first
	// (rotate_nameservers).
	Rotate bool

	// System resolves with Go's resolver (Envoy's getaddrinfo resolver): /etc/hosts,
	// resolv.conf, no TTLs (each answer lives SystemTTL, as in Envoy). The fields above
	// are then unused.
	System bool
	// SystemRetries is how many times a temporary failure is retried (num_retries).
	SystemRetries int

	// ResolvConf and HostsFile are the files read ("": /etc/resolv.conf, /etc/hosts).
	// They are read at each resolution, so that an edited file is seen as c-ares sees it
	// on its next channel.
	ResolvConf string
	HostsFile  string
}

// Answer is the result of a resolution that got an answer: its addresses (none if the
// name has no address of the families asked: NXDOMAIN or NODATA, which Envoy treats as a
// successful empty answer) and the smallest TTL of the records used (0 if unknown).
type Answer struct {
	Addrs []netip.Addr
	TTL   time.Duration
}

// Resolver resolves names. It is safe for concurrent use.
type Resolver struct {
	cfg  ResolverConfig
	next atomic.Uint32 // rotate_nameservers: the server the next query starts on
}

// NewResolver makes a resolver.
func NewResolver(cfg ResolverConfig) *Resolver {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultQueryTimeout
	}
	if cfg.Tries <= 0 {
		cfg.Tries = DefaultQueryTries
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	if cfg.HostsFile == "" {
		cfg.HostsFile = "/etc/hosts"
	}
	cfg.Servers = append([]netip.AddrPort(nil), cfg.Servers...)
	return &Resolver{cfg: cfg}
}

// Config returns the resolver's configuration, defaults filled in.
func (r *Resolver) Config() ResolverConfig { return r.cfg }

// Resolve resolves name for the families f asks for. An error means no answer (every
// server failed, timed out or refused); a name that does not exist is an empty Answer.
// Its time is bounded by Timeout × Tries per query (twice for Auto, V4Preferred and All).
func (r *Resolver) Resolve(ctx context.Context, name string, f Family) (Answer, error) {
	if ip, err := netip.ParseAddr(name); err == nil {
		return Answer{Addrs: []netip.Addr{ip.Unmap()}}, nil
	}
	if r.cfg.System {
		return r.system(ctx, name, f)
	}
	if hosts, ok := lookupHosts(r.cfg.HostsFile, name); ok {
		return Answer{Addrs: pick(hosts, f)}, nil
	}
	if isLocalhost(name) {
		// RFC 6761, as c-ares does when the hosts file does not list it.
		return Answer{Addrs: pick([]netip.Addr{netip.IPv6Loopback(), netip.AddrFrom4([4]byte{127, 0, 0, 1})}, f)}, nil
	}
	cc, err := r.clientConfig()
	if err != nil {
		return Answer{}, err
	}
	switch f {
	case V4Only:
		return r.family(ctx, cc, name, mdns.TypeA)
	case V6Only:
		return r.family(ctx, cc, name, mdns.TypeAAAA)
	case Auto, V4Preferred:
		first, second := mdns.TypeAAAA, mdns.TypeA
		if f == V4Preferred {
			first, second = second, first
		}
		a, err := r.family(ctx, cc, name, first)
		if err == nil && len(a.Addrs) > 0 {
			return a, nil
		}
		return r.family(ctx, cc, name, second)
	default: // All: both families, IPv6 first (as Envoy's resolvers order them)
		a6, err6 := r.family(ctx, cc, name, mdns.TypeAAAA)
		a4, err4 := r.family(ctx, cc, name, mdns.TypeA)
		if err6 != nil && err4 != nil {
			return Answer{}, err6
		}
		out := Answer{Addrs: append(a6.Addrs, a4.Addrs...), TTL: minTTL(a6, a4)}
		return out, nil
	}
}

func minTTL(a, b Answer) time.Duration {
	switch {
	case len(a.Addrs) == 0:
		return b.TTL
	case len(b.Addrs) == 0:
		return a.TTL
	}
	return min(a.TTL, b.TTL)
}

// clientConfig reads resolv.conf and applies the configured servers.
type clientConfig struct {
	servers []string // host:port
	names   func(string) []string
}

func (r *Resolver) clientConfig() (clientConfig, error) {
	sys, err := mdns.ClientConfigFromFile(r.cfg.ResolvConf)
	if err != nil {
		sys = nil
	}
	var cc clientConfig
	useOwn := len(r.cfg.Servers) > 0
	if useOwn && r.cfg.FallbackOnly && sys != nil && len(sys.Servers) > 0 {
		useOwn = false
	}
	if useOwn {
		for _, s := range r.cfg.Servers {
			port := s.Port()
			if port == 0 {
				port = 53
			}
			cc.servers = append(cc.servers, netip.AddrPortFrom(s.Addr(), port).String())
		}
	} else if sys != nil {
		for _, s := range sys.Servers {
			cc.servers = append(cc.servers, net.JoinHostPort(s, sys.Port))
		}
	}
	if len(cc.servers) == 0 {
		if err == nil {
			err = errors.New("no name server configured")
		}
		return cc, fmt.Errorf("dns: %s: %w", r.cfg.ResolvConf, err)
	}
	switch {
	case r.cfg.NoSearch || sys == nil:
		cc.names = func(n string) []string { return []string{mdns.Fqdn(n)} }
	default:
		cc.names = sys.NameList
	}
	return cc, nil
}

// errNoRecords is a query's NXDOMAIN or NODATA: the next search name is tried.
var errNoRecords = errors.New("no records")

// family resolves one address type, trying the search names in resolv.conf's order.
func (r *Resolver) family(ctx context.Context, cc clientConfig, name string, qtype uint16) (Answer, error) {
	var lastErr error
	for _, qname := range cc.names(name) {
		a, err := r.query(ctx, cc.servers, qname, qtype)
		if err == nil {
			return a, nil
		}
		if !errors.Is(err, errNoRecords) {
			lastErr = err
		}
		if ctx.Err() != nil {
			return Answer{}, ctx.Err()
		}
	}
	if lastErr != nil {
		return Answer{}, lastErr
	}
	return Answer{}, nil // no name had records: an empty answer
}

// query asks the servers in turn, up to Tries attempts.
func (r *Resolver) query(ctx context.Context, servers []string, qname string, qtype uint16) (Answer, error) {
	m := new(mdns.Msg)
	m.SetQuestion(qname, qtype)
	m.RecursionDesired = true
	start := 0
	if r.cfg.Rotate {
		start = int(r.next.Add(1)-1) % len(servers)
	}
	var lastErr error
	for try := 0; try < r.cfg.Tries; try++ {
		server := servers[(start+try)%len(servers)]
		resp, err := r.exchange(ctx, m, server, r.cfg.UseTCP)
		if err == nil && resp.Truncated && !r.cfg.UseTCP {
			resp, err = r.exchange(ctx, m, server, true)
		}
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				return Answer{}, ctx.Err()
			}
			continue
		}
		switch resp.Rcode {
		case mdns.RcodeSuccess:
			a := answer(resp, qname, qtype)
			if len(a.Addrs) == 0 {
				return a, errNoRecords
			}
			return a, nil
		case mdns.RcodeNameError:
			return Answer{}, errNoRecords
		default: // SERVFAIL, REFUSED ...: the next server may do better
			lastErr = fmt.Errorf("dns: %s %s from %s: %s", qname, mdns.TypeToString[qtype], server, mdns.RcodeToString[resp.Rcode])
		}
	}
	return Answer{}, lastErr
}

func (r *Resolver) exchange(ctx context.Context, m *mdns.Msg, server string, tcp bool) (*mdns.Msg, error) {
	c := &mdns.Client{Net: "udp", Timeout: r.cfg.Timeout}
	if tcp {
		c.Net = "tcp"
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	resp, _, err := c.ExchangeContext(ctx, m, server)
	return resp, err
}

// answer takes the addresses of qtype for qname, following CNAMEs; the TTL is the
// smallest of the records used (CNAMEs included), as c-ares reports it.
func answer(resp *mdns.Msg, qname string, qtype uint16) Answer {
	names := map[string]bool{strings.ToLower(qname): true}
	var ttl uint32
	first := true
	use := func(h *mdns.RR_Header) {
		if first || h.Ttl < ttl {
			ttl, first = h.Ttl, false
		}
	}
	// CNAME chains may come in any order: follow them until nothing is added.
	for changed := true; changed; {
		changed = false
		for _, rr := range resp.Answer {
			if c, ok := rr.(*mdns.CNAME); ok && names[strings.ToLower(c.Hdr.Name)] && !names[strings.ToLower(c.Target)] {
				names[strings.ToLower(c.Target)] = true
				use(&c.Hdr)
				changed = true
			}
		}
	}
	var a Answer
	for _, rr := range resp.Answer {
		h := rr.Header()
		if !names[strings.ToLower(h.Name)] || h.Rrtype != qtype {
			continue
		}
		var ip netip.Addr
		switch v := rr.(type) {
		case *mdns.A:
			ip, _ = netip.AddrFromSlice(v.A.To4())
		case *mdns.AAAA:
			ip, _ = netip.AddrFromSlice(v.AAAA.To16())
		}
		if !ip.IsValid() {
			continue
		}
		use(h)
		a.Addrs = append(a.Addrs, ip)
	}
	if len(a.Addrs) > 0 {
		a.TTL = time.Duration(ttl) * time.Second
	}
	return a
}

// system resolves with Go's resolver (getaddrinfo): both families at once, then the
// family's choice among them, as Envoy's getaddrinfo resolver does.
func (r *Resolver) system(ctx context.Context, name string, f Family) (Answer, error) {
	var res net.Resolver
	var ips []netip.Addr
	var err error
	for try := 0; ; try++ {
		ips, err = res.LookupNetIP(ctx, "ip", name)
		var de *net.DNSError
		if err == nil || !errors.As(err, &de) || !de.IsTemporary || try >= r.cfg.SystemRetries || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return Answer{}, nil
		}
		return Answer{}, err
	}
	for i := range ips {
		ips[i] = ips[i].Unmap()
	}
	a := Answer{Addrs: pick(ips, f)}
	if len(a.Addrs) > 0 {
		a.TTL = SystemTTL
	}
	return a, nil
}

// pick keeps the addresses family f asks for, in f's order.
func pick(ips []netip.Addr, f Family) []netip.Addr {
	var v4, v6 []netip.Addr
	for _, ip := range ips {
		if ip.Is4() {
			v4 = append(v4, ip)
		} else {
			v6 = append(v6, ip)
		}
	}
	switch f {
	case V4Only:
		return v4
	case V6Only:
		return v6
	case V4Preferred:
		if len(v4) > 0 {
			return v4
		}
		return v6
	case All:
		return append(v6, v4...)
	}
	if len(v6) > 0 {
		return v6
	}
	return v4
}

func isLocalhost(name string) bool {
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	return n == "localhost" || strings.HasSuffix(n, ".localhost")
}

// lookupHosts reads the hosts file for name; ok says whether the name is listed (then
// no DNS query is made for it, as with c-ares' "files" lookup).
func lookupHosts(path, name string) ([]netip.Addr, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	name = strings.TrimSuffix(name, ".")
	var out []netip.Addr
	found := false
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		ip, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		for _, h := range f[1:] {
			if strings.EqualFold(strings.TrimSuffix(h, "."), name) {
				found = true
				out = append(out, ip.WithZone("").Unmap())
				break
			}
		}
	}
	return out, found
}

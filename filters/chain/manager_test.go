package chain

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/portico-proxy/portico/engine"
)

// conn describes a connection the way Envoy's findFilterChain test helper does: destination
// ip:port, server name, transport, ALPN, source ip:port and the directly connected peer
// (defaults to the source). An empty address is a Unix-domain socket.
type conn struct {
	dst, sni, transport string
	alpn                []string
	src, direct         string
}

func (c conn) info(t testing.TB) *engine.SocketInfo {
	t.Helper()
	parse := func(s string) netip.AddrPort {
		if s == "" {
			return netip.AddrPort{}
		}
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			t.Fatalf("bad address %q: %v", s, err)
		}
		return ap
	}
	info := &engine.SocketInfo{
		LocalAddr:         parse(c.dst),
		RemoteAddr:        parse(c.src),
		ServerName:        c.sni,
		TransportProtocol: c.transport,
	}
	info.DirectRemoteAddr = info.RemoteAddr
	if c.direct != "" {
		info.DirectRemoteAddr = parse(c.direct)
	}
	info.SetApplicationProtocols(c.alpn...)
	return info
}

// chains builds named chains whose engine chain carries the same name.
func chains(specs ...Chain) []Chain {
	for i := range specs {
		specs[i].Chain = &engine.FilterChain{Name: specs[i].Name}
	}
	return specs
}

func named(name string, m Match) Chain { return Chain{Name: name, Match: m} }

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

type lookup struct {
	what string
	c    conn
	want string // chain name; "" = no chain (socket closed)
}

var (
	h2    = "h2"
	h11   = "http/1.1"
	h2h11 = []string{h2, h11}
)

func TestFindFilterChain(t *testing.T) {
	tests := []struct {
		name    string // the Envoy test the case comes from, or a description for ours
		chains  []Chain
		def     *engine.FilterChain
		lookups []lookup
	}{
		{
			name:   "AddSingleFilterChain",
			chains: chains(named("foo", Match{DestinationPort: 10000})),
			lookups: []lookup{
				{"port 10000", conn{dst: "127.0.0.1:10000", transport: "tls", src: "8.8.8.8:111"}, "foo"},
				{"port 15000", conn{dst: "127.0.0.1:15000", transport: "tls", src: "8.8.8.8:111"}, ""},
			},
		},
		{
			name:   "FilterChainUseFallbackIfNoFilterChainMatches",
			chains: chains(named("foo", Match{DestinationPort: 10000})),
			def:    &engine.FilterChain{Name: "fallback"},
			lookups: []lookup{
				{"port 10000", conn{dst: "127.0.0.1:10000", transport: "tls", src: "8.8.8.8:111"}, "foo"},
				{"port 9999 falls back", conn{dst: "127.0.0.1:9999", transport: "tls", src: "8.8.8.8:111"}, "fallback"},
			},
		},
		{
			name:   "FilterChainMatchCaseInSensitive",
			chains: chains(named("foo", Match{DestinationPort: 10000, ServerNames: []string{"foo.EXAMPLE.com"}})),
			lookups: []lookup{
				{"upper-case SNI", conn{dst: "127.0.0.1:10000", sni: "FOO.example.com", transport: "tls", src: "8.8.8.8:111"}, "foo"},
				{"lower-case SNI", conn{dst: "127.0.0.1:10000", sni: "foo.example.com", transport: "tls", src: "8.8.8.8:111"}, "foo"},
			},
		},
		{
			name:   "SingleFilterChainWithDestinationPortMatch",
			chains: chains(named("foo", Match{DestinationPort: 8080})),
			lookups: []lookup{
				{"unknown port", conn{dst: "127.0.0.1:1234", transport: "tls", src: "8.8.8.8:111"}, ""},
				{"valid port", conn{dst: "127.0.0.1:8080", transport: "tls", src: "8.8.8.8:111"}, "foo"},
				{"UDS", conn{transport: "tls"}, ""},
			},
		},
		{
			name:   "SingleFilterChainWithDirectSourceIPMatch",
			chains: chains(named("foo", Match{DirectSourcePrefixRanges: pfx("127.0.0.0/8")})),
			lookups: []lookup{
				{"unknown direct IP", conn{dst: "1.2.3.4:1234", transport: "tls", src: "8.8.8.8:111", direct: "1.2.3.4:111"}, ""},
				{"valid direct IP", conn{dst: "1.2.3.4:1234", transport: "tls", src: "8.8.8.8:111", direct: "127.0.0.1:111"}, "foo"},
				{"UDS", conn{transport: "tls"}, ""},
			},
		},
		{
			name:   "SingleFilterChainWithDestinationIPMatch",
			chains: chains(named("foo", Match{PrefixRanges: pfx("127.0.0.0/8")})),
			lookups: []lookup{
				{"unknown IP", conn{dst: "1.2.3.4:1234", transport: "tls", src: "8.8.8.8:111"}, ""},
				{"valid IP", conn{dst: "127.0.0.1:1234", transport: "tls", src: "8.8.8.8:111"}, "foo"},
				{"UDS", conn{transport: "tls"}, ""},
			},
		},
		{
			name:   "SingleFilterChainWithServerNamesMatch",
			chains: chains(named("foo", Match{ServerNames: []string{"server1.example.com"}})),
			lookups: []lookup{
				{"no SNI", conn{dst: "127.0.0.1:1234", transport: "tls", src: "8.8.8.8:111"}, ""},
				{"other SNI", conn{dst: "127.0.0.1:1234", sni: "www.example.com", transport: "tls", src: "8.8.8.8:111"}, ""},
				{"matching SNI", conn{dst: "127.0.0.1:1234", sni: "server1.example.com", transport: "tls", src: "8.8.8.8:111"}, "foo"},
			},
		},
		{
			name:   "SingleFilterChainWithTransportProtocolMatch",
			chains: chains(named("foo", Match{TransportProtocol: "tls"})),
			lookups: []lookup{
				{"TCP client", conn{dst: "127.0.0.1:1234", transport: "raw_buffer", src: "8.8.8.8:111"}, ""},
				{"TLS client", conn{dst: "127.0.0.1:1234", transport: "tls", src: "8.8.8.8:111"}, "foo"},
				{"unset transport defaults to raw_buffer", conn{dst: "127.0.0.1:1234", src: "8.8.8.8:111"}, ""},
			},
		},
		{
			name:   "SingleFilterChainWithApplicationProtocolMatch",
			chains: chains(named("foo", Match{ApplicationProtocols: []string{h11}, SourceType: SourceAny})),
			lookups: []lookup{
				{"no ALPN", conn{dst: "127.0.0.1:1234", transport: "tls", src: "8.8.8.8:111"}, ""},
				{"h2,http/1.1", conn{dst: "127.0.0.1:1234", transport: "tls", alpn: h2h11, src: "8.8.8.8:111"}, "foo"},
			},
		},
		{
			name:   "SingleFilterChainWithSourceTypeMatch",
			chains: chains(named("foo", Match{SourceType: SourceSameIPOrLoopback})),
			lookups: []lookup{
				{"external client", conn{dst: "127.0.0.1:1234", transport: "tls", src: "8.8.8.8:111"}, ""},
				{"loopback client", conn{dst: "127.0.0.1:1234", transport: "tls", alpn: h2h11, src: "127.0.0.1:111"}, "foo"},
				{"UDS client is local", conn{transport: "tls", alpn: h2h11}, "foo"},
			},
		},
		{
			name:   "SingleFilterChainWithSourceIpMatch",
			chains: chains(named("foo", Match{SourcePrefixRanges: pfx("10.0.0.1/24")})),
			lookups: []lookup{
				{"10.0.1.1", conn{dst: "127.0.0.1:1234", transport: "tls", src: "10.0.1.1:111"}, ""},
				{"10.0.0.10", conn{dst: "127.0.0.1:1234", transport: "tls", alpn: h2h11, src: "10.0.0.10:111"}, "foo"},
				{"IPv6 client", conn{dst: "127.0.0.1:1234", transport: "tls", src: "[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:111"}, ""},
				{"UDS client", conn{transport: "tls", alpn: h2h11}, ""},
			},
		},
		{
			name:   "SingleFilterChainWithSourceIpv6Match",
			chains: chains(named("foo", Match{SourcePrefixRanges: pfx("2001:0db8:85a3::/64")})),
			lookups: []lookup{
				{"matching subnet", conn{dst: "127.0.0.1:1234", transport: "tls", src: "[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:111"}, "foo"},
				{"other subnet", conn{dst: "127.0.0.1:1234", transport: "tls", src: "[2001:0db8:85a3:0001:0000:8a2e:0370:7334]:111"}, ""},
			},
		},
		{
			name:   "SingleFilterChainWithSourcePortMatch",
			chains: chains(named("foo", Match{SourcePorts: []uint32{100}})),
			lookups: []lookup{
				{"port 100", conn{dst: "127.0.0.1:1234", transport: "tls", src: "127.0.0.1:100"}, "foo"},
				{"port 101", conn{dst: "8.8.8.8:1234", transport: "tls", alpn: h2h11, src: "4.4.4.4:101"}, ""},
			},
		},
		{
			name: "MultipleFilterChainsWithSourceTypeMatch",
			chains: chains(
				named("foo", Match{SourceType: SourceSameIPOrLoopback}),
				named("bar", Match{ApplicationProtocols: []string{h11}, SourceType: SourceExternal}),
				named("baz", Match{SourceType: SourceAny}),
			),
			lookups: []lookup{
				// ALPN picks the http/1.1 branch, which only holds EXTERNAL: no backtracking.
				{"local client with http/1.1", conn{dst: "127.0.0.1:1234", transport: "tls", alpn: h2h11, src: "127.0.0.1:111"}, ""},
				{"local client without ALPN", conn{dst: "127.0.0.1:1234", transport: "tls", src: "127.0.0.1:111"}, "foo"},
				{"external client with http/1.1", conn{dst: "8.8.8.8:1234", transport: "tls", alpn: h2h11, src: "4.4.4.4:111"}, "bar"},
				{"external client without ALPN", conn{dst: "8.8.8.8:1234", transport: "tls", src: "4.4.4.4:111"}, "baz"},
			},
		},
		{
			name: "MultipleFilterChainsWithDestinationPortMatch",
			chains: chains(
				named("foo", Match{}),
				named("bar", Match{DestinationPort: 8080}),
				named("baz", Match{DestinationPort: 8081}),
			),
			lookups: []lookup{
				{"default port", conn{dst: "127.0.0.1:1234", transport: "tls", src: "127.0.0.1:111"}, "foo"},
				{"port 8080", conn{dst: "127.0.0.1:8080", transport: "tls", src: "127.0.0.1:111"}, "bar"},
				{"port 8081", conn{dst: "127.0.0.1:8081", transport: "tls", src: "127.0.0.1:111"}, "baz"},
				{"UDS", conn{transport: "tls", src: "127.0.0.1:111"}, "foo"},
			},
		},
		{
			name: "MultipleFilterChainsWithDestinationIPMatch",
			chains: chains(
				named("foo", Match{}),
				named("bar", Match{PrefixRanges: pfx("192.168.0.1/32")}),
				named("baz", Match{PrefixRanges: pfx("192.168.0.0/16")}),
			),
			lookups: []lookup{
				{"default IP", conn{dst: "127.0.0.1:1234", transport: "tls", src: "127.0.0.1:111"}, "foo"},
				{"exact IP", conn{dst: "192.168.0.1:1234", transport: "tls", src: "127.0.0.1:111"}, "bar"},
				{"wider range", conn{dst: "192.168.1.1:1234", transport: "tls", src: "192.168.1.1:111"}, "baz"},
				{"UDS", conn{transport: "tls"}, "foo"},
			},
		},
		{
			name: "MultipleFilterChainsWithDirectSourceIPMatch",
			chains: chains(
				named("foo", Match{}),
				named("bar", Match{DirectSourcePrefixRanges: pfx("192.168.0.1/32")}),
				named("baz", Match{DirectSourcePrefixRanges: pfx("192.168.0.0/16")}),
			),
			lookups: []lookup{
				{"UDS", conn{dst: "", transport: "tls"}, "foo"},
				{"default IP", conn{dst: "127.0.0.1:1234", transport: "tls", src: "127.0.0.1:111", direct: "127.0.0.1:111"}, "foo"},
				{"exact direct IP", conn{dst: "127.0.0.1:1234", transport: "tls", src: "127.0.0.1:111", direct: "192.168.0.1:111"}, "bar"},
				{"wider direct range", conn{dst: "127.0.0.1:1234", transport: "tls", src: "127.0.0.1:111", direct: "192.168.1.1:111"}, "baz"},
				// direct_source_prefix_ranges sees the real peer, never a PROXY-protocol source.
				{"PROXY source does not count", conn{dst: "127.0.0.1:1234", transport: "tls", src: "192.168.0.1:111", direct: "10.1.1.1:5"}, "foo"},
			},
		},
		{
			name: "MultipleFilterChainsWithServerNamesMatch",
			chains: chains(
				named("", Match{}),
				named("", Match{ServerNames: []string{"server1.example.com"}}),
				named("", Match{ServerNames: []string{"*.com"}}),
			),
			lookups: []lookup{
				{"no SNI", conn{dst: "127.0.0.1:1234", transport: "tls", src: "127.0.0.1:111"}, "filter_chains[0]"},
				{"exact SNI", conn{dst: "127.0.0.1:1234", sni: "server1.example.com", transport: "tls", src: "127.0.0.1:111"}, "filter_chains[1]"},
				{"wildcard SNI", conn{dst: "127.0.0.1:1234", sni: "server2.example.com", transport: "tls", src: "127.0.0.1:111"}, "filter_chains[2]"},
				{"wildcard SNI other domain", conn{dst: "127.0.0.1:1234", sni: "www.wildcard.com", transport: "tls", src: "127.0.0.1:111"}, "filter_chains[2]"},
			},
		},
		{
			name: "MultipleFilterChainsWithTransportProtocolMatch",
			chains: chains(
				named("foo", Match{}),
				named("bar", Match{TransportProtocol: "tls"}),
			),
			lookups: []lookup{
				{"TCP client", conn{dst: "127.0.0.1:1234", transport: "raw_buffer", src: "127.0.0.1:111"}, "foo"},
				{"TLS client", conn{dst: "127.0.0.1:1234", transport: "tls", src: "127.0.0.1:111"}, "bar"},
			},
		},
		{
			name: "MultipleFilterChainsWithApplicationProtocolMatch",
			chains: chains(
				named("foo", Match{}),
				named("bar", Match{ApplicationProtocols: []string{"dummy", h2}}),
			),
			lookups: []lookup{
				{"no ALPN", conn{dst: "127.0.0.1:1234", transport: "tls", src: "127.0.0.1:111"}, "foo"},
				{"h2,http/1.1", conn{dst: "127.0.0.1:1234", transport: "tls", alpn: h2h11, src: "127.0.0.1:111"}, "bar"},
			},
		},
		{
			name: "MultipleFilterChainsWithMultipleRequirementsMatch",
			chains: chains(
				named("foo", Match{}),
				named("bar", Match{ServerNames: []string{"www.example.com", "server1.example.com"}, TransportProtocol: "tls", ApplicationProtocols: []string{"dummy", h2}}),
			),
			lookups: []lookup{
				{"no SNI, no ALPN", conn{dst: "127.0.0.1:1234", transport: "tls", src: "127.0.0.1:111"}, "foo"},
				// The SNI picks bar's branch, whose ALPN then fails: black-holed.
				{"SNI without ALPN", conn{dst: "127.0.0.1:1234", sni: "server1.example.com", transport: "tls", src: "127.0.0.1:111"}, ""},
				{"ALPN without SNI", conn{dst: "127.0.0.1:1234", transport: "tls", alpn: h2h11, src: "127.0.0.1:111"}, "foo"},
				{"SNI and ALPN", conn{dst: "127.0.0.1:1234", sni: "server1.example.com", transport: "tls", alpn: h2h11, src: "127.0.0.1:111"}, "bar"},
			},
		},

		// Portico cases for rules of the reference that Envoy's tests exercise only in part.
		{
			name: "ExactPortWithoutMatchDoesNotFallBackToPortless",
			chains: chains(
				named("any-port", Match{}),
				named("8080-tls", Match{DestinationPort: 8080, TransportProtocol: "tls"}),
			),
			def: &engine.FilterChain{},
			lookups: []lookup{
				{"8080 TLS", conn{dst: "10.0.0.1:8080", transport: "tls", src: "1.1.1.1:5"}, "8080-tls"},
				{"8080 plaintext takes the default, not any-port", conn{dst: "10.0.0.1:8080", transport: "raw_buffer", src: "1.1.1.1:5"}, DefaultChainName},
				{"other port", conn{dst: "10.0.0.1:9090", transport: "raw_buffer", src: "1.1.1.1:5"}, "any-port"},
			},
		},
		{
			name: "LongestDestinationPrefixIsExclusive",
			chains: chains(
				named("wide", Match{PrefixRanges: pfx("10.0.0.0/8")}),
				named("narrow-tls", Match{PrefixRanges: pfx("10.1.0.0/16"), TransportProtocol: "tls"}),
			),
			lookups: []lookup{
				{"narrow TLS", conn{dst: "10.1.2.3:80", transport: "tls", src: "1.1.1.1:5"}, "narrow-tls"},
				{"narrow plaintext dead-ends", conn{dst: "10.1.2.3:80", transport: "raw_buffer", src: "1.1.1.1:5"}, ""},
				{"wide", conn{dst: "10.2.2.3:80", transport: "raw_buffer", src: "1.1.1.1:5"}, "wide"},
			},
		},
		{
			name: "WildcardServerNames",
			chains: chains(
				named("exact", Match{ServerNames: []string{"api.example.com"}}),
				named("sub", Match{ServerNames: []string{"*.example.com"}}),
				named("deep", Match{ServerNames: []string{"*.b.example.com"}}),
				named("tld", Match{ServerNames: []string{"*.com"}}),
				named("none", Match{}),
			),
			lookups: []lookup{
				{"exact beats wildcard", conn{dst: "10.0.0.1:443", sni: "api.example.com", transport: "tls", src: "1.1.1.1:5"}, "exact"},
				{"longest suffix first", conn{dst: "10.0.0.1:443", sni: "a.b.example.com", transport: "tls", src: "1.1.1.1:5"}, "deep"},
				{"one level", conn{dst: "10.0.0.1:443", sni: "www.example.com", transport: "tls", src: "1.1.1.1:5"}, "sub"},
				{"bare domain is not *.example.com", conn{dst: "10.0.0.1:443", sni: "example.com", transport: "tls", src: "1.1.1.1:5"}, "tld"},
				{"b.example.com is not *.b.example.com", conn{dst: "10.0.0.1:443", sni: "b.example.com", transport: "tls", src: "1.1.1.1:5"}, "sub"},
				{"upper-case SNI", conn{dst: "10.0.0.1:443", sni: "WWW.Example.COM", transport: "tls", src: "1.1.1.1:5"}, "sub"},
				{"other TLD", conn{dst: "10.0.0.1:443", sni: "example.org", transport: "tls", src: "1.1.1.1:5"}, "none"},
				{"trailing dot", conn{dst: "10.0.0.1:443", sni: "com.", transport: "tls", src: "1.1.1.1:5"}, "none"},
				{"no SNI", conn{dst: "10.0.0.1:443", transport: "tls", src: "1.1.1.1:5"}, "none"},
			},
		},
		{
			name: "ApplicationProtocolsInClientOrder",
			chains: chains(
				named("h2", Match{ApplicationProtocols: []string{"h2"}}),
				named("h11", Match{ApplicationProtocols: []string{"http/1.1"}}),
				named("none", Match{}),
			),
			lookups: []lookup{
				{"h2 first", conn{dst: "10.0.0.1:443", transport: "tls", alpn: []string{"h2", "http/1.1"}, src: "1.1.1.1:5"}, "h2"},
				{"http/1.1 first", conn{dst: "10.0.0.1:443", transport: "tls", alpn: []string{"http/1.1", "h2"}, src: "1.1.1.1:5"}, "h11"},
				{"unknown first", conn{dst: "10.0.0.1:443", transport: "tls", alpn: []string{"spdy/3", "h2"}, src: "1.1.1.1:5"}, "h2"},
				{"none known", conn{dst: "10.0.0.1:443", transport: "tls", alpn: []string{"spdy/3"}, src: "1.1.1.1:5"}, "none"},
			},
		},
		{
			name: "SourceTypeLocality",
			chains: chains(
				named("local", Match{SourceType: SourceSameIPOrLoopback}),
				named("any", Match{}),
			),
			lookups: []lookup{
				{"127.0.0.1 is local", conn{dst: "10.0.0.1:80", src: "127.0.0.1:5"}, "local"},
				{"::1 is local", conn{dst: "[2001:db8::1]:80", src: "[::1]:5"}, "local"},
				{"127.0.0.2 is not", conn{dst: "10.0.0.1:80", src: "127.0.0.2:5"}, "any"},
				{"same IP as local", conn{dst: "10.0.0.1:80", src: "10.0.0.1:5"}, "local"},
				{"same IP, mapped", conn{dst: "[::ffff:10.0.0.1]:80", src: "10.0.0.1:5"}, "local"},
				{"other IP", conn{dst: "10.0.0.1:80", src: "10.0.0.2:5"}, "any"},
			},
		},
		{
			name: "SourceTypeExternalHasNoFallbackToAny",
			chains: chains(
				named("ext-tls", Match{SourceType: SourceExternal, TransportProtocol: "tls"}),
				named("ext", Match{SourceType: SourceExternal, SourcePorts: []uint32{7}}),
				named("any", Match{}),
			),
			lookups: []lookup{
				{"external port 7", conn{dst: "10.0.0.1:80", src: "10.9.9.9:7"}, "ext"},
				{"external other port dead-ends", conn{dst: "10.0.0.1:80", src: "10.9.9.9:8"}, ""},
				{"local goes to ANY", conn{dst: "10.0.0.1:80", src: "127.0.0.1:8"}, "any"},
			},
		},
		{
			name: "SourceTypeBranchIsFinal",
			chains: chains(
				named("local-from-10.0.0.1", Match{SourceType: SourceSameIPOrLoopback, SourcePrefixRanges: pfx("10.0.0.1/32")}),
				named("any", Match{}),
			),
			lookups: []lookup{
				{"local, in range", conn{dst: "10.0.0.1:80", src: "10.0.0.1:5"}, "local-from-10.0.0.1"},
				// Local (same IP), so the LOCAL branch is taken; its source range misses and
				// the walk does not go back to ANY.
				{"local, out of range dead-ends", conn{dst: "10.0.0.2:80", src: "10.0.0.2:5"}, ""},
				{"external goes to ANY", conn{dst: "10.0.0.2:80", src: "10.0.0.9:5"}, "any"},
			},
		},
		{
			name: "SourcePrefixAndPorts",
			chains: chains(
				named("pod-http", Match{SourcePrefixRanges: pfx("10.244.0.0/16"), SourcePorts: []uint32{80, 8080}}),
				named("pod", Match{SourcePrefixRanges: pfx("10.244.0.0/16")}),
				named("host", Match{SourcePrefixRanges: pfx("10.244.1.7/32")}),
				named("rest", Match{}),
			),
			lookups: []lookup{
				{"pod port 8080", conn{dst: "10.0.0.1:80", src: "10.244.3.3:8080"}, "pod-http"},
				{"pod other port", conn{dst: "10.0.0.1:80", src: "10.244.3.3:5555"}, "pod"},
				{"host /32 wins, ports ignored", conn{dst: "10.0.0.1:80", src: "10.244.1.7:80"}, "host"},
				{"elsewhere", conn{dst: "10.0.0.1:80", src: "192.0.2.1:80"}, "rest"},
				{"v4-mapped source treated as IPv4", conn{dst: "10.0.0.1:80", src: "[::ffff:10.244.3.3]:80"}, "pod-http"},
			},
		},
		{
			name: "AddressFamiliesDoNotMix",
			chains: chains(
				named("v4-all", Match{PrefixRanges: pfx("0.0.0.0/0")}),
				named("v6-doc", Match{PrefixRanges: pfx("2001:db8::/32")}),
				named("mapped-range", Match{PrefixRanges: pfx("::ffff:192.0.2.0/120")}),
			),
			lookups: []lookup{
				{"IPv4", conn{dst: "10.0.0.1:80", src: "1.1.1.1:5"}, "v4-all"},
				{"IPv6 not in 0.0.0.0/0", conn{dst: "[2001:db9::1]:80", src: "1.1.1.1:5"}, ""},
				{"IPv6 in range", conn{dst: "[2001:db8::1]:80", src: "1.1.1.1:5"}, "v6-doc"},
				{"mapped range is 192.0.2.0/24", conn{dst: "192.0.2.9:80", src: "1.1.1.1:5"}, "mapped-range"},
				{"mapped destination", conn{dst: "[::ffff:192.0.2.9]:80", src: "1.1.1.1:5"}, "mapped-range"},
				{"UDS is 255.255.255.255", conn{}, "v4-all"},
			},
		},
		{
			name:   "DefaultChainOnly",
			chains: nil,
			def:    &engine.FilterChain{Name: "dflt"},
			lookups: []lookup{
				{"anything", conn{dst: "10.0.0.1:80", src: "1.1.1.1:5"}, "dflt"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Build(tt.chains, tt.def)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			for _, l := range tt.lookups {
				info := l.c.info(t)
				got, ok := m.FindChainName(info)
				if !ok {
					got = ""
				}
				if got != l.want {
					t.Errorf("%s: chain %q, want %q", l.what, got, l.want)
				}
				fc := m.FindFilterChain(info)
				switch {
				case l.want == "" && fc != nil:
					t.Errorf("%s: FindFilterChain = %q, want nil", l.what, fc.Name)
				case l.want != "" && fc == nil:
					t.Errorf("%s: FindFilterChain = nil, want %q", l.what, l.want)
				case fc != nil && fc != chainFor(tt.chains, tt.def, l.want):
					t.Errorf("%s: FindFilterChain returned a different chain than FindChainName", l.what)
				}
			}
		})
	}
}

// chainFor finds the engine chain that a label names.
func chainFor(cs []Chain, def *engine.FilterChain, label string) *engine.FilterChain {
	for i, c := range cs {
		if chainLabel(c.Name, i) == label {
			return c.Chain
		}
	}
	return def
}

func TestBuildRejects(t *testing.T) {
	fc := func(name string, m Match) Chain {
		return Chain{Name: name, Match: m, Chain: &engine.FilterChain{Name: name}}
	}
	tests := []struct {
		name   string
		chains []Chain
		def    *engine.FilterChain
		want   []string // substrings of the error
	}{
		{"BadListenerConfigNoFilterChains", nil, nil, []string{"no filter chains specified"}},
		{
			"MultipleFilterChainsWithSameMatch",
			[]Chain{fc("foo", Match{TransportProtocol: "tls"}), fc("bar", Match{TransportProtocol: "tls"})},
			nil,
			[]string{"filter chain 'bar' has the same matching rules defined as 'foo'", "transport_protocol: tls"},
		},
		{
			"SameMatchUnnamed",
			[]Chain{fc("", Match{}), fc("", Match{})},
			nil,
			[]string{"filter chain 'filter_chains[1]' has the same matching rules defined as 'filter_chains[0]'"},
		},
		{
			"MultipleFilterChainsWithOverlappingRules",
			[]Chain{fc("foo", Match{ServerNames: []string{"example.com"}}), fc("bar", Match{ServerNames: []string{"example.com", "www.example.com"}})},
			nil,
			[]string{"multiple filter chains with overlapping matching rules are defined", "'foo' and 'bar'", "server_name=example.com"},
		},
		{
			"OverlapAfterMasking",
			[]Chain{fc("a", Match{SourcePrefixRanges: pfx("10.0.0.1/24")}), fc("b", Match{SourcePrefixRanges: pfx("10.0.0.0/24")})},
			nil,
			[]string{"overlapping matching rules", "'a' and 'b'", "source_prefix_range=10.0.0.0/24"},
		},
		{
			"OverlapAfterLowerCasing",
			[]Chain{fc("a", Match{ServerNames: []string{"Example.com"}}), fc("b", Match{ServerNames: []string{"example.com"}})},
			nil,
			[]string{"overlapping matching rules", "'a' and 'b'"},
		},
		{
			"OverlapInSourcePorts",
			[]Chain{fc("a", Match{SourcePorts: []uint32{100, 200}}), fc("b", Match{SourcePorts: []uint32{200}})},
			nil,
			[]string{"overlapping matching rules", "'a' and 'b'", "source_port=200"},
		},
		{
			"OverlapWithinOneChain",
			[]Chain{fc("a", Match{ApplicationProtocols: []string{"h2", "h2"}})},
			nil,
			[]string{"overlapping matching rules", "filter chain 'a' lists the same value twice"},
		},
		{
			"OverlapExplicitCatchAllAndNoRanges",
			[]Chain{fc("a", Match{PrefixRanges: pfx("0.0.0.0/0")}), fc("b", Match{})},
			nil,
			[]string{"overlapping matching rules", "'a' and 'b'"},
		},
		{
			"OverlapMappedAndPlainIPv4",
			[]Chain{fc("a", Match{PrefixRanges: pfx("::ffff:10.0.0.0/104")}), fc("b", Match{PrefixRanges: pfx("10.0.0.0/8")})},
			nil,
			[]string{"overlapping matching rules", "'a' and 'b'", "prefix_range=10.0.0.0/8"},
		},
		{
			"SingleFilterChainWithInvalidServerNamesMatch",
			[]Chain{fc("", Match{ServerNames: []string{"*w.example.com"}})},
			nil,
			[]string{"filter chain 'filter_chains[0]'", "partial wildcards are not supported in \"server_names\"", "*w.example.com"},
		},
		{
			"PartialWildcardInTheMiddle",
			[]Chain{fc("mid", Match{ServerNames: []string{"ok.com", "www.*.com"}})},
			nil,
			[]string{"filter chain 'mid'", "partial wildcards", "server_names[1]"},
		},
		{
			"BareStar",
			[]Chain{fc("star", Match{ServerNames: []string{"*"}})},
			nil,
			[]string{"filter chain 'star'", "partial wildcards"},
		},
		{
			"SingleFilterChainWithInvalidDestinationIPMatch",
			[]Chain{fc("foo", Match{PrefixRanges: []netip.Prefix{{}}})},
			nil,
			[]string{"filter chain 'foo'", "malformed IP address in prefix_ranges[0]"},
		},
		{
			"InvalidSourcePrefix",
			[]Chain{fc("foo", Match{SourcePrefixRanges: pfx("10.0.0.0/8"), DirectSourcePrefixRanges: []netip.Prefix{{}}})},
			nil,
			[]string{"filter chain 'foo'", "direct_source_prefix_ranges[0]"},
		},
		{
			"DestinationPortOutOfRange",
			[]Chain{fc("foo", Match{DestinationPort: 65536})},
			nil,
			[]string{"filter chain 'foo'", "destination_port 65536 is out of range"},
		},
		{
			"SourcePortZero",
			[]Chain{fc("", Match{}), fc("", Match{SourcePorts: []uint32{80, 0}})},
			nil,
			[]string{"filter chain 'filter_chains[1]'", "source_ports[1] 0 is out of range"},
		},
		{
			"SourcePortTooLarge",
			[]Chain{fc("foo", Match{SourcePorts: []uint32{70000}})},
			nil,
			[]string{"filter chain 'foo'", "source_ports[0] 70000"},
		},
		{
			"UnknownSourceType",
			[]Chain{fc("foo", Match{SourceType: 3})},
			nil,
			[]string{"filter chain 'foo'", "unknown source_type 3"},
		},
		{
			"NilEngineChain",
			[]Chain{{Name: "foo"}},
			nil,
			[]string{"filter chain 'foo' has no network filter chain"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Build(tt.chains, tt.def)
			if err == nil {
				t.Fatalf("Build succeeded (%d chains), want error", len(m.ChainNames()))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestBuildAccepts(t *testing.T) {
	fc := func(name string, m Match) Chain {
		return Chain{Name: name, Match: m, Chain: &engine.FilterChain{Name: name}}
	}
	tests := []struct {
		name   string
		chains []Chain
	}{
		// Envoy requires unique names only with filter_chain_matcher.
		{"DuplicateNames", []Chain{fc("x", Match{DestinationPort: 1}), fc("x", Match{DestinationPort: 2})}},
		// Different destination ports never overlap.
		{"SameRestDifferentPorts", []Chain{fc("a", Match{ServerNames: []string{"a.com"}}), fc("b", Match{DestinationPort: 443, ServerNames: []string{"a.com"}})}},
		// An exact name and the wildcard of its parent are different keys.
		{"ExactAndWildcard", []Chain{fc("a", Match{ServerNames: []string{"www.a.com"}}), fc("b", Match{ServerNames: []string{"*.a.com"}})}},
		// A default chain with an empty filter_chains list.
		{"OnlyDefault", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Build(tt.chains, &engine.FilterChain{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNeedsLocalAddress(t *testing.T) {
	for _, tt := range []struct {
		name string
		m    Match
		want bool
	}{
		{"empty", Match{}, false},
		{"port, SNI, ALPN, source ranges and ports", Match{DestinationPort: 80, ServerNames: []string{"a"}, ApplicationProtocols: []string{"h2"}, SourcePrefixRanges: pfx("10.0.0.0/8"), DirectSourcePrefixRanges: pfx("10.0.0.0/8"), SourcePorts: []uint32{1}}, false},
		{"prefix ranges", Match{PrefixRanges: pfx("10.0.0.0/8")}, true},
		{"source type local", Match{SourceType: SourceSameIPOrLoopback}, true},
		{"source type external", Match{SourceType: SourceExternal}, true},
	} {
		m, err := Build([]Chain{{Match: tt.m, Chain: &engine.FilterChain{}}}, nil)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := m.NeedsLocalAddress(); got != tt.want {
			t.Errorf("%s: NeedsLocalAddress = %v, want %v", tt.name, got, tt.want)
		}
	}
	var _ engine.FilterChainManager = (*Manager)(nil)
}

func TestFindChainName(t *testing.T) {
	cs := chains(named("", Match{DestinationPort: 80}), named("tls", Match{DestinationPort: 443}))
	info := conn{dst: "10.0.0.1:22", src: "1.1.1.1:5"}.info(t)

	m, err := Build(cs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if name, ok := m.FindChainName(info); ok {
		t.Errorf("no match and no default: got %q, ok", name)
	}
	if name, _ := m.FindChainName(conn{dst: "10.0.0.1:80", src: "1.1.1.1:5"}.info(t)); name != "filter_chains[0]" {
		t.Errorf("unnamed chain reported as %q", name)
	}
	if got := m.ChainNames(); len(got) != 2 || got[0] != "filter_chains[0]" || got[1] != "tls" {
		t.Errorf("ChainNames = %q", got)
	}

	m, err = Build(cs, &engine.FilterChain{})
	if err != nil {
		t.Fatal(err)
	}
	if name, ok := m.FindChainName(info); !ok || name != DefaultChainName {
		t.Errorf("unnamed default: got %q, %v", name, ok)
	}
	m, err = Build(cs, &engine.FilterChain{Name: "catch"})
	if err != nil {
		t.Fatal(err)
	}
	if name, ok := m.FindChainName(info); !ok || name != "catch" {
		t.Errorf("named default: got %q, %v", name, ok)
	}
}

// Package dnstest is a DNS server for tests: it listens on loopback (UDP and TCP on one
// port) and answers A and AAAA queries from records the test sets and changes while it
// runs.
package dnstest

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	mdns "github.com/miekg/dns"
)

// Server is a loopback DNS server.
type Server struct {
	Addr netip.AddrPort // UDP and TCP

	udp, tcp *mdns.Server

	// TruncateUDP answers every UDP query with an empty, truncated reply, so that
	// clients must ask again over TCP.
	TruncateUDP atomic.Bool

	mu      sync.Mutex
	zone    map[string]*entry // by lower-case FQDN
	queries map[string]int    // by lower-case FQDN + "/" + type
}

type entry struct {
	addrs []netip.Addr
	ttl   uint32
	rcode int  // not RcodeSuccess: answered with it
	drop  bool // no answer at all (the client times out)
	cname string
}

// Start starts a server for the test's duration.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{zone: map[string]*entry{}, queries: map[string]int{}}
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ; try++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if try == 20 {
			t.Fatalf("dnstest: no port free for both UDP and TCP: %v", err)
		}
	}
	s.Addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	h := mdns.HandlerFunc(s.serve)
	s.udp = &mdns.Server{PacketConn: pc, Handler: h}
	s.tcp = &mdns.Server{Listener: ln, Handler: h}
	started := make(chan struct{}, 2)
	s.udp.NotifyStartedFunc = func() { started <- struct{}{} }
	s.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	<-started
	<-started
	t.Cleanup(func() {
		s.udp.Shutdown()
		s.tcp.Shutdown()
	})
	return s
}

func key(name string) string { return strings.ToLower(mdns.Fqdn(name)) }

// Set makes name answer with addrs (A and AAAA by family) and this TTL in seconds; no
// addresses: NODATA.
func (s *Server) Set(name string, ttl uint32, addrs ...string) {
	e := &entry{ttl: ttl}
	for _, a := range addrs {
		e.addrs = append(e.addrs, netip.MustParseAddr(a))
	}
	s.mu.Lock()
	s.zone[key(name)] = e
	s.mu.Unlock()
}

// CNAME makes name an alias of target.
func (s *Server) CNAME(name string, ttl uint32, target string) {
	s.mu.Lock()
	s.zone[key(name)] = &entry{ttl: ttl, cname: key(target)}
	s.mu.Unlock()
}

// Remove makes name unknown: NXDOMAIN.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	delete(s.zone, key(name))
	s.mu.Unlock()
}

// Fail makes queries for name fail with SERVFAIL.
func (s *Server) Fail(name string) {
	s.mu.Lock()
	s.zone[key(name)] = &entry{rcode: mdns.RcodeServerFailure}
	s.mu.Unlock()
}

// Drop makes queries for name go unanswered.
func (s *Server) Drop(name string) {
	s.mu.Lock()
	s.zone[key(name)] = &entry{drop: true}
	s.mu.Unlock()
}

// Queries counts the queries seen for name of type qtype ("A", "AAAA"; "A/udp",
// "A/tcp" count one transport).
func (s *Server) Queries(name, qtype string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[key(name)+"/"+qtype]
}

func (s *Server) serve(w mdns.ResponseWriter, req *mdns.Msg) {
	if len(req.Question) != 1 {
		m := new(mdns.Msg)
		m.SetRcode(req, mdns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	m := new(mdns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	udp := w.LocalAddr().Network() == "udp"
	s.mu.Lock()
	s.queries[name+"/"+mdns.TypeToString[q.Qtype]]++
	if udp {
		s.queries[name+"/"+mdns.TypeToString[q.Qtype]+"/udp"]++
	} else {
		s.queries[name+"/"+mdns.TypeToString[q.Qtype]+"/tcp"]++
	}
	if udp && s.TruncateUDP.Load() {
		s.mu.Unlock()
		m.Truncated = true
		w.WriteMsg(m)
		return
	}
	for hops := 0; hops < 8; hops++ {
		e := s.zone[name]
		switch {
		case e == nil:
			if hops == 0 {
				m.Rcode = mdns.RcodeNameError
			}
		case e.drop:
			s.mu.Unlock()
			return
		case e.rcode != mdns.RcodeSuccess:
			m.Rcode = e.rcode
		case e.cname != "":
			m.Answer = append(m.Answer, &mdns.CNAME{Hdr: hdr(name, mdns.TypeCNAME, e.ttl), Target: e.cname})
			name = e.cname
			continue
		default:
			for _, a := range e.addrs {
				switch {
				case a.Is4() && q.Qtype == mdns.TypeA:
					m.Answer = append(m.Answer, &mdns.A{Hdr: hdr(name, mdns.TypeA, e.ttl), A: a.AsSlice()})
				case a.Is6() && q.Qtype == mdns.TypeAAAA:
					m.Answer = append(m.Answer, &mdns.AAAA{Hdr: hdr(name, mdns.TypeAAAA, e.ttl), AAAA: a.AsSlice()})
				}
			}
		}
		break
	}
	s.mu.Unlock()
	w.WriteMsg(m)
}

func hdr(name string, t uint16, ttl uint32) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: ttl}
}

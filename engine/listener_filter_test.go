package engine_test

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/network/echo"
)

// needBytes waits until n bytes are peekable, then records them as the server name.
type needBytes struct{ n int }

func (needBytes) Name() string                                      { return "test.need_bytes" }
func (needBytes) OnAccept(*engine.ActiveSocket) engine.FilterStatus { return engine.StopIteration }
func (f needBytes) MaxReadBytes() int                               { return f.n }
func (f needBytes) OnData(s *engine.ActiveSocket, data []byte) engine.FilterStatus {
	if len(data) < f.n {
		return engine.StopIteration
	}
	s.Info.ServerName = s.Worker().Intern(data[:f.n])
	return engine.Continue
}

// restore pretends to be original_dst: it sets the destination to a fixed address.
type restore struct{ to netip.AddrPort }

func (restore) Name() string { return "test.restore" }
func (r restore) OnAccept(s *engine.ActiveSocket) engine.FilterStatus {
	s.Info.LocalAddr, s.Info.LocalAddrRestored = r.to, true
	return engine.Continue
}
func (restore) MaxReadBytes() int                                       { return 0 }
func (restore) OnData(*engine.ActiveSocket, []byte) engine.FilterStatus { return engine.Continue }

// bySNI picks the chain named like the server name, else the chain named "".
type bySNI map[string]*engine.FilterChain

func (m bySNI) FindFilterChain(info *engine.SocketInfo) *engine.FilterChain {
	if c, ok := m[info.ServerName]; ok {
		return c
	}
	return m[""]
}
func (bySNI) NeedsLocalAddress() bool { return false }

func echoNamed(name string) *engine.FilterChain {
	return &engine.FilterChain{Name: name, Filters: []engine.NetworkFilterFactory{echo.Factory{}}}
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("round trip %q: %v", msg, err)
	}
	if string(got) != msg {
		t.Fatalf("round trip: got %q want %q", got, msg)
	}
}

// TestListenerFilterPeekAcrossReads: a filter that needs 10 bytes gets them over two
// writes; the peeked bytes stay in the kernel and reach the chain chosen from them.
func TestListenerFilterPeekAcrossReads(t *testing.T) {
	_, ls := startServer(t, 1, nil, func(*engine.Server) []engine.ListenerConfig {
		return []engine.ListenerConfig{{Name: "peek", Address: loopback0,
			ListenerFilters:        []engine.ListenerFilter{needBytes{10}},
			ListenerFiltersTimeout: 5 * time.Second,
			FilterChains:           bySNI{"0123456789": echoNamed("digits")}}}
	})
	c, err := net.Dial("tcp", ls[0].Address().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("01234"))
	time.Sleep(50 * time.Millisecond)
	c.Write([]byte("56789"))
	got := make([]byte, 10)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "0123456789" {
		t.Fatalf("got %q, %v", got, err)
	}
	roundTrip(t, c, "more")
}

// TestListenerFiltersTimeout: a silent client is closed at the timeout (or passed on with
// continue_on_listener_filters_timeout) while another client on the same worker is served.
func TestListenerFiltersTimeout(t *testing.T) {
	for _, cont := range []bool{false, true} {
		name := "close"
		if cont {
			name = "continue"
		}
		t.Run(name, func(t *testing.T) {
			_, ls := startServer(t, 1, nil, func(*engine.Server) []engine.ListenerConfig {
				return []engine.ListenerConfig{
					{Name: "slow", Address: loopback0,
						ListenerFilters:                  []engine.ListenerFilter{needBytes{4}},
						ListenerFiltersTimeout:           300 * time.Millisecond,
						ContinueOnListenerFiltersTimeout: cont,
						FilterChains:                     bySNI{"": echoNamed("fallback")}},
					echoListener("other", true, false),
				}
			})
			silent, err := net.Dial("tcp", ls[0].Address().String())
			if err != nil {
				t.Fatal(err)
			}
			defer silent.Close()
			start := time.Now()
			// Meanwhile the same worker keeps serving others.
			other, err := net.Dial("tcp", ls[1].Address().String())
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			roundTrip(t, other, "served while another socket waits")
			waitFor(t, "downstream_pre_cx_timeout", func() bool {
				return ls[0].Stats(0).DownstreamPreCxTimeout.Value() == 1
			})
			if el := time.Since(start); el < 250*time.Millisecond {
				t.Errorf("timed out after %v, want about 300ms", el)
			}
			if cont {
				roundTrip(t, silent, "late")
				if n := ls[0].Stats(0).DownstreamCxTotal.Value(); n != 1 {
					t.Errorf("downstream_cx_total = %d, want 1", n)
				}
				return
			}
			silent.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := silent.Read(make([]byte, 1)); err == nil {
				t.Error("silent client was not closed")
			}
		})
	}
}

// TestUseOriginalDstHandoff: a use_original_dst listener hands sockets to the listener
// bound (or not bound) to the restored destination: exact address first, then the
// wildcard with that port; with no match it keeps the socket.
func TestUseOriginalDstHandoff(t *testing.T) {
	exact := netip.MustParseAddrPort("10.1.2.3:8080")
	wild := netip.MustParseAddrPort("0.0.0.0:8080")
	for _, tc := range []struct {
		name, want string
		to         netip.AddrPort
	}{
		{"exact", "exact", exact},
		{"wildcard", "wildcard", netip.MustParseAddrPort("10.9.9.9:8080")},
		{"no_match", "outbound", netip.MustParseAddrPort("10.9.9.9:9090")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ls := startServer(t, 2, nil, func(*engine.Server) []engine.ListenerConfig {
				return []engine.ListenerConfig{
					{Name: "outbound", Address: loopback0, UseOriginalDst: true,
						ListenerFilters: []engine.ListenerFilter{restore{tc.to}},
						FilterChains:    engine.SingleChain{Chain: echoNamed("outbound")}},
					{Name: "exact", Address: exact, NoBindToPort: true, FilterChains: engine.SingleChain{Chain: echoNamed("exact")}},
					// The target's own listener filters run after the hand-off.
					{Name: "wildcard", Address: wild, NoBindToPort: true, ListenerFilters: []engine.ListenerFilter{needBytes{3}},
						ExactBalance: true, FilterChains: bySNI{"abc": echoNamed("wildcard")}},
				}
			})
			c, err := net.Dial("tcp", ls[0].Address().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			roundTrip(t, c, "abc")
			byName := map[string]*engine.Listener{}
			for _, l := range ls {
				byName[l.Name()] = l
			}
			waitFor(t, "the connection on "+tc.want, func() bool {
				var n uint64
				for w := 0; w < 2; w++ {
					n += byName[tc.want].Stats(w).DownstreamCxTotal.Value()
				}
				return n == 1
			})
			var handed uint64
			for w := 0; w < 2; w++ {
				handed += byName["outbound"].Stats(w).DownstreamCxHandedOff.Value()
			}
			if want := uint64(1); tc.want == "outbound" {
				if handed != 0 {
					t.Errorf("handed off %d, want 0", handed)
				}
			} else if handed != want {
				t.Errorf("handed off %d, want 1", handed)
			}
		})
	}
}

// TestHandoffCarriesReadBytes: bytes the first listener's filters read (they are taken
// from the kernel, not peeked) go with the socket to the use_original_dst target, on this
// worker or, by exact balance, on another; the target's filters and its connection see
// them from the first byte.
func TestHandoffCarriesReadBytes(t *testing.T) {
	wild := netip.MustParseAddrPort("0.0.0.0:8080")
	_, ls := startServer(t, 2, nil, func(*engine.Server) []engine.ListenerConfig {
		return []engine.ListenerConfig{
			{Name: "outbound", Address: loopback0, UseOriginalDst: true,
				ListenerFilters: []engine.ListenerFilter{needBytes{2}, restore{netip.MustParseAddrPort("10.9.9.9:8080")}},
				FilterChains:    engine.SingleChain{Chain: echoNamed("outbound")}},
			{Name: "wildcard", Address: wild, NoBindToPort: true, ListenerFilters: []engine.ListenerFilter{needBytes{3}},
				ExactBalance: true, FilterChains: bySNI{"abc": echoNamed("wildcard")}},
		}
	})
	for i := 0; i < 8; i++ {
		c, err := net.Dial("tcp", ls[0].Address().String())
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, "abcdef")
		c.Close()
	}
	var n uint64
	for w := 0; w < 2; w++ {
		n += ls[1].Stats(w).DownstreamCxTotal.Value()
	}
	if n != 8 {
		t.Fatalf("wildcard served %d of 8", n)
	}
}

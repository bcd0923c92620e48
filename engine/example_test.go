package engine_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/portico-proxy/portico/engine"
)

// echoFactory makes one echoFilter per connection.
type echoFactory struct{}

func (echoFactory) Name() string { return "example.echo" }

func (echoFactory) CreateFilter(c *engine.Connection) engine.ReadFilter {
	f := &echoFilter{c: c}
	c.AddCallbacks(f) // for the watermarks: see OnAboveWriteBufferHighWatermark
	return f
}

// echoFilter writes back what it reads. data is the worker's scratch buffer, valid only
// during OnData; Write copies whatever the kernel does not take at once.
type echoFilter struct{ c *engine.Connection }

func (*echoFilter) OnNewConnection() engine.FilterStatus { return engine.Continue }

func (f *echoFilter) OnData(data []byte, endStream bool) engine.FilterStatus {
	f.c.Write(data, endStream)
	return engine.StopIteration
}

func (*echoFilter) OnEvent(engine.ConnectionEvent) {}

// A client that sends without reading fills the write buffer: stop reading it until it
// has taken half, so memory stays bounded.
func (f *echoFilter) OnAboveWriteBufferHighWatermark() { f.c.ReadDisable(true) }
func (f *echoFilter) OnBelowWriteBufferLowWatermark()  { f.c.ReadDisable(false) }

// An echo server on two workers.
func ExampleServer() {
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 2})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	l, err := srv.AddListener(engine.ListenerConfig{
		Name:         "echo",
		Address:      netip.MustParseAddrPort("127.0.0.1:0"), // port 0: the kernel picks one
		FilterChains: engine.SingleChain{Chain: &engine.FilterChain{Name: "echo", Filters: []engine.NetworkFilterFactory{echoFactory{}}}},
	})
	if err != nil {
		panic(err)
	}
	srv.Start()

	c, err := net.Dial("tcp", l.Address().String())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	c.Write([]byte("hello, engine"))
	c.(*net.TCPConn).CloseWrite()
	reply, _ := io.ReadAll(c)
	fmt.Printf("%s\n", reply)
	// Output: hello, engine
}

// lineFactory serves a tiny line protocol: each line comes back upper-cased; "QUIT" says
// goodbye and closes.
type lineFactory struct{}

func (lineFactory) Name() string { return "example.lines" }

func (lineFactory) CreateFilter(c *engine.Connection) engine.ReadFilter { return &lineFilter{c: c} }

type lineFilter struct {
	c       *engine.Connection
	partial []byte // a line split across reads: data is only valid during OnData, so keep a copy
}

func (*lineFilter) OnNewConnection() engine.FilterStatus { return engine.Continue }

func (f *lineFilter) OnData(data []byte, endStream bool) engine.FilterStatus {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if len(f.partial)+len(data) > 4096 {
				f.c.Close(engine.CloseReset) // a line too long: a bad byte closes one connection
				return engine.StopIteration
			}
			f.partial = append(f.partial, data...)
			break
		}
		line := data[:i]
		if len(f.partial) > 0 {
			line = append(f.partial, line...)
			f.partial = f.partial[:0]
		}
		data = data[i+1:]
		if string(line) == "QUIT" {
			f.c.Write([]byte("BYE\n"), true)
			f.c.Close(engine.CloseFlushWrite)
			return engine.StopIteration
		}
		f.c.Write(append(bytes.ToUpper(line), '\n'), false)
	}
	if endStream {
		f.c.Close(engine.CloseFlushWrite)
	}
	return engine.StopIteration
}

// A custom protocol is a NetworkFilterFactory and the ReadFilter it makes per connection.
func ExampleNetworkFilterFactory() {
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	l, err := srv.AddListener(engine.ListenerConfig{
		Name:         "lines",
		Address:      netip.MustParseAddrPort("127.0.0.1:0"),
		FilterChains: engine.SingleChain{Chain: &engine.FilterChain{Name: "lines", Filters: []engine.NetworkFilterFactory{lineFactory{}}}},
	})
	if err != nil {
		panic(err)
	}
	srv.Start()

	c, err := net.Dial("tcp", l.Address().String())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	// The second line arrives in two pieces; the filter joins them.
	c.Write([]byte("hello\nsplit li"))
	c.Write([]byte("ne\nQUIT\n"))
	r := bufio.NewScanner(c)
	for r.Scan() {
		fmt.Println(r.Text())
	}
	// Output:
	// HELLO
	// SPLIT LINE
	// BYE
}

// Listeners change while the server runs, as Envoy's LDS changes them: a filter-chain-only
// update swaps the chains in place (connections on the chains it keeps stay; those on the
// dropped ones drain for the drain time, then close), UpdateListener replaces the rest of
// the listener keeping its bound sockets, and RemoveListener drains and closes it.
func ExampleServer_UpdateListenerChains() {
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 1, DrainTime: 100 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	v1 := &engine.FilterChain{Name: "v1", Filters: []engine.NetworkFilterFactory{echoFactory{}}}
	l, err := srv.AddListener(engine.ListenerConfig{Name: "edge", Address: netip.MustParseAddrPort("127.0.0.1:0"),
		FilterChains: engine.SingleChain{Chain: v1}})
	if err != nil {
		panic(err)
	}
	srv.Start()
	old, err := net.Dial("tcp", l.Address().String())
	if err != nil {
		panic(err)
	}
	defer old.Close()

	// v2 replaces v1, which drains: its connection is closed at the drain deadline.
	v2 := &engine.FilterChain{Name: "v2", Filters: []engine.NetworkFilterFactory{lineFactory{}}}
	if err := srv.UpdateListenerChains("edge", engine.SingleChain{Chain: v2}, []*engine.FilterChain{v1}); err != nil {
		panic(err)
	}
	_, chains := srv.DrainingCounts()
	fmt.Println("chains draining:", chains)
	_, err = io.ReadAll(old) // the peer's close, a drain time later
	fmt.Println("old connection closed:", err == nil)

	c, err := net.Dial("tcp", l.Address().String())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	c.Write([]byte("new chain\nQUIT\n"))
	r := bufio.NewScanner(c)
	for r.Scan() {
		fmt.Println(r.Text())
	}
	// Output:
	// chains draining: 1
	// old connection closed: true
	// NEW CHAIN
	// BYE
}

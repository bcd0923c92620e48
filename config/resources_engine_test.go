package config

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
)

// The resources as the listener manager will use them, on a running engine: an LDS
// listener added, then updated in place (ChainsOnly) with UpdateListenerChains(Kept,
// Drained): a connection on the kept chain stays, one on the changed chain is drained and
// closed, and new connections get the new chains.
func TestListenerResourceOnEngine(t *testing.T) {
	dir := t.TempDir()
	srcChain := func(name, src, extra string) string {
		return "- name: " + name + "\n  filter_chain_match: {direct_source_prefix_ranges: [{address_prefix: " + src + ", prefix_len: 32}]}\n" +
			"  filters:\n  - name: envoy.filters.network.echo\n" + extra
	}
	p := writeFile(t, dir, "lds.yaml", discovery("1", echoListener("a", 0, srcChain("keep", "127.0.0.1", ""), srcChain("change", "127.0.0.2", ""))))
	reg := engine.NewClusterRegistry()
	o := Options{Clusters: reg}
	v1 := parseL(t, p, o, nil)
	if len(v1.Listeners) != 1 {
		t.Fatalf("v1: %s", errorTexts(v1.Errors))
	}
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 1, Clusters: reg, DrainTime: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	l, err := srv.AddListener(v1.Listeners[0].Config)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	addr := l.Address().String()

	dial := func(src string) (net.Conn, *bufio.Reader) {
		t.Helper()
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	echoes := func(c net.Conn, r *bufio.Reader) bool {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		defer c.SetDeadline(time.Time{})
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return false
		}
		line, err := r.ReadString('\n')
		return err == nil && line == "ping\n"
	}
	kept, keptR := dial("127.0.0.1")
	changed, changedR := dial("127.0.0.2")
	if !echoes(kept, keptR) || !echoes(changed, changedR) {
		t.Fatal("v1 does not echo")
	}
	if c, cr := dial("127.0.0.3"); echoes(c, cr) {
		t.Fatal("v1 serves 127.0.0.3, which no chain of it matches")
	}

	// v2: "change" gets a different match (127.0.0.2 and .3), "keep" is the same.
	p = writeFile(t, dir, "lds.yaml", discovery("2", echoListener("a", 0, srcChain("keep", "127.0.0.1", ""),
		strings.Replace(srcChain("change", "127.0.0.2", ""), "prefix_len: 32}]", "prefix_len: 32}, {address_prefix: 127.0.0.3, prefix_len: 32}]", 1))))
	prev := byListener(v1)
	v2 := parseL(t, p, o, prev)
	if len(v2.Listeners) != 1 || v2.Listeners[0].Change != ChainsOnly {
		t.Fatalf("v2: %v %s", v2.Listeners, errorTexts(v2.Errors))
	}
	r := v2.Listeners[0]
	if err := srv.UpdateListenerChains("a", r.Config.FilterChains, r.Drained(prev["a"])); err != nil {
		t.Fatal(err)
	}
	// The changed chain's connection drains and is closed (bounded wait).
	changed.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadAll(changedR); err != nil {
		t.Errorf("the drained connection was not closed: %v", err)
	}
	// The kept chain's connection is still served, and new ones get the new chains.
	if !echoes(kept, keptR) {
		t.Error("the kept chain's connection no longer echoes")
	}
	if c, cr := dial("127.0.0.3"); !echoes(c, cr) {
		t.Error("a connection from 127.0.0.3 (the new chain) is not served")
	}
}

// An LDS tcp_proxy naming a cluster CDS has not brought yet: accepted; its connections
// fail until the CDS file's cluster is added, then they reach it.
func TestClusterResourceOnEngine(t *testing.T) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	dir := t.TempDir()
	reg := engine.NewClusterRegistry()
	o := Options{Clusters: reg}
	lds := parseL(t, writeFile(t, dir, "lds.yaml", discovery("1", tcpListener("t", 0, "later"))), o, nil)
	if len(lds.Listeners) != 1 {
		t.Fatalf("lds: %s", errorTexts(lds.Errors))
	}
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 1, Clusters: reg, DrainTime: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	l, err := srv.AddListener(lds.Listeners[0].Config)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	try := func() bool {
		c, err := net.DialTimeout("tcp", l.Address().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return false
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		return err == nil && line == "ping\n"
	}
	if try() {
		t.Fatal("proxied before the cluster exists")
	}
	port := backend.Addr().(*net.TCPAddr).Port
	cds, err := ParseClusters(writeFile(t, dir, "cds.yaml", discovery("1", staticCluster("later", port))), 1, o, nil)
	if err != nil || len(cds.Clusters) != 1 {
		t.Fatalf("cds: %v %s", err, errorTexts(cds.Errors))
	}
	if err := srv.AddCluster(cds.Clusters[0].Cluster); err != nil {
		t.Fatal(err)
	}
	if !try() {
		t.Error("not proxied once CDS added the cluster")
	}
}

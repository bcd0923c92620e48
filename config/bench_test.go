package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// manyListeners returns a bootstrap of n small echo listeners on distinct loopback
// addresses (127.x.y.z, so that n may exceed the number of ports), in block YAML as a
// generator would write it: about 260 bytes a listener, 50 MB for 191,752 of them.
func manyListeners(n int) []byte {
	var b bytes.Buffer
	b.Grow(n * 300)
	b.WriteString("static_resources:\n  listeners:\n")
	for i := range n {
		fmt.Fprintf(&b, `  - name: listener_%d
    address:
      socket_address:
        address: 127.%d.%d.%d
        port_value: 10000
    filter_chains:
    - filters:
      - name: envoy.filters.network.echo
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo
`, i, 1+i>>16, i>>8&0xff, i&0xff)
	}
	return b.Bytes()
}

// manyBadListeners is n tcp_proxy listeners that each have three errors of different
// stages: an unknown field (the JSON pass), an unsupported one (the subset check) and a
// cluster that is not defined (translation), with some clusters defined.
func manyBadListeners(n int) []byte {
	var b bytes.Buffer
	b.WriteString("static_resources:\n  clusters:\n")
	for i := range 100 {
		fmt.Fprintf(&b, `  - name: c%d
    load_assignment:
      cluster_name: c%d
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } } }] }]
`, i, i)
	}
	b.WriteString("  listeners:\n")
	for i := range n {
		fmt.Fprintf(&b, `  - name: listener_%d
    bogus: 1
    enable_mptcp: true
    address: { socket_address: { address: 127.%d.%d.%d, port_value: 10000 } }
    listener_filters: [{ name: envoy.filters.listener.tls_inspector }]
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: p
          cluster: missing
`, i, 1+i>>16, i>>8&0xff, i&0xff)
	}
	return b.Bytes()
}

// BenchmarkLoadManyListenerErrors: reporting errors must scale like the file too.
func BenchmarkLoadManyListenerErrors(b *testing.B) {
	for _, n := range []int{1000, 20000} {
		data := manyBadListeners(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				_, err := ParseWith(data, 1, Options{CheckOnly: true})
				var es Errors
				if !errors.As(err, &es) || len(es) != 3*n {
					b.Fatalf("%d errors, want %d: %.300v", len(es), 3*n, err)
				}
			}
		})
	}
}

// BenchmarkLoadManyListeners is `portico validate` on generated files of many listeners.
// Set PORTICO_MANY_LISTENERS_FILE to also write the largest one there, for measuring the
// command itself (/usr/bin/time -v portico validate -c FILE).
func BenchmarkLoadManyListeners(b *testing.B) {
	for _, n := range []int{1000, 20000, 191752} {
		data := manyListeners(n)
		if p := os.Getenv("PORTICO_MANY_LISTENERS_FILE"); p != "" && n == 191752 {
			if err := os.WriteFile(p, data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				cfg, err := ParseWith(data, 1, Options{CheckOnly: true})
				if err != nil {
					b.Fatal(err)
				}
				if len(cfg.Listeners) != n {
					b.Fatalf("%d listeners, want %d", len(cfg.Listeners), n)
				}
			}
		})
	}
}

// TestManyListenersAllocations keeps loading within an allocation budget per listener for
// a file of many small listeners. Before the JSON text between YAML and the JSON pass went,
// and the paths were built only for errors, it took 557 allocations and 32 KB a listener;
// now 333 and 18 KB, most of them in the YAML decoder, chain.Build and protojson.
func TestManyListenersAllocations(t *testing.T) {
	const n = 2000
	data := manyListeners(n)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cfg, err := ParseWith(data, 1, Options{CheckOnly: true})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(cfg)
	allocs := (after.Mallocs - before.Mallocs) / n
	bytes := (after.TotalAlloc - before.TotalAlloc) / n
	t.Logf("%d allocations, %d bytes a listener", allocs, bytes)
	if allocs > 450 || bytes > 26<<10 {
		t.Errorf("%d allocations and %d bytes a listener, want at most 450 and %d", allocs, bytes, 26<<10)
	}
}

// TestManyErrorsScale: reporting errors grows linearly with their number. Before, each
// error of a later stage scanned every location reported before it (and every
// tls_inspector every error), so that 16,000 bad endpoints took 29 times as long as 2,000
// instead of 8.
//
// The cost is measured so that a loaded machine does not fail the test: CPU time of the
// process (getrusage: time spent waiting for a CPU is not counted), the best of a few runs,
// per error, with a generous margin; and allocations per error, which do not depend on
// the machine at all and must stay flat.
func TestManyErrorsScale(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("timing; not meaningful under -race or -short")
	}
	type cost struct {
		cpu    time.Duration
		allocs uint64
	}
	measure := func(data []byte, errs, times int) cost {
		best := cost{cpu: time.Duration(math.MaxInt64), allocs: math.MaxUint64}
		for range times {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			c0 := cpuTime(t)
			_, err := ParseWith(data, 1, Options{CheckOnly: true})
			c1 := cpuTime(t)
			runtime.ReadMemStats(&after)
			var es Errors
			if !errors.As(err, &es) || len(es) != errs {
				t.Fatalf("%d errors, want %d", len(es), errs)
			}
			best.cpu = min(best.cpu, (c1-c0)/time.Duration(errs))
			best.allocs = min(best.allocs, (after.Mallocs-before.Mallocs)/uint64(errs))
		}
		return best
	}
	for _, tc := range []struct {
		name  string
		gen   func(int) []byte
		per   int // errors per unit
		small int
	}{
		{"endpoints", manyBadEndpoints, 2, 2000},
		{"listeners", manyBadListeners, 3, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			large := 8 * tc.small
			s := measure(tc.gen(tc.small), tc.per*tc.small, 3)
			l := measure(tc.gen(large), tc.per*large, 2)
			t.Logf("per error: %d errors %v and %d allocations; %d errors %v and %d allocations",
				tc.per*tc.small, s.cpu, s.allocs, tc.per*large, l.cpu, l.allocs)
			if l.cpu > 3*s.cpu {
				t.Errorf("an error costs %v of CPU among %d, %v among %d: more than 3 times as much", l.cpu, tc.per*large, s.cpu, tc.per*tc.small)
			}
			if float64(l.allocs) > 1.25*float64(s.allocs)+2 {
				t.Errorf("an error costs %d allocations among %d, %d among %d", l.allocs, tc.per*large, s.allocs, tc.per*tc.small)
			}
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// manyBadEndpoints is one cluster of n endpoints, each with an unsupported field (the
// subset check) and a missing port (translation).
func manyBadEndpoints(n int) []byte {
	var b bytes.Buffer
	b.WriteString("static_resources:\n  clusters:\n  - name: c\n    load_assignment:\n      cluster_name: c\n      endpoints:\n      - lb_endpoints:\n")
	for i := range n {
		fmt.Fprintf(&b, "        - { endpoint: { health_check_config: { port_value: 1 }, address: { socket_address: { address: 10.%d.%d.%d, port_value: 0 } } } }\n", i>>16, i>>8&0xff, i&0xff)
	}
	return b.Bytes()
}

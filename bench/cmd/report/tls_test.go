package main

import (
	"strings"
	"testing"
)

func tlsRun(srv, test string, m map[string]float64, neg map[string]int64) run {
	r := l7Run(srv, test, m, "")
	r.Negotiated = neg
	return r
}

func TestTLSTablesTargetsAndResumption(t *testing.T) {
	f := &resultFile{Scenario: "tls", Params: []byte(`{}`), Machine: []byte(`{}`)}
	neg := map[string]int64{"TLS 1.3 TLS_AES_128_GCM_SHA256 X25519": 1000}
	f.Runs = []run{
		tlsRun("portico", "ecdsa-tls13", map[string]float64{"rate": 3000, "cpu_us_per_op": 270, "ops": 1000}, neg),
		tlsRun("haproxy", "ecdsa-tls13", map[string]float64{"rate": 2400, "cpu_us_per_op": 400, "ops": 1000}, neg),
		tlsRun("nginx", "ecdsa-tls13", map[string]float64{"rate": 2000, "cpu_us_per_op": 320, "ops": 1000}, neg),
		tlsRun("portico", "ecdsa-tls13-mlkem", map[string]float64{"rate": 2000, "cpu_us_per_op": 324, "ops": 1000}, nil),
		tlsRun("portico", "resume-tls13", map[string]float64{"rate": 3000, "cpu_us_per_op": 200, "ops": 1000, "resumed": 990,
			"resumed_all": 1200, "server_full": 32, "server_resumed": 1203}, nil),
		tlsRun("portico", "keepalive", map[string]float64{"rps": 40000, "cpu_us_per_req": 15}, nil),
		tlsRun("haproxy", "keepalive", map[string]float64{"rps": 38000, "cpu_us_per_req": 24}, nil),
		tlsRun("nginx", "keepalive", map[string]float64{"rps": 43000, "cpu_us_per_req": 16}, nil),
		tlsRun("portico", "bulk", map[string]float64{"mb_per_s": 900}, nil),
		tlsRun("haproxy", "bulk", map[string]float64{"mb_per_s": 500}, nil),
		tlsRun("nginx", "bulk", map[string]float64{"mb_per_s": 800}, nil),
	}
	out := proxyTables(f)
	for _, want := range []string{
		// 270 / min(400, 320) = 0.84.
		"| ecdsa-tls13 | CPU µs/handshake | 270.0 | 400.0 | 320.0 | 0.68× | 0.84× | ≤ 0.9× the better (320.0): 0.84×, **met** |",
		"| ecdsa-tls13-mlkem | CPU µs/handshake | 324.0 | – | – | – | – | vs Portico's X25519: 1.20× |",
		// 15 / 16 = 0.94: not met against nginx.
		"| keepalive | CPU µs/request | 15.0 | 24.0 | 16.0 | 0.62× | 0.94× | ≤ 0.9× both: not met |",
		"| bulk | MB/s | 900 | 500 | 800 | 1.80× | 1.12× | ≥ both: **met** |",
		"| 99.0 %; server 32 full / 1203 resumed, client 1200 resumed |",
		"| 1000 TLS 1.3 AES_128_GCM_SHA256 X25519 |",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q:\n%s", want, out)
		}
	}
}

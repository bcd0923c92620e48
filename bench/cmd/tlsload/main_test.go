package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// tlsServer: a crypto/tls + net/http server on a free loopback port with a fresh
// ECDSA P-256 certificate for localhost, answering every GET with a short body.
func tlsServer(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) }),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func opts(t *testing.T, addr, version string, resume bool) *options {
	t.Helper()
	o := &options{addr: addr, sni: "localhost", path: "/", conc: 4, warmup: 300 * time.Millisecond,
		duration: time.Second, resume: resume, pid: os.Getpid(), clkTck: 100, loadCPU: 0}
	var err error
	if o.version, err = parseVersion(version); err != nil {
		t.Fatal(err)
	}
	if o.curves, err = parseCurves("x25519"); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestHandshakesFullAndResumed(t *testing.T) {
	addr := tlsServer(t)
	for _, tc := range []struct {
		version string
		resume  bool
		want    string
	}{
		{"1.3", false, "TLS 1.3 TLS_AES_128_GCM_SHA256 X25519"},
		{"1.2", false, "TLS 1.2 TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 X25519"},
		{"1.3", true, "TLS 1.3 TLS_AES_128_GCM_SHA256 X25519 resumed"},
		{"1.2", true, "TLS 1.2 TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 X25519 resumed"},
	} {
		res := result{Metrics: map[string]float64{}}
		runHandshakes(opts(t, addr, tc.version, tc.resume), &res)
		ops := res.Metrics["ops"]
		if res.Failure != "" || ops == 0 || res.Errors.Dial+res.Errors.IO != 0 {
			t.Fatalf("%s resume=%v: ops %v, failure %q, errors %+v", tc.version, tc.resume, ops, res.Failure, res.Errors)
		}
		if got := res.Negotiated[tc.want]; float64(got) != ops || len(res.Negotiated) != 1 {
			t.Fatalf("%s resume=%v: negotiated %v, want all %v as %q", tc.version, tc.resume, res.Negotiated, ops, tc.want)
		}
		wantResumed := 0.0
		if tc.resume {
			wantResumed = ops
		}
		if res.Metrics["resumed"] != wantResumed {
			t.Fatalf("%s resume=%v: resumed %v of %v", tc.version, tc.resume, res.Metrics["resumed"], ops)
		}
		if tc.resume && res.Metrics["ops_all"]-res.Metrics["resumed_all"] != float64(4) {
			t.Fatalf("resume: %v handshakes in all, %v resumed; want exactly one full per goroutine", res.Metrics["ops_all"], res.Metrics["resumed_all"])
		}
		if _, ok := res.Metrics["load_cpu_busy"]; !ok {
			t.Fatalf("no load CPU figure: %v", res.Metrics)
		}
		if _, ok := res.Metrics["cpu_us_per_op"]; !ok {
			t.Fatalf("no CPU per handshake: %v", res.Metrics)
		}
	}
}

func TestHandshakeFailureIsReported(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: every dial fails
	res := result{Metrics: map[string]float64{}}
	runHandshakes(opts(t, addr, "1.3", false), &res)
	if res.Failure == "" || res.Errors.Dial == 0 {
		t.Fatalf("want a failure and dial errors: %q %+v", res.Failure, res.Errors)
	}
}

func TestIdleAndProbe(t *testing.T) {
	addr := tlsServer(t)
	o := opts(t, addr, "1.3", false)
	o.conns, o.settle = 50, 50*time.Millisecond
	res := result{Metrics: map[string]float64{}}
	if err := runIdle(o, &res); err != nil {
		t.Fatal(err)
	}
	if res.Metrics["conns_open"] != 50 || res.Metrics["rss_with"] == 0 {
		t.Fatalf("idle: %v", res.Metrics)
	}
	o.conns, o.interval = 5, 5*time.Millisecond
	res = result{Metrics: map[string]float64{}}
	if err := runProbe(o, &res); err != nil {
		t.Fatal(err)
	}
	// 5 connections × one request per 5 ms × 1 s: at most 1000 are due in the window
	// (fewer when the box is slow: missed slots are skipped, not sent in a burst).
	if n := res.Metrics["requests"]; n == 0 || n > 1000 || res.Metrics["p99_us"] == 0 {
		t.Fatalf("probe: %v", res.Metrics)
	}
}

package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// serverEnv makes the test binary a TLS server (see TestMain): the server
// runs in its own process, as nginx does in the benchmark, so the client's
// one P is not shared with it.
const serverEnv = "CONNLOAD_TEST_TLS_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(serverEnv) == "1" {
		serveTLS()
		return
	}
	os.Exit(m.Run())
}

// serveTLS serves HTTPS on 127.0.0.1 (a port the kernel picks, printed on
// stdout) until stdin closes: 200 for every server name but "bad.test",
// which gets a 503.
func serveTLS() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost", "bad.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
	})
	if err != nil {
		panic(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS != nil && r.TLS.ServerName == "bad.test" {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.Write([]byte("ok\n"))
		}),
		// Handshakes cut by the end of a window are logged as errors.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go srv.Serve(ln)
	fmt.Println(ln.Addr())
	io.Copy(io.Discard, os.Stdin)
}

// tlsServer starts serveTLS in a child process, stopped (by its PID) when
// the test ends; returns its address.
func tlsServer(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serverEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Scan()
		line <- sc.Text()
		io.Copy(io.Discard, stdout)
	}()
	select {
	case a := <-line:
		if _, _, err := net.SplitHostPort(a); err != nil {
			t.Fatalf("server said %q", a)
		}
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("TLS server did not start")
	}
	return ""
}

// setFlags sets the flags runTLS reads and restores them afterwards.
func setFlags(t *testing.T, a, n string, c int, wu, dur time.Duration) {
	t.Helper()
	oa, on, oc, ow, od, ot, op := *addr, *names, *conc, *warmup, *duration, *total, *pid
	t.Cleanup(func() { *addr, *names, *conc, *warmup, *duration, *total, *pid = oa, on, oc, ow, od, ot, op })
	*addr, *names, *conc, *warmup, *duration, *total, *pid = a, n, c, wu, dur, 0, 0
}

func runTLSTimed(t *testing.T, dur time.Duration) result {
	t.Helper()
	res := result{Mode: "tls", Metrics: map[string]float64{}}
	t0 := time.Now()
	runTLS(&res)
	// Every goroutine stops at the window's end and no I/O deadline lies
	// beyond it, so runTLS returns promptly.
	if el := time.Since(t0); el > *warmup+dur+2*time.Second {
		t.Errorf("runTLS took %v for a %v window", el, *warmup+dur)
	}
	return res
}

// pinOneCPU pins every thread of this process to one CPU (the first it may
// use), as taskset -c does in the benchmark; children started meanwhile
// inherit it. It returns a function restoring the previous mask.
func pinOneCPU(t *testing.T) func() {
	t.Helper()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Fatal(err)
	}
	cpu := 0
	for !old.IsSet(cpu) {
		cpu++
	}
	var one unix.CPUSet
	one.Set(cpu)
	setAll := func(m *unix.CPUSet) {
		// Twice: a thread started by a not-yet-pinned one inherits its mask.
		for range 2 {
			tids, _ := os.ReadDir("/proc/self/task")
			for _, d := range tids {
				if tid, err := strconv.Atoi(d.Name()); err == nil {
					unix.SchedSetaffinity(tid, m)
				}
			}
		}
	}
	setAll(&one)
	return func() { setAll(&old) }
}

// TestTLSNoErrorsAtWindowEnd is the regression test for the spurious
// "dial tcp …: i/o timeout" errors. Set up like the benchmark (client with
// one P, server on the same CPU), the window's context deadline timer often
// fires milliseconds late; every dial started in between failed at once, and
// the old loop counted thousands of them. A healthy server must give
// handshakes and no errors at all.
func TestTLSNoErrorsAtWindowEnd(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	defer pinOneCPU(t)()
	a := tlsServer(t)
	const dur = 400 * time.Millisecond
	for i := 0; i < 5; i++ {
		setFlags(t, a, "localhost,b.bench.test", 32, 100*time.Millisecond, dur)
		res := runTLSTimed(t, dur)
		if res.Metrics["ops"] == 0 {
			t.Fatalf("run %d: no handshakes: %+v", i, res)
		}
		if res.Errors.Dial != 0 || res.Errors.IO != 0 {
			t.Fatalf("run %d: %d dial + %d io errors beside %.0f handshakes (last: %s)",
				i, res.Errors.Dial, res.Errors.IO, res.Metrics["ops"], res.Errors.Last)
		}
		if r, want := res.Metrics["rate"], res.Metrics["ops"]/dur.Seconds(); r != want {
			t.Fatalf("rate %v, want ops/duration = %v", r, want)
		}
	}
}

// TestTLSCountsRealErrors: genuine failures inside the window are still
// counted, as I/O errors (bad response) and dial errors (refused).
func TestTLSCountsRealErrors(t *testing.T) {
	a := tlsServer(t)
	setFlags(t, a, "localhost,bad.test", 4, 100*time.Millisecond, 500*time.Millisecond)
	res := runTLSTimed(t, 500*time.Millisecond)
	if res.Metrics["ops"] == 0 || res.Errors.IO == 0 || res.Errors.Dial != 0 {
		t.Fatalf("want handshakes and io errors, no dial errors: ops %.0f, io %d, dial %d (last: %s)",
			res.Metrics["ops"], res.Errors.IO, res.Errors.Dial, res.Errors.Last)
	}
	// Every other request goes to bad.test: the two counts stay close.
	if ok, bad := res.Metrics["ops"], float64(res.Errors.IO); bad < ok/2 || bad > ok*2 {
		t.Errorf("ops %.0f vs io errors %.0f: expected about one each", ok, bad)
	}

	// A port nobody listens on: refused dials are real dial errors.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	setFlags(t, closed, "localhost", 1, 0, 100*time.Millisecond)
	res = runTLSTimed(t, 100*time.Millisecond)
	if res.Metrics["ops"] != 0 || res.Errors.Dial == 0 {
		t.Fatalf("closed port: want dial errors only, got ops %.0f dial %d io %d", res.Metrics["ops"], res.Errors.Dial, res.Errors.IO)
	}
}

// TestTLSTotal: with -total the run stops once that many connections were
// made, not at the end of -duration, and the rate is over the time taken.
func TestTLSTotal(t *testing.T) {
	a := tlsServer(t)
	setFlags(t, a, "localhost", 4, 0, 5*time.Second)
	*total = 40
	res := result{Mode: "tls", Metrics: map[string]float64{}}
	t0 := time.Now()
	runTLS(&res)
	el := time.Since(t0)
	if el > 3*time.Second {
		t.Errorf("took %v for 40 connections", el)
	}
	if res.Metrics["ops"] != 40 || res.Errors.Dial+res.Errors.IO != 0 {
		t.Fatalf("ops %.0f, errors %d+%d (last: %s); want 40 and none", res.Metrics["ops"], res.Errors.Dial, res.Errors.IO, res.Errors.Last)
	}
	if r := res.Metrics["rate"]; r < 40/el.Seconds() {
		t.Errorf("rate %.1f/s, want at least 40 per %v", r, el)
	}
}

// TestTLSDrain: with -drain every connection the server accepted is counted, none is
// cut at the window's end, and the run still ends promptly. A counting TCP relay in
// front of the TLS server sees every connection.
func TestTLSDrain(t *testing.T) {
	a := tlsServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", a)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { io.Copy(u, c); u.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, u)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	setFlags(t, ln.Addr().String(), "localhost", 8, 0, 300*time.Millisecond)
	*drain = true
	t.Cleanup(func() { *drain = false })
	res := result{Mode: "tls", Metrics: map[string]float64{}}
	t0 := time.Now()
	runTLS(&res)
	if el := time.Since(t0); el > 3*time.Second {
		t.Errorf("took %v for a 300ms window", el)
	}
	time.Sleep(50 * time.Millisecond)
	if n := accepted.Load(); res.Metrics["ops"] != float64(n) || n == 0 || res.Errors.Dial+res.Errors.IO != 0 {
		t.Fatalf("ops %.0f, relay accepted %d, errors %d+%d (last: %s); want ops = accepted and no errors",
			res.Metrics["ops"], n, res.Errors.Dial, res.Errors.IO, res.Errors.Last)
	}
}

// Command tlspeer is the TLS e2e tests' peer for GiB transfers through a TLS listener in
// front of tcp_proxy, built without the race detector so that encrypting and hashing a GiB
// stays fast.
//
//	tlspeer serve                        listen on 127.0.0.1:0 (plaintext), print the port, serve:
//	                                     "up\n" then bytes until EOF: answer "<len> <sha256>\n";
//	                                     "down N\n": answer N bytes of the stream, then close
//	tlspeer up ADDR SNI CAFILE N         send "up\n" and N bytes over TLS, close_notify, print
//	                                     "<sent-sha256> <answer>"
//	tlspeer down ADDR SNI CAFILE N [stall]   ask for N bytes and print "<len> <sha256>"; with
//	                                     stall, print "asked" and wait for a line on stdin
//	                                     before reading
//	tlspeer get URL SNI CAFILE [stall]   an HTTPS GET (net/http); print "<status> <len> <sha256>";
//	                                     with stall, print "headers" once the head is read and
//	                                     wait for a line on stdin before reading the body
//	tlspeer sum N                        print the stream's sha256
//
// The stream is the tests' detStream (e2e_hcm_helpers_test.go). Every connection is
// bounded to two minutes.
package main

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

const blockLen = 65521

var block = func() []byte {
	b := make([]byte, blockLen)
	x := uint64(0x9E3779B97F4A7C15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x >> 32)
	}
	return b
}()

type stream struct{ n, off int64 }

func (d *stream) Read(p []byte) (int, error) {
	if d.off >= d.n {
		return 0, io.EOF
	}
	if rem := d.n - d.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	total := 0
	for len(p) > 0 {
		blk := d.off / blockLen
		in := int(d.off % blockLen)
		k := copy(p, block[in:])
		if in < 8 {
			var idx [8]byte
			binary.LittleEndian.PutUint64(idx[:], uint64(blk))
			for i := in; i < 8 && i-in < k; i++ {
				p[i-in] ^= idx[i]
			}
		}
		p = p[k:]
		d.off += int64(k)
		total += k
	}
	return total, nil
}

func die(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

const limit = 2 * time.Minute

func dial(addr, sni, caFile string) *tls.Conn {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		die(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		die(fmt.Errorf("no certificate in %s", caFile))
	}
	d := &net.Dialer{Timeout: 5 * time.Second, Deadline: time.Now().Add(limit)}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: sni, RootCAs: pool})
	if err != nil {
		die(fmt.Errorf("TLS to %s: %w", addr, err))
	}
	c.SetDeadline(time.Now().Add(limit))
	return c
}

func serve() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		die(err)
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	for {
		c, err := ln.Accept()
		if err != nil {
			die(err)
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(limit))
			br := bufio.NewReaderSize(c, 256<<10)
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			f := strings.Fields(line)
			switch {
			case len(f) == 1 && f[0] == "up":
				h := sha256.New()
				n, err := io.CopyBuffer(h, br, make([]byte, 256<<10))
				if err != nil {
					fmt.Fprintf(c, "error after %d bytes: %v\n", n, err)
					return
				}
				fmt.Fprintf(c, "%d %x\n", n, h.Sum(nil))
			case len(f) == 2 && f[0] == "down":
				n, _ := strconv.ParseInt(f[1], 10, 64)
				io.CopyBuffer(c, &stream{n: n}, make([]byte, 256<<10))
			}
		}()
	}
}

func main() {
	if len(os.Args) < 2 {
		die(fmt.Errorf("usage: tlspeer serve|up|down|sum"))
	}
	switch os.Args[1] {
	case "serve":
		serve()
	case "up":
		n, _ := strconv.ParseInt(os.Args[5], 10, 64)
		c := dial(os.Args[2], os.Args[3], os.Args[4])
		h := sha256.New()
		io.WriteString(c, "up\n")
		if _, err := io.CopyBuffer(c, io.TeeReader(&stream{n: n}, h), make([]byte, 256<<10)); err != nil {
			die(fmt.Errorf("upload: %w", err))
		}
		if err := c.CloseWrite(); err != nil {
			die(err)
		}
		answer, err := io.ReadAll(c)
		if err != nil {
			die(fmt.Errorf("reading the answer: %w", err))
		}
		fmt.Printf("%x %s", h.Sum(nil), answer)
	case "down":
		n, _ := strconv.ParseInt(os.Args[5], 10, 64)
		c := dial(os.Args[2], os.Args[3], os.Args[4])
		fmt.Fprintf(c, "down %d\n", n)
		if len(os.Args) > 6 && os.Args[6] == "stall" {
			fmt.Println("asked")
			bufio.NewReader(os.Stdin).ReadString('\n')
		}
		h := sha256.New()
		got, err := io.CopyBuffer(h, c, make([]byte, 256<<10))
		if err != nil {
			die(fmt.Errorf("after %d bytes: %w", got, err))
		}
		fmt.Printf("%d %x\n", got, h.Sum(nil))
	case "get":
		pem, err := os.ReadFile(os.Args[4])
		if err != nil {
			die(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		cl := &http.Client{Timeout: limit, Transport: &http.Transport{DisableCompression: true,
			TLSClientConfig: &tls.Config{ServerName: os.Args[3], RootCAs: pool, NextProtos: []string{"http/1.1"}},
			ReadBufferSize:  256 << 10}}
		resp, err := cl.Get(os.Args[2])
		if err != nil {
			die(err)
		}
		if len(os.Args) > 5 && os.Args[5] == "stall" {
			fmt.Println("headers")
			bufio.NewReader(os.Stdin).ReadString('\n')
		}
		h := sha256.New()
		got, err := io.CopyBuffer(h, resp.Body, make([]byte, 256<<10))
		if err != nil {
			die(fmt.Errorf("after %d bytes: %w", got, err))
		}
		fmt.Printf("%d %d %x\n", resp.StatusCode, got, h.Sum(nil))
	case "sum":
		n, _ := strconv.ParseInt(os.Args[2], 10, 64)
		h := sha256.New()
		io.CopyBuffer(h, &stream{n: n}, make([]byte, 1<<20))
		fmt.Printf("%x\n", h.Sum(nil))
	default:
		die(fmt.Errorf("unknown mode %q", os.Args[1]))
	}
}

// Command bodypeer is the e2e tests' peer for very large bodies, built without the race
// detector so that generating and hashing a GiB stays fast. It speaks plain net/http.
//
//	bodypeer serve               listen on 127.0.0.1:0, print the port, then serve:
//	                             POST /upload: answer "<len> <sha256> <transfer-encoding> <content-length>"
//	                             GET /download?size=N[&chunked=1]: N bytes of the stream
//	bodypeer upload URL N cl|chunked    print "<status> <sent-sha256> <answer>"
//	bodypeer download URL [stall]       print "<status> <len> <sha256> <te> <content-length>";
//	                                    with stall, print "headers" once the head is read
//	                                    and wait for a line on stdin before reading the body
//	bodypeer sum N               print the stream's sha256
//
// The stream is the same as the tests' detStream (e2e_hcm_helpers_test.go).
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
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

// onlyReader hides the length from net/http (a chunked request).
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func die(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func client() *http.Client {
	return &http.Client{Timeout: 120 * time.Second, Transport: &http.Transport{
		DisableCompression: true, WriteBufferSize: 256 << 10, ReadBufferSize: 256 << 10}}
}

func main() {
	if len(os.Args) < 2 {
		die(fmt.Errorf("usage: bodypeer serve|upload|download|sum"))
	}
	switch os.Args[1] {
	case "serve":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			die(err)
		}
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		die(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == "POST" {
				h := sha256.New()
				n, err := io.CopyBuffer(h, r.Body, make([]byte, 256<<10))
				if err != nil {
					http.Error(w, err.Error(), 500)
					return
				}
				te := strings.Join(r.TransferEncoding, ",")
				if te == "" {
					te = "-"
				}
				fmt.Fprintf(w, "%d %x %s %d", n, h.Sum(nil), te, r.ContentLength)
				return
			}
			n, _ := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
			if r.URL.Query().Get("chunked") != "1" {
				w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
			}
			io.CopyBuffer(w, &stream{n: n}, make([]byte, 256<<10))
		})))
	case "upload":
		n, _ := strconv.ParseInt(os.Args[3], 10, 64)
		h := sha256.New()
		var body io.Reader = io.TeeReader(&stream{n: n}, h)
		if os.Args[4] == "chunked" {
			body = onlyReader{body}
		}
		req, err := http.NewRequest("POST", os.Args[2], body)
		if err != nil {
			die(err)
		}
		if os.Args[4] != "chunked" {
			req.ContentLength = n
		}
		resp, err := client().Do(req)
		if err != nil {
			die(err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			die(err)
		}
		fmt.Printf("%d %x %s\n", resp.StatusCode, h.Sum(nil), b)
	case "download":
		resp, err := client().Get(os.Args[2])
		if err != nil {
			die(err)
		}
		if len(os.Args) > 3 && os.Args[3] == "stall" {
			fmt.Println("headers")
			bufio.NewReader(os.Stdin).ReadString('\n')
		}
		h := sha256.New()
		n, err := io.CopyBuffer(h, resp.Body, make([]byte, 256<<10))
		if err != nil {
			die(fmt.Errorf("after %d bytes: %v", n, err))
		}
		te := strings.Join(resp.TransferEncoding, ",")
		if te == "" {
			te = "-"
		}
		fmt.Printf("%d %d %x %s %d\n", resp.StatusCode, n, h.Sum(nil), te, resp.ContentLength)
	case "sum":
		n, _ := strconv.ParseInt(os.Args[2], 10, 64)
		h := sha256.New()
		io.CopyBuffer(h, &stream{n: n}, make([]byte, 1<<20))
		fmt.Printf("%s\n", hex.EncodeToString(h.Sum(nil)))
	default:
		die(fmt.Errorf("unknown mode %q", os.Args[1]))
	}
}

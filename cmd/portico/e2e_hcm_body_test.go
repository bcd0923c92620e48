package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const (
	mib = int64(1) << 20
	gib = int64(1) << 30
)

// onlyReader hides every method but Read (so that net/http cannot learn a length).
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// TestHCMBodies: request and response bodies, Content-Length and chunked, of 1 MiB and
// 1 GiB, generated on the fly on both sides, arrive whole (sha256 equal).
func TestHCMBodies(t *testing.T) {
	be := newEchoBackend(t, "a")
	h := startHCM(t, hcmSetup{Clusters: []hcmCluster{{Name: "a", Ports: []int{be.Port}}}})
	cl := hcmClient()
	cl.Timeout = 120 * time.Second
	base := "http://" + h.Addr
	for _, size := range []int64{mib, gib} {
		for _, chunked := range []bool{false, true} {
			name := fmt.Sprintf("%dMiB/chunked=%v", size>>20, chunked)
			t.Run("request/"+name, func(t *testing.T) {
				start := time.Now()
				var body io.Reader = newDetStream(size)
				if chunked {
					body = onlyReader{body}
				}
				req, err := http.NewRequest("POST", base+"/upload", body)
				if err != nil {
					t.Fatal(err)
				}
				if !chunked {
					req.ContentLength = size
				}
				resp, seen := doEcho(t, cl, req)
				if resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
				wantTE := []string(nil)
				wantCL := size
				if chunked {
					wantTE, wantCL = []string{"chunked"}, -1
				}
				if seen.BodyLen != size || seen.BodySHA != detSHA(size) {
					t.Errorf("backend got %d bytes, sha256 equal %v", seen.BodyLen, seen.BodySHA == detSHA(size))
				}
				if strings.Join(seen.TE, ",") != strings.Join(wantTE, ",") || seen.CL != wantCL {
					t.Errorf("backend framing: transfer-encoding %v content-length %d, want %v %d", seen.TE, seen.CL, wantTE, wantCL)
				}
				t.Logf("%s up in %v", name, time.Since(start).Round(time.Millisecond))
			})
			t.Run("response/"+name, func(t *testing.T) {
				start := time.Now()
				q := fmt.Sprintf("/download?size=%d", size)
				if chunked {
					q += "&chunked=1"
				}
				resp, err := cl.Do(newReq(t, "GET", base+q, ""))
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				hs := sha256.New()
				n, err := io.CopyBuffer(hs, resp.Body, make([]byte, 256<<10))
				if err != nil || n != size || hex.EncodeToString(hs.Sum(nil)) != detSHA(size) {
					t.Fatalf("got %d bytes (%v), sha256 equal %v", n, err, hex.EncodeToString(hs.Sum(nil)) == detSHA(size))
				}
				if chunked != (len(resp.TransferEncoding) > 0) || !chunked && resp.ContentLength != size {
					t.Errorf("client framing: transfer-encoding %v content-length %d", resp.TransferEncoding, resp.ContentLength)
				}
				t.Logf("%s down in %v", name, time.Since(start).Round(time.Millisecond))
			})
		}
	}
}

// TestHCMSlowReaderMemory: a client that stops reading a 1 GiB response for a few
// seconds: portico's RSS stays within 64 MiB of its idle RSS (the watermarks stop the
// upstream), and the whole response arrives once the client reads again.
func TestHCMSlowReaderMemory(t *testing.T) {
	be := newEchoBackend(t, "a")
	h := startHCM(t, hcmSetup{Clusters: []hcmCluster{{Name: "a", Ports: []int{be.Port}}}})
	// Warm up: a few requests, so that the idle figure includes the pools and buffers.
	cl := hcmClient()
	for i := 0; i < 5; i++ {
		resp, err := cl.Get(fmt.Sprintf("http://%s/warm?size=%d", h.Addr, 4*mib))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	cl.CloseIdleConnections()
	time.Sleep(200 * time.Millisecond)
	idle := h.rss(t)

	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			c, _ := rawConn(t, h.Addr)
			c.SetDeadline(time.Now().Add(120 * time.Second))
			q := fmt.Sprintf("/big?size=%d", gib)
			if chunked {
				q += "&chunked=1"
			}
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", q)
			br := bufio.NewReaderSize(c, 64<<10)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Stall for 3 s, watching the process's memory.
			var peak int64
			for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
				peak = max(peak, h.rss(t))
				time.Sleep(50 * time.Millisecond)
			}
			hs := sha256.New()
			n, err := io.CopyBuffer(hs, resp.Body, make([]byte, 256<<10))
			if err != nil || n != gib || hex.EncodeToString(hs.Sum(nil)) != detSHA(gib) {
				t.Fatalf("after the stall: %d bytes (%v), sha256 equal %v", n, err, hex.EncodeToString(hs.Sum(nil)) == detSHA(gib))
			}
			t.Logf("idle RSS %d MiB, peak while stalled %d MiB", idle>>20, peak>>20)
			if peak-idle > 64*mib {
				t.Errorf("RSS grew by %d MiB while the client did not read (idle %d MiB, peak %d MiB); want < 64 MiB",
					(peak-idle)>>20, idle>>20, peak>>20)
			}
		})
	}
}

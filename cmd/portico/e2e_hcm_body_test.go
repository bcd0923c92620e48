package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
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

// TestHCMBodies: request and response bodies, Content-Length and chunked, of 1 MiB
// (a Go client and the echo backend in the test process) and 1 GiB (bodypeer, built
// without the race detector, on both sides), generated on the fly, arrive whole
// (sha256 equal) with the framing the sender chose.
func TestHCMBodies(t *testing.T) {
	be := newEchoBackend(t, "a")
	peerBin := bodyPeer(t)
	peer := serveBodyPeer(t, peerBin)
	h := startHCM(t, hcmSetup{Clusters: []hcmCluster{{Name: "a", Ports: []int{be.Port}}, {Name: "peer", Ports: []int{peer}}},
		Routes: `
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - match: { prefix: "/peer/" }
    route: { cluster: peer, timeout: 0s }
  - match: { prefix: "/" }
    route: { cluster: a }
`})
	cl := hcmClient()
	base := "http://" + h.Addr
	for _, chunked := range []bool{false, true} {
		name := fmt.Sprintf("1MiB/chunked=%v", chunked)
		t.Run("request/"+name, func(t *testing.T) {
			var body io.Reader = newDetStream(mib)
			if chunked {
				body = onlyReader{body}
			}
			req, err := http.NewRequest("POST", base+"/upload", body)
			if err != nil {
				t.Fatal(err)
			}
			if !chunked {
				req.ContentLength = mib
			}
			resp, seen := doEcho(t, cl, req)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			wantTE, wantCL := []string(nil), mib
			if chunked {
				wantTE, wantCL = []string{"chunked"}, -1
			}
			if seen.BodyLen != mib || seen.BodySHA != detSHA(mib) {
				t.Errorf("backend got %d bytes, sha256 equal %v", seen.BodyLen, seen.BodySHA == detSHA(mib))
			}
			if strings.Join(seen.TE, ",") != strings.Join(wantTE, ",") || seen.CL != wantCL {
				t.Errorf("backend framing: transfer-encoding %v content-length %d, want %v %d", seen.TE, seen.CL, wantTE, wantCL)
			}
		})
		t.Run("response/"+name, func(t *testing.T) {
			q := fmt.Sprintf("/download?size=%d", mib)
			if chunked {
				q += "&chunked=1"
			}
			resp, err := cl.Do(newReq(t, "GET", base+q, ""))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			hs := sha256.New()
			n, err := io.Copy(hs, resp.Body)
			if err != nil || n != mib || hex.EncodeToString(hs.Sum(nil)) != detSHA(mib) {
				t.Fatalf("got %d bytes (%v), sha256 equal %v", n, err, hex.EncodeToString(hs.Sum(nil)) == detSHA(mib))
			}
			if chunked != (len(resp.TransferEncoding) > 0) || !chunked && resp.ContentLength != mib {
				t.Errorf("client framing: transfer-encoding %v content-length %d", resp.TransferEncoding, resp.ContentLength)
			}
		})
	}
	for _, chunked := range []bool{false, true} {
		mode, wantTE, wantCL := "cl", "-", gib
		if chunked {
			mode, wantTE, wantCL = "chunked", "chunked", -1
		}
		name := fmt.Sprintf("1GiB/chunked=%v", chunked)
		t.Run("request/"+name, func(t *testing.T) {
			start := time.Now()
			// "<status> <sent sha> <len> <received sha> <te> <content-length>"
			f := strings.Fields(runBodyPeer(t, peerBin, "upload", base+"/peer/up", strconv.FormatInt(gib, 10), mode))
			if len(f) != 6 || f[0] != "200" || f[2] != strconv.FormatInt(gib, 10) || f[1] != f[3] {
				t.Fatalf("upload: %q, want 200, %d bytes with the sha256 sent", f, gib)
			}
			if f[4] != wantTE || f[5] != strconv.FormatInt(wantCL, 10) {
				t.Errorf("backend framing: transfer-encoding %s content-length %s, want %s %d", f[4], f[5], wantTE, wantCL)
			}
			t.Logf("%s up in %v", name, time.Since(start).Round(time.Millisecond))
		})
		t.Run("response/"+name, func(t *testing.T) {
			start := time.Now()
			q := fmt.Sprintf("%s/peer/down?size=%d", base, gib)
			if chunked {
				q += "&chunked=1"
			}
			// "<status> <len> <sha> <te> <content-length>"
			f := strings.Fields(runBodyPeer(t, peerBin, "download", q))
			t.Logf("%s down in %v", name, time.Since(start).Round(time.Millisecond))
			if len(f) != 5 || f[0] != "200" || f[1] != strconv.FormatInt(gib, 10) || f[2] != bodyPeerSum(t, peerBin, gib) {
				t.Fatalf("download: %q, want 200, %d bytes, sha256 %s", f, gib, bodyPeerSum(t, peerBin, gib))
			}
			if f[3] != wantTE || f[4] != strconv.FormatInt(wantCL, 10) {
				t.Errorf("client framing: transfer-encoding %s content-length %s, want %s %d", f[3], f[4], wantTE, wantCL)
			}
		})
	}
}

// TestHCMSlowReaderMemory: a client (bodypeer) that stops reading a 1 GiB response for
// 3 s: portico's RSS stays within 64 MiB of its idle RSS (the watermarks stop the
// upstream), and the whole response arrives once the client reads again.
func TestHCMSlowReaderMemory(t *testing.T) {
	peerBin := bodyPeer(t)
	peer := serveBodyPeer(t, peerBin)
	h := startHCM(t, hcmSetup{Clusters: []hcmCluster{{Name: "peer", Ports: []int{peer}}}, Routes: `
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - match: { prefix: "/" }
    route: { cluster: peer, timeout: 0s }
`})
	// Warm up, so that the idle figure includes the pools and buffers.
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
	want := bodyPeerSum(t, peerBin, gib)

	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			url := fmt.Sprintf("http://%s/big?size=%d", h.Addr, gib)
			if chunked {
				url += "&chunked=1"
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, peerBin, "download", url, "stall")
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			var stderr syncBuffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			out := bufio.NewReader(stdout)
			if l, err := out.ReadString('\n'); err != nil || l != "headers\n" {
				t.Fatalf("bodypeer: %q %v %s", l, err, stderr.String())
			}
			var peak int64
			for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
				peak = max(peak, h.rss(t))
				time.Sleep(50 * time.Millisecond)
			}
			io.WriteString(stdin, "go\n")
			l, err := out.ReadString('\n')
			f := strings.Fields(l)
			if err != nil || len(f) != 5 || f[0] != "200" || f[1] != strconv.FormatInt(gib, 10) || f[2] != want {
				t.Fatalf("after the stall: %q %v %s", l, err, stderr.String())
			}
			t.Logf("idle RSS %d MiB, peak while stalled %d MiB", idle>>20, peak>>20)
			if peak-idle > 64*mib {
				t.Errorf("RSS grew by %d MiB while the client did not read (idle %d MiB, peak %d MiB); want < 64 MiB",
					(peak-idle)>>20, idle>>20, peak>>20)
			}
		})
	}
}

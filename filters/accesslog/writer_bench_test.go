package accesslog

import (
	"io"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// benchFormat is what a tcp_proxy access log usually prints.
const benchFormat = "[%START_TIME%] %DOWNSTREAM_REMOTE_ADDRESS% %UPSTREAM_HOST% %UPSTREAM_CLUSTER% " +
	"%BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESPONSE_FLAGS%\n"

func benchEntry() Entry {
	return Entry{
		StartTime:               time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC),
		Duration:                1234 * time.Millisecond,
		DownstreamRemoteAddress: netip.MustParseAddrPort("10.1.2.3:45678"),
		UpstreamHost:            netip.MustParseAddrPort("10.9.8.7:8080"),
		UpstreamCluster:         "backend",
		BytesReceived:           123456,
		BytesSent:               654321,
		ResponseFlags:           "-",
	}
}

// benchFlush moves what is pending to the writer's output, as the flusher does, so that
// the benchmark measures formatting rather than the cheaper path of dropping lines when
// the 100 ms flusher falls behind.
func benchFlush(w *Writer, buf *[]byte) { w.flush(buf) }

// BenchmarkLogParallel logs from as many goroutines as GOMAXPROCS, each one standing for a
// worker (run it with -cpu 1,2,4); every 1024 lines one of them flushes.
func BenchmarkLogParallel(b *testing.B) {
	w, err := NewWriter("bench", io.Discard, benchFormat)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	var ids atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		e := benchEntry()
		e.Worker = int(ids.Add(1) - 1) // the goroutine's worker id
		var buf []byte
		for i := 1; pb.Next(); i++ {
			w.Log(&e)
			if i%1024 == 0 {
				benchFlush(w, &buf)
			}
		}
	})
	if d := w.Dropped(); d > 0 {
		b.Fatalf("%d lines dropped: the benchmark measured dropping", d)
	}
}

package engine_test

import (
	"io"
	"net"
	"testing"

	"github.com/portico-proxy/portico/engine"
)

// BenchmarkEchoRaw measures the raw_buffer path through one worker: a 1 KiB ping-pong
// (per-read/per-write overhead) and a 64 KiB bulk echo, one connection each.
func BenchmarkEchoRaw(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(map[int]string{1 << 10: "1KiB", 64 << 10: "64KiB"}[size], func(b *testing.B) {
			s, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			l, err := s.AddListener(echoListener("bench", true, false))
			if err != nil {
				b.Fatal(err)
			}
			s.Start()
			c, err := net.Dial("tcp", l.Address().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msg := make([]byte, size)
			got := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				go c.Write(msg)
				if _, err := io.ReadFull(c, got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Command echo-net is the Go standard library contender: one goroutine per
// connection, a plain read/write loop over a 4 KiB buffer. Go's runtime
// netpoller (edge-triggered epoll) does the waiting.
package main

import (
	"flag"
	"log"
	"net"
	"time"
)

func serve(c net.Conn) {
	defer c.Close()
	// A per-connection buffer is what idiomatic servers do; it is also what
	// the idle-memory scenario should charge to net, so it is allocated
	// before the first read rather than lazily.
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:10003", "listen address (loopback only in benchmarks)")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			// EMFILE and friends are temporary: back off briefly (as
			// net/http does) instead of spinning, then keep serving.
			log.Print(err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go serve(c)
	}
}

// Command proxy-net is the Go standard library L4 proxy contender: one
// goroutine per direction per connection and io.Copy both ways. On Linux
// (*net.TCPConn).ReadFrom(*net.TCPConn) uses splice(2) through a pipe, so
// payload bytes do not cross into user space.
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"time"
)

func pipe(dst, src *net.TCPConn, done chan<- struct{}) {
	io.Copy(dst, src) //nolint:errcheck // the other direction notices
	dst.CloseWrite()  //nolint:errcheck // half-close forwards EOF
	done <- struct{}{}
}

func serve(down *net.TCPConn, upstream string) {
	defer down.Close()
	c, err := net.DialTimeout("tcp", upstream, 5*time.Second)
	if err != nil {
		return
	}
	up := c.(*net.TCPConn)
	defer up.Close()
	done := make(chan struct{}, 2)
	go pipe(up, down, done)
	go pipe(down, up, done)
	<-done
	<-done
}

func main() {
	addr := flag.String("addr", "127.0.0.1:10013", "listen address")
	upstream := flag.String("upstream", "127.0.0.1:18080", "backend address")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Printf("accept: %v", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go serve(c.(*net.TCPConn), *upstream)
	}
}

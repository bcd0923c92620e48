// Command echo-netpoll is the cloudwego/netpoll contender in the echo
// benchmark. netpoll calls OnRequest from a goroutine pool, so one message
// costs a goroutine hop on top of the poller; that is the library as designed.
package main

import (
	"context"
	"flag"
	"log"
	"time"

	"github.com/cloudwego/netpoll"
)

func onRequest(_ context.Context, c netpoll.Connection) error {
	r, w := c.Reader(), c.Writer()
	n := r.Len()
	if n == 0 {
		return nil
	}
	buf, err := r.Next(n)
	if err != nil {
		return err
	}
	// WriteBinary references buf without copying; Flush sends synchronously,
	// so releasing the reader afterwards is safe.
	if _, err := w.WriteBinary(buf); err != nil {
		return err
	}
	err = w.Flush()
	r.Release()
	return err
}

func main() {
	addr := flag.String("addr", "127.0.0.1:10002", "listen address (loopback only in benchmarks)")
	loops := flag.Int("loops", 1, "pollers (netpoll.SetNumLoops)")
	flag.Parse()
	// SetNumLoops is what netpoll's benchmarks and README use; Configure is its newer
	// spelling of the same setting.
	//lint:ignore SA1019 see above
	if err := netpoll.SetNumLoops(*loops); err != nil {
		log.Fatal(err)
	}
	ln, err := netpoll.CreateListener("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	el, err := netpoll.NewEventLoop(onRequest, netpoll.WithIdleTimeout(10*time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	if err := el.Serve(ln); err != nil {
		log.Fatal(err)
	}
}

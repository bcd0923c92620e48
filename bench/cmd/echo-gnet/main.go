// Command echo-gnet is the gnet v2 contender in the echo benchmark: OnTraffic
// writes back everything it was handed, inline on the event loop, which is the
// fastest way gnet offers (no AsyncWrite, no copy out of the loop buffer).
package main

import (
	"flag"
	"log"

	"github.com/panjf2000/gnet/v2"
)

type echo struct{ gnet.BuiltinEventEngine }

func (*echo) OnTraffic(c gnet.Conn) gnet.Action {
	// Next(-1) returns a view of the loop's read buffer; Write copies what it
	// cannot send right away, so the view may be reused afterwards.
	buf, err := c.Next(-1)
	if err != nil {
		return gnet.Close
	}
	if _, err := c.Write(buf); err != nil {
		return gnet.Close
	}
	return gnet.None
}

func main() {
	addr := flag.String("addr", "127.0.0.1:10001", "listen address (loopback only in benchmarks)")
	loops := flag.Int("loops", 1, "event loops")
	// gnet leaves this off by default; the harness measures both and uses
	// the faster setting (see BENCHMARKS.md).
	lock := flag.Bool("lock-thread", false, "runtime.LockOSThread in each event loop (Portico pins its workers)")
	reuse := flag.Bool("reuseport", false, "one SO_REUSEPORT listener per loop instead of one acceptor")
	flag.Parse()
	err := gnet.Run(&echo{}, "tcp://"+*addr,
		gnet.WithNumEventLoop(*loops),
		gnet.WithReusePort(*reuse),
		gnet.WithLockOSThread(*lock),
	)
	if err != nil {
		log.Fatal(err)
	}
}

package engine_test

import (
	"fmt"
	"os"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/engine/sockmap"
)

var _ engine.KernelPairs = (*sockmap.Map)(nil)

// kernelPairs is set when PORTICO_TEST_SOCKMAP=1: the tcp_proxy tests then run with the
// sockmap path on (startServer, spliceServer and tcpProxyListener pass it along). Asked
// for and not loadable is a failure, not a skip.
var kernelPairs = openKernelPairs()

// forceSockmap sets tcp_proxy's Sockmap flag in every tcpProxyListener (the flag does
// nothing on a server without KernelPairs, so the other tests are not changed by it).
var forceSockmap = true

func openKernelPairs() engine.KernelPairs {
	if os.Getenv("PORTICO_TEST_SOCKMAP") == "" {
		return nil
	}
	m, err := sockmap.Open(0)
	if err != nil {
		panic(fmt.Sprintf("PORTICO_TEST_SOCKMAP is set but %v", err))
	}
	return m
}

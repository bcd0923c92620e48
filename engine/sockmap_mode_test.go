package engine_test

import (
	"fmt"
	"os"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/engine/sockmap"
)

var _ engine.KernelPairs = (*sockmap.Map)(nil)

// kernelPairs is set when PORTICO_TEST_SOCKMAP=1: the tcp_proxy tests then run with the
// sockmap path on (startServer and spliceServer give it to their servers; a lone tcp_proxy
// pairs whenever its server has one). Asked
// for and not loadable is a failure, not a skip.
var kernelPairs = openKernelPairs()

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

package http1

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkNetHTTPReadRequest is a yardstick on the same machine, not a target.
func BenchmarkNetHTTPReadRequest(b *testing.B) {
	r := strings.NewReader(smallGET)
	br := bufio.NewReader(r)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(smallGET)
		br.Reset(r)
		if _, err := http.ReadRequest(br); err != nil {
			b.Fatal(err)
		}
	}
}

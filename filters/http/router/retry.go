package router

import (
	"time"

	"github.com/portico-proxy/portico/http/route"
)

// DefaultBackOffBase is Envoy's retry back-off base interval.
const DefaultBackOffBase = 25 * time.Millisecond

// retriableStatus reports whether a response status is retried under rp (Envoy's
// RetryStateImpl::wouldRetryFromHeaders for the HTTP conditions).
func retriableStatus(rp *route.RetryPolicy, code int) bool {
	on := rp.RetryOn
	switch {
	case on&route.Retry5xx != 0 && code >= 500 && code < 600:
		return true
	case on&route.RetryGatewayError != 0 && (code == 502 || code == 503 || code == 504):
		return true
	case on&route.RetryRetriable4xx != 0 && code == 409:
		return true
	case on&route.RetryRetriableStatusCodes != 0:
		for _, c := range rp.RetriableStatusCodes {
			if int(c) == code {
				return true
			}
		}
	}
	return false
}

// backOff is the wait before retry n (1-based): Envoy's jittered exponential back-off, a
// random time in [0, base·2^(n-1)), capped at the maximum (10 × base by default).
func backOff(rp *route.RetryPolicy, n int, rnd uint64) time.Duration {
	base := rp.BackOffBase
	if base <= 0 {
		base = DefaultBackOffBase
	}
	maxd := rp.BackOffMax
	if maxd <= 0 {
		maxd = 10 * base
	}
	ceil := base
	for i := 1; i < n && ceil < maxd; i++ {
		ceil *= 2
	}
	if ceil > maxd {
		ceil = maxd
	}
	return time.Duration(rnd % uint64(ceil))
}

package route

import (
	"fmt"
	"strings"
)

// retryTokens are the retry_on tokens Portico implements.
var retryTokens = map[string]RetryOn{
	"5xx":                    Retry5xx,
	"gateway-error":          RetryGatewayError,
	"reset":                  RetryReset,
	"connect-failure":        RetryConnectFailure,
	"retriable-4xx":          RetryRetriable4xx,
	"refused-stream":         RetryRefusedStream,
	"retriable-status-codes": RetryRetriableStatusCodes,
}

// unimplementedRetryTokens are Envoy's other tokens: they would change traffic, so they
// are errors rather than ignored.
var unimplementedRetryTokens = map[string]bool{
	"reset-before-request": true, "envoy-ratelimited": true, "retriable-headers": true,
	"http3-post-connect-failure": true, "cancelled": true, "deadline-exceeded": true,
	"internal": true, "resource-exhausted": true, "unavailable": true,
}

// ParseRetryOn parses a comma-separated retry_on list (spaces around tokens are
// ignored, as in Envoy). Envoy ignores tokens it does not know; Portico reports them, and
// the tokens of Envoy it does not implement (gRPC, rate limits ...), so that nothing is
// silently not retried.
func ParseRetryOn(s string) (RetryOn, error) {
	var on RetryOn
	for _, tok := range strings.Split(s, ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}
		if f, ok := retryTokens[tok]; ok {
			on |= f
			continue
		}
		if unimplementedRetryTokens[tok] {
			return on, fmt.Errorf("retry condition %q is not supported by Portico (supported: %s)", tok, supportedRetryTokens)
		}
		return on, fmt.Errorf("unknown retry condition %q (supported: %s)", tok, supportedRetryTokens)
	}
	return on, nil
}

const supportedRetryTokens = "5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream, retriable-status-codes"

// String lists the conditions as retry_on tokens.
func (r RetryOn) String() string {
	var b strings.Builder
	for _, tok := range []string{"5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx", "refused-stream", "retriable-status-codes"} {
		if r&retryTokens[tok] != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(tok)
		}
	}
	return b.String()
}

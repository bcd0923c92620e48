package router

import (
	"strconv"

	"github.com/portico-proxy/portico/engine"
)

// Stats are one cluster's HTTP stats on one worker (Envoy's cluster.<name>.upstream_rq_*
// and the HTTP pool's upstream_cx_*). The engine's ClusterStats keep the connection-level
// ones; these are reported under the same cluster.<name>. scope.
type Stats struct {
	UpstreamRqTotal              engine.Counter
	UpstreamRqActive             engine.Gauge
	UpstreamRqCompleted          engine.Counter
	UpstreamRqPendingTotal       engine.Counter
	UpstreamRqPendingActive      engine.Gauge
	UpstreamRqPendingOverflow    engine.Counter
	UpstreamRqTimeout            engine.Counter
	UpstreamRqPerTryTimeout      engine.Counter
	UpstreamRqRetry              engine.Counter
	UpstreamRqRetrySuccess       engine.Counter
	UpstreamRqRetryOverflow      engine.Counter
	UpstreamRqRxReset            engine.Counter
	UpstreamRqTxReset            engine.Counter
	UpstreamCxHTTP1Total         engine.Counter
	UpstreamCxMaxRequests        engine.Counter
	UpstreamCxIdleTimeout        engine.Counter
	UpstreamCxDestroyWithActive  engine.Counter
	UpstreamCxPoolOverflow       engine.Counter
	UpstreamCxProtocolError      engine.Counter
	UpstreamCxMaxDurationReached engine.Counter
	// UpstreamCxReused counts requests sent on a connection that had served one before:
	// with UpstreamRqTotal it gives the reuse figure (requests per connection).
	UpstreamRqReused engine.Counter
	Upstream1xx      engine.Counter
	Upstream2xx      engine.Counter
	Upstream3xx      engine.Counter
	Upstream4xx      engine.Counter
	Upstream5xx      engine.Counter
	codes            [500]engine.Counter // 100..599
	// UpstreamRqTime is from the first attempt's start to the end of the response, in ms.
	UpstreamRqTime engine.Histogram
}

func (s *Stats) countCode(code int) {
	switch code / 100 {
	case 1:
		s.Upstream1xx.Inc()
	case 2:
		s.Upstream2xx.Inc()
	case 3:
		s.Upstream3xx.Inc()
	case 4:
		s.Upstream4xx.Inc()
	case 5:
		s.Upstream5xx.Inc()
	}
	if code >= 100 && code < 600 {
		s.codes[code-100].Inc()
	}
}

// Code is the count of responses with this status.
func (s *Stats) Code(code int) uint64 {
	if code < 100 || code >= 600 {
		return 0
	}
	return s.codes[code-100].Value()
}

func (s *Stats) visit(v engine.StatVisitor, b *engine.Breakers, first bool) {
	c := func(name string, x *engine.Counter) { v(name, engine.KindCounter, float64(x.Value())) }
	g := func(name string, x *engine.Gauge) { v(name, engine.KindGauge, float64(x.Value())) }
	c("upstream_rq_total", &s.UpstreamRqTotal)
	g("upstream_rq_active", &s.UpstreamRqActive)
	c("upstream_rq_completed", &s.UpstreamRqCompleted)
	c("upstream_rq_pending_total", &s.UpstreamRqPendingTotal)
	g("upstream_rq_pending_active", &s.UpstreamRqPendingActive)
	c("upstream_rq_pending_overflow", &s.UpstreamRqPendingOverflow)
	c("upstream_rq_timeout", &s.UpstreamRqTimeout)
	c("upstream_rq_per_try_timeout", &s.UpstreamRqPerTryTimeout)
	c("upstream_rq_retry", &s.UpstreamRqRetry)
	c("upstream_rq_retry_success", &s.UpstreamRqRetrySuccess)
	c("upstream_rq_retry_overflow", &s.UpstreamRqRetryOverflow)
	c("upstream_rq_rx_reset", &s.UpstreamRqRxReset)
	c("upstream_rq_tx_reset", &s.UpstreamRqTxReset)
	c("upstream_rq_reused", &s.UpstreamRqReused)
	c("upstream_cx_http1_total", &s.UpstreamCxHTTP1Total)
	c("upstream_cx_max_requests", &s.UpstreamCxMaxRequests)
	c("upstream_cx_idle_timeout", &s.UpstreamCxIdleTimeout)
	c("upstream_cx_destroy_with_active_rq", &s.UpstreamCxDestroyWithActive)
	c("upstream_cx_pool_overflow", &s.UpstreamCxPoolOverflow)
	c("upstream_cx_protocol_error", &s.UpstreamCxProtocolError)
	c("upstream_cx_max_duration_reached", &s.UpstreamCxMaxDurationReached)
	c("upstream_rq_1xx", &s.Upstream1xx)
	c("upstream_rq_2xx", &s.Upstream2xx)
	c("upstream_rq_3xx", &s.Upstream3xx)
	c("upstream_rq_4xx", &s.Upstream4xx)
	c("upstream_rq_5xx", &s.Upstream5xx)
	for i := range s.codes {
		if n := s.codes[i].Value(); n > 0 {
			v(codeNames[i], engine.KindCounter, float64(n))
		}
	}
	if first {
		// The breakers are cluster-wide: reported once (by worker 0), so that the text
		// form's sum over workers is the state.
		open := func(name string, r *engine.Resource) {
			x := 0.0
			if r.Open() {
				x = 1
			}
			v(name, engine.KindGauge, x)
		}
		open("circuit_breakers.default.cx_open", &b.Connections)
		open("circuit_breakers.default.rq_pending_open", &b.PendingRequests)
		open("circuit_breakers.default.rq_open", &b.Requests)
		open("circuit_breakers.default.rq_retry_open", &b.Retries)
		rem := func(name string, r *engine.Resource) {
			v(name, engine.KindGauge, float64(max(0, r.Limit()-r.Count())))
		}
		rem("circuit_breakers.default.remaining_cx", &b.Connections)
		rem("circuit_breakers.default.remaining_pending", &b.PendingRequests)
		rem("circuit_breakers.default.remaining_rq", &b.Requests)
		rem("circuit_breakers.default.remaining_retries", &b.Retries)
	}
}

// codeNames are "upstream_rq_100" ... "upstream_rq_599", made once.
var codeNames = func() (n [500]string) {
	for i := range n {
		n[i] = "upstream_rq_" + strconv.Itoa(100+i)
	}
	return n
}()

package engine

import "sync"

// balancer implements exact_balance (and the active-connection count per worker that it
// needs). Without exact balance it only counts.
type balancer struct {
	exact  bool
	mu     sync.Mutex
	counts []int64 // active connections per worker
	totals []int64 // connections ever given to each worker
}

// pick returns the worker with the fewest active connections, as Envoy's exact balancer
// does, and counts one more on it. Ties go to the worker that was given the fewest
// connections so far, then to the accepting worker: when connections are short-lived the
// active counts are mostly equal (0 or 1), and Envoy's first-in-list tie-break would then
// pile the churn onto one worker.
func (b *balancer) pick(self int) int {
	if !b.exact {
		return self
	}
	b.mu.Lock()
	best := self
	for i, c := range b.counts {
		if c < b.counts[best] || (c == b.counts[best] && b.totals[i] < b.totals[best]) {
			best = i
		}
	}
	b.counts[best]++
	b.totals[best]++
	b.mu.Unlock()
	return best
}

// take counts a connection worker accepted for itself, outside pick.
func (b *balancer) take(worker int) {
	if !b.exact {
		return
	}
	b.mu.Lock()
	b.counts[worker]++
	b.totals[worker]++
	b.mu.Unlock()
}

func (b *balancer) release(worker int) {
	if !b.exact {
		return
	}
	b.mu.Lock()
	b.counts[worker]--
	b.mu.Unlock()
}

package engine

import (
	"sync"
	"sync/atomic"
)

// ClusterRegistry maps cluster names to the cluster version that serves new connections
// (Envoy's thread-local cluster manager lookup). Filters keep names, not clusters, and look
// the name up for each connection or request, so a cluster can be added, replaced or
// removed while the server runs (CDS) without touching the listeners that name it. A
// lookup is one atomic load and a map read: the map is immutable once published, and a
// change publishes a new one (changes are rare, lookups are per connection).
type ClusterRegistry struct {
	mu sync.Mutex // serialises writers
	m  atomic.Pointer[map[string]*Cluster]
	// draft, during a batch (Server.ClusterBatch), is the next map, changed in place
	// and published once when the batch ends: one copy per CDS version rather than one
	// per cluster (a 1,000-cluster version made a million map writes).
	draft map[string]*Cluster
}

// NewClusterRegistry returns an empty registry.
func NewClusterRegistry() *ClusterRegistry {
	r := &ClusterRegistry{}
	m := map[string]*Cluster{}
	r.m.Store(&m)
	return r
}

// Get returns the current version of the named cluster, or nil if there is none (yet).
// It is safe from any goroutine.
func (r *ClusterRegistry) Get(name string) *Cluster { return (*r.m.Load())[name] }

// Len is the number of clusters.
func (r *ClusterRegistry) Len() int { return len(*r.m.Load()) }

// Put publishes c under its name, replacing any cluster of that name, and returns the
// version it replaced (nil if none). A configuration publishes its static clusters with
// it before the server runs; once it runs, Server.AddCluster and UpdateCluster publish
// (they also bring the cluster live on the workers).
func (r *ClusterRegistry) Put(c *Cluster) *Cluster { return r.put(c) }

func (r *ClusterRegistry) put(c *Cluster) *Cluster {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draft != nil {
		prev := r.draft[c.cfg.Name]
		r.draft[c.cfg.Name] = c
		return prev
	}
	old := *r.m.Load()
	next := make(map[string]*Cluster, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	prev := next[c.cfg.Name]
	next[c.cfg.Name] = c
	r.m.Store(&next)
	return prev
}

// remove unpublishes the named cluster and returns it (nil if there was none).
func (r *ClusterRegistry) remove(name string) *Cluster {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draft != nil {
		prev, ok := r.draft[name]
		if !ok {
			return nil
		}
		delete(r.draft, name)
		return prev
	}
	old := *r.m.Load()
	prev, ok := old[name]
	if !ok {
		return nil
	}
	next := make(map[string]*Cluster, len(old))
	for k, v := range old {
		if k != name {
			next[k] = v
		}
	}
	r.m.Store(&next)
	return prev
}

// lookup is Get for the server's own writers: during a batch it sees the draft.
func (r *ClusterRegistry) lookup(name string) *Cluster {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draft != nil {
		return r.draft[name]
	}
	return (*r.m.Load())[name]
}

// begin starts a batch (nested batches join the outer one); it reports whether this
// call started it.
func (r *ClusterRegistry) begin() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draft != nil {
		return false
	}
	old := *r.m.Load()
	r.draft = make(map[string]*Cluster, len(old))
	for k, v := range old {
		r.draft[k] = v
	}
	return true
}

// end publishes the batch's map.
func (r *ClusterRegistry) end() {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := r.draft
	r.draft = nil
	r.m.Store(&next)
}

// retire is called when c stops being the version new connections get (replaced or
// removed): its hosts count as removed, so each worker closes their idle pooled
// connections and pools none again (the OnRemoved hooks), while connections in use finish.
func (c *Cluster) retire() {
	c.mu.Lock()
	var hosts []*Host
	if c.current != nil {
		hosts = c.current.hosts
	}
	live, srv := c.live, c.srv
	c.mu.Unlock()
	for _, h := range hosts {
		h.removed.Store(true)
	}
	if !live || srv == nil {
		return
	}
	for _, w := range srv.workers {
		w.Post(func() {
			for _, h := range hosts {
				if fn := h.local[w.ID].OnRemoved; fn != nil {
					fn()
				}
			}
		})
	}
}

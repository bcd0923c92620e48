package dns

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/portico-proxy/portico/engine"
)

// Kind is the discovery type of a DNS cluster.
type Kind int

// Discovery types.
const (
	// Strict (STRICT_DNS): every address of every endpoint's name is a host.
	Strict Kind = iota
	// Logical (LOGICAL_DNS): one host, at the first address of the latest answer.
	Logical
)

func (k Kind) String() string {
	if k == Logical {
		return "LOGICAL_DNS"
	}
	return "STRICT_DNS"
}

// DefaultRefreshRate is Envoy's dns_refresh_rate default.
const DefaultRefreshRate = 5 * time.Second

// Target is one endpoint to resolve: socket_address.address and port_value, the
// lb_endpoint's load_balancing_weight and the endpoint's hostname (""; the name is then
// the hosts' hostname, as in Envoy).
type Target struct {
	Name     string
	Port     uint16
	Weight   uint32
	Hostname string
}

// Config is one DNS cluster's resolution settings.
type Config struct {
	Kind    Kind
	Targets []Target // Logical: exactly one
	Family  Family
	// RefreshRate is the time between resolutions after a success (dns_refresh_rate);
	// 0: DefaultRefreshRate.
	RefreshRate time.Duration
	// Jitter adds a random delay in [0, Jitter) to each refresh after a success
	// (dns_jitter).
	Jitter time.Duration
	// FailureBase and FailureMax are the backoff after a failure
	// (dns_failure_refresh_rate): FailureBase doubles up to FailureMax (0: 10 × base),
	// each wait drawn in [interval/2, interval]. FailureBase 0: RefreshRate, fixed.
	FailureBase, FailureMax time.Duration
	// RespectTTL refreshes after the smallest TTL of the answer instead of RefreshRate
	// (respect_dns_ttl), unless that TTL is 0.
	RespectTTL bool
	// WaitForWarm makes Warm wait for the first resolution of every target
	// (wait_for_warm_on_init, true in Envoy by default).
	WaitForWarm bool
	Resolver    *Resolver // nil: NewResolver(ResolverConfig{})
	Logger      *slog.Logger
}

// Cluster resolves a DNS cluster's endpoints and updates its hosts. It is a
// config.Runner (Run) and an engine.StatsSource (Envoy's cluster.<name>.update_* and
// membership_* stats).
type Cluster struct {
	c   *engine.Cluster
	cfg Config
	log *slog.Logger

	mu      sync.Mutex // serialises host-set updates (one goroutine per target)
	targets []*target
	logical *engine.Host // Logical: the current host

	warm     chan struct{}
	warmLeft int // targets whose first resolution is pending; guarded by mu

	stats Stats
}

// Stats are a DNS cluster's stats, with Envoy's names.
type Stats struct {
	UpdateAttempt    engine.Counter
	UpdateSuccess    engine.Counter
	UpdateFailure    engine.Counter
	UpdateNoRebuild  engine.Counter
	MembershipChange engine.Counter
}

type target struct {
	Target
	hosts   []*engine.Host // Strict: the hosts of the last good answer, in its order
	backoff time.Duration  // the next failure interval; 0: FailureBase
}

// New makes the resolution loop of cluster c (which should have no static endpoints).
func New(c *engine.Cluster, cfg Config) (*Cluster, error) {
	if cfg.Kind == Logical && len(cfg.Targets) != 1 {
		return nil, fmt.Errorf("cluster %q: a LOGICAL_DNS cluster has exactly one endpoint, got %d", c.Name(), len(cfg.Targets))
	}
	if cfg.RefreshRate <= 0 {
		cfg.RefreshRate = DefaultRefreshRate
	}
	if cfg.FailureBase > 0 && cfg.FailureMax <= 0 {
		cfg.FailureMax = 10 * cfg.FailureBase
	}
	if cfg.FailureMax < cfg.FailureBase {
		cfg.FailureMax = cfg.FailureBase
	}
	if cfg.Resolver == nil {
		cfg.Resolver = NewResolver(ResolverConfig{})
	}
	d := &Cluster{c: c, cfg: cfg, log: cfg.Logger, warm: make(chan struct{})}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	for _, t := range cfg.Targets {
		d.targets = append(d.targets, &target{Target: t})
	}
	d.warmLeft = len(d.targets)
	if !cfg.WaitForWarm || d.warmLeft == 0 {
		close(d.warm)
	}
	return d, nil
}

// Cluster is the engine cluster whose hosts this loop keeps.
func (d *Cluster) Cluster() *engine.Cluster { return d.c }

// SetLogger makes the loop log host changes (info) and failed resolutions (debug) there;
// call it before Run.
func (d *Cluster) SetLogger(l *slog.Logger) {
	if l != nil {
		d.log = l
	}
}

// Config returns the loop's configuration, defaults filled in.
func (d *Cluster) Config() Config { return d.cfg }

// Stats returns the cluster's resolution stats.
func (d *Cluster) Stats() *Stats { return &d.stats }

// Warm is closed once every target had its first resolution, successful or not (at once
// without WaitForWarm). Envoy's cluster warm-up ends the same way, after the first
// answer or failure: a name that does not resolve does not hold the server back.
func (d *Cluster) Warm() <-chan struct{} { return d.warm }

// Run resolves every target now and then at its refresh rate until ctx is cancelled;
// it returns when all its goroutines have.
func (d *Cluster) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, t := range d.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.loop(ctx, t)
		}()
	}
	wg.Wait()
}

func (d *Cluster) loop(ctx context.Context, t *target) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		wait := d.resolve(ctx, t)
		if ctx.Err() != nil {
			return
		}
		timer.Reset(wait)
	}
}

// resolve does one resolution of t and applies it; it returns the wait until the next.
func (d *Cluster) resolve(ctx context.Context, t *target) time.Duration {
	d.stats.UpdateAttempt.Inc()
	a, err := d.cfg.Resolver.Resolve(ctx, t.Name, d.cfg.Family)
	if ctx.Err() != nil {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.warmed()
	ok := err == nil
	if ok && d.cfg.Kind == Logical && len(a.Addrs) == 0 {
		// Envoy's logical host keeps its address on an empty answer: a failure.
		ok, err = false, fmt.Errorf("no address")
	}
	if !ok {
		d.stats.UpdateFailure.Inc()
		d.log.Debug("dns resolution failed", "cluster", d.c.Name(), "name", t.Name, "err", err)
		return d.failureWait(t)
	}
	d.stats.UpdateSuccess.Inc()
	t.backoff = 0
	if d.cfg.Kind == Logical {
		d.applyLogical(t, a.Addrs[0])
	} else {
		d.applyStrict(t, a.Addrs)
	}
	wait := d.cfg.RefreshRate
	if d.cfg.RespectTTL && len(a.Addrs) > 0 && a.TTL > 0 {
		wait = a.TTL
	}
	if d.cfg.Jitter > 0 {
		wait += rand.N(d.cfg.Jitter)
	}
	return wait
}

// warmed counts a target's first resolution; mu is held.
func (d *Cluster) warmed() {
	if d.warmLeft == 0 {
		return
	}
	if d.warmLeft--; d.warmLeft == 0 && d.cfg.WaitForWarm {
		close(d.warm)
	}
}

func (d *Cluster) failureWait(t *target) time.Duration {
	if d.cfg.FailureBase <= 0 {
		return d.cfg.RefreshRate
	}
	if t.backoff == 0 {
		t.backoff = d.cfg.FailureBase
	}
	iv := t.backoff
	t.backoff = min(2*t.backoff, d.cfg.FailureMax)
	return iv/2 + rand.N(iv/2+1)
}

// applyStrict makes t's hosts the answer's addresses: hosts whose address stays are kept
// (the same *engine.Host, so their connections and pools live on).
func (d *Cluster) applyStrict(t *target, addrs []netip.Addr) {
	old := make(map[netip.AddrPort]*engine.Host, len(t.hosts))
	for _, h := range t.hosts {
		old[h.Address()] = h
	}
	hostname := t.Hostname
	if hostname == "" {
		hostname = t.Name
	}
	seen := make(map[netip.AddrPort]bool, len(addrs))
	hosts := make([]*engine.Host, 0, len(addrs))
	changed := false
	for _, ip := range addrs {
		ap := netip.AddrPortFrom(ip, t.Port)
		if seen[ap] {
			continue
		}
		seen[ap] = true
		h := old[ap]
		if h == nil {
			h = engine.NewHost(ap, t.Weight, hostname, d.c.Workers())
			changed = true
		}
		hosts = append(hosts, h)
	}
	if len(hosts) != len(t.hosts) {
		changed = true
	}
	if !changed {
		d.stats.UpdateNoRebuild.Inc()
		return
	}
	t.hosts = hosts
	var all []*engine.Host
	for _, x := range d.targets {
		all = append(all, x.hosts...)
	}
	d.stats.MembershipChange.Inc()
	d.c.UpdateHosts(all)
	d.log.Info("dns hosts changed", "cluster", d.c.Name(), "name", t.Name, "hosts", len(hosts), "cluster_hosts", len(all))
}

// applyLogical points the logical host at addr. A changed address is a new Host: new
// connections go there, open ones keep the old one until they close.
func (d *Cluster) applyLogical(t *target, addr netip.Addr) {
	ap := netip.AddrPortFrom(addr, t.Port)
	if d.logical != nil && d.logical.Address() == ap {
		return
	}
	hostname := t.Hostname
	if hostname == "" {
		hostname = t.Name
	}
	d.logical = engine.NewHost(ap, t.Weight, hostname, d.c.Workers())
	d.stats.MembershipChange.Inc()
	d.c.UpdateHosts([]*engine.Host{d.logical})
	d.log.Info("dns logical host changed", "cluster", d.c.Name(), "name", t.Name, "address", ap.String())
}

// StatsFamily implements engine.StatsSource: the stats print under cluster.<name>.
func (*Cluster) StatsFamily() string { return "cluster" }

// StatsLabels implements engine.StatsSource.
func (d *Cluster) StatsLabels() [][2]string { return [][2]string{{"cluster", d.c.Name()}} }

// VisitStats implements engine.StatsSource. The stats are cluster-wide: worker 0 reports
// them, so that the sum over workers is the value.
func (d *Cluster) VisitStats(worker int, v engine.StatVisitor) {
	if worker != 0 {
		return
	}
	c := func(name string, x *engine.Counter) { v(name, engine.KindCounter, float64(x.Value())) }
	c("update_attempt", &d.stats.UpdateAttempt)
	c("update_success", &d.stats.UpdateSuccess)
	c("update_failure", &d.stats.UpdateFailure)
	c("update_no_rebuild", &d.stats.UpdateNoRebuild)
	c("membership_change", &d.stats.MembershipChange)
	hosts := d.c.Hosts()
	healthy := 0
	for _, h := range hosts {
		if h.Healthy() {
			healthy++
		}
	}
	v("membership_total", engine.KindGauge, float64(len(hosts)))
	v("membership_healthy", engine.KindGauge, float64(healthy))
}

package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/portico-proxy/portico/config"
)

// warmTimeout bounds the wait for the DNS clusters' first resolutions. Each is bounded by
// its resolver's timeouts already (query_timeout_seconds × query_tries per family); this
// keeps a slow name server from holding the listeners back longer than that.
const warmTimeout = 20 * time.Second

// waitWarm waits for the configuration's warm-up (see config.Config.WaitWarm) and says
// which clusters were not warm in time: they start with the hosts they have, none for a
// DNS cluster without an answer yet.
func waitWarm(cfg *config.Config, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), warmTimeout)
	defer cancel()
	start := time.Now()
	if cold := cfg.WaitWarm(ctx); len(cold) > 0 {
		log.Warn("clusters not warm; starting without their first answer", "clusters", cold, "waited", time.Since(start).Round(time.Millisecond).String())
	} else if len(cfg.Runners) > 0 {
		log.Debug("clusters warm", "took", time.Since(start).Round(time.Millisecond).String())
	}
}

// setLoggers gives the runners that log (DNS clusters) the binary's logger.
func setLoggers(cfg *config.Config, log *slog.Logger) {
	for _, r := range cfg.Runners {
		if l, ok := r.(interface{ SetLogger(*slog.Logger) }); ok {
			l.SetLogger(log)
		}
	}
}

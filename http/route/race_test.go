//go:build race

package route

// raceEnabled: the race detector makes sync.Pool (inside regexp) drop items, so
// allocation counts mean nothing then.
const raceEnabled = true

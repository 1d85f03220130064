//go:build race

package observe

// raceEnabled reports a -race build: sync.Pool then drops items at random,
// so pool-backed paths allocate.
const raceEnabled = true

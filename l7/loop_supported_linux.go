//go:build linux

package l7

// EventLoopsSupported reports whether the fast engine can run event loops
// on this platform.
const EventLoopsSupported = true

//go:build !linux

package plugins

// workersSupported: elsewhere guests run on the calling goroutine.
const workersSupported = false

func threadID() int { return 0 }

func lowerThreadPriority(int) {}

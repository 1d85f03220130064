//go:build windows

package main

import (
	"errors"
	"os"
)

// Windows has no SIGUSR2 and cannot hand sockets to a child process the
// same way: zero-downtime upgrades are not available there.
var upgradeSignals []os.Signal

func isUpgradeSignal(os.Signal) bool { return false }

func signalUpgrade(int) error {
	return errors.New("zero-downtime upgrade is not supported on Windows")
}

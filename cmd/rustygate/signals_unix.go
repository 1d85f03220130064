//go:build !windows

package main

import (
	"os"
	"syscall"
)

// upgradeSignals start a zero-downtime binary upgrade.
var upgradeSignals = []os.Signal{syscall.SIGUSR2}

func isUpgradeSignal(s os.Signal) bool { return s == syscall.SIGUSR2 }

// signalUpgrade asks the gateway with that pid to upgrade itself.
func signalUpgrade(pid int) error { return syscall.Kill(pid, syscall.SIGUSR2) }

//go:build !unix

package main

import (
	"errors"
	"os"
	"syscall"
)

// handOver: binary upgrades hand sockets over on Unix systems only.
func handOver(c syscall.Conn, name string) (*os.File, error) {
	return nil, errors.New("sockets cannot be handed over on this system")
}

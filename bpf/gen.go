// Package bpf holds RustyGate's eBPF programs: the C sources, the vmlinux.h
// they compile against, and the Go bindings bpf2go generates from them.
// The generated *_bpfel.go and *_bpfel.o are committed, so building and
// testing need only Go; `make generate` rebuilds them with clang (CI
// checks that the committed files match).
//
// Only loader/ uses this package: it loads, attaches, pins and closes the
// objects. Nothing else may touch them.
package bpf

//go:generate go tool bpf2go -tags linux -target bpfel -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3" Limiter limiter.c -- -I.

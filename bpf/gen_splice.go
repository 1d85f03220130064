package bpf

// Kernel byte splicing (sockmap) for the L4 proxy and sk_lookup steering.
//go:generate go tool bpf2go -tags linux -target bpfel -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3" Splice splice.c -- -I.
//go:generate go tool bpf2go -tags linux -target bpfel -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3" Steer steer.c -- -I.

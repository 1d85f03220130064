// Package loader owns RustyGate's kernel datapath: it is the only code that
// talks to the bpf syscall. A Datapath probes what the kernel can do, loads
// the programs of package bpf, attaches them to the configured interfaces
// (XDP in native mode where the driver supports it, else generic XDP, else
// TCX), pins the maps under datapath.bpffs, and on Close detaches and
// unpins them again (the maps stay when datapath.persist is set).
//
// Every kernel feature has a userspace twin with the same semantics, used
// on other operating systems, without privileges, or with
// datapath.mode: userspace: the per-source connection limiter, the
// allow/deny lists and bans run in the accept path (WrapListener). Mode
// and Reason say which one runs and why.
//
// A reload changes the settings in place (Update): Prepare checks the new
// settings without writing them, the returned Change commits them (on a
// kernel refusal the previous ones are written back) and, when a later
// step of the reload fails, Revert restores the previous ones.
//
// Two more kernel objects serve the L4 proxy: a Splicer moves the bytes of
// a pair of sockets in the kernel (a SOCKHASH and an sk_skb verdict that
// tracks each socket's TCP sequence so a byte is never delivered twice or
// lost; Linux 6.2+, with a startup self-test and per-connection fallback to
// splice(2)), and a Steering attaches an sk_lookup program that sends the
// new connections of an address and port range to one listening socket
// held in a pinned SOCKMAP (an l4 port range listener's, pinned under
// bpffs/steer/NAME; the pinned program marks which process owns them).
//
// loader must not grow request-path policy: it filters connections by
// source address and nothing else. Other packages ask it for handles and
// never load or attach BPF objects themselves.
package loader

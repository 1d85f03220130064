//go:build ignore

// SPDX-License-Identifier: Apache-2.0
//
// sk_lookup connection steering: new TCP connections to an address in
// rg_steer_cfg's prefix and a port in its range go to the one listening
// socket in rg_steer_sock, whatever port they asked for. The SOCKMAP is
// pinned: a new process takes over new connections by putting its own
// listener there, while the old one drains the connections it has.
// Family 0 steers both families, whatever the address: a wildcard range
// served by a dual-stack socket.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

// rg_steer_cfg is set before load (read-only data). Addresses and masks
// are in network byte order, the address already masked; ports in host
// byte order. family is AF_INET, AF_INET6, or 0 for both (no address
// check).
struct rg_steer_cfg {
	__u32 family;
	__u32 addr[4];
	__u32 mask[4];
	__u16 port_lo;
	__u16 port_hi;
};

volatile const struct rg_steer_cfg rg_steer_cfg;

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rg_steer_sock SEC(".maps");

SEC("sk_lookup")
int rg_steer(struct bpf_sk_lookup *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	if (rg_steer_cfg.family && ctx->family != rg_steer_cfg.family)
		return SK_PASS;
	__u16 port = ctx->local_port;
	if (port < rg_steer_cfg.port_lo || port > rg_steer_cfg.port_hi)
		return SK_PASS;
	if (rg_steer_cfg.family == AF_INET) {
		if ((ctx->local_ip4 & rg_steer_cfg.mask[0]) != rg_steer_cfg.addr[0])
			return SK_PASS;
	} else if (rg_steer_cfg.family == AF_INET6) {
		if ((ctx->local_ip6[0] & rg_steer_cfg.mask[0]) != rg_steer_cfg.addr[0] ||
		    (ctx->local_ip6[1] & rg_steer_cfg.mask[1]) != rg_steer_cfg.addr[1] ||
		    (ctx->local_ip6[2] & rg_steer_cfg.mask[2]) != rg_steer_cfg.addr[2] ||
		    (ctx->local_ip6[3] & rg_steer_cfg.mask[3]) != rg_steer_cfg.addr[3])
			return SK_PASS;
	}
	__u32 key = 0;
	struct bpf_sock *sk = bpf_map_lookup_elem(&rg_steer_sock, &key);
	if (!sk)
		return SK_PASS;
	bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	return SK_PASS;
}

char __license[] SEC("license") = "Dual BSD/GPL";

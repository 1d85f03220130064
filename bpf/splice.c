//go:build ignore

// SPDX-License-Identifier: Apache-2.0
//
// Kernel byte splicing for RustyGate's L4 proxy (opt-in: `datapath:
// kernel` on an l4 listener). Both sockets of a proxied connection sit in
// rg_splice_socks, which has rg_splice_verdict attached as its sk_skb
// stream verdict (no stream parser). The verdict redirects every byte a
// socket receives to the egress of its peer, named in rg_splice_conns.
//
// Integrity guards, per socket, from the TCP sequence numbers of each skb
// (TCP_SKB_CB(skb)->seq/end_seq, read through bpf_cast_to_kern_ctx):
//   - bytes the verdict has already redirected are never sent twice:
//     a head overlap is trimmed off, a whole duplicate dropped;
//   - a gap (bytes the verdict never saw) marks the connection broken;
//     userspace then resets both sides rather than deliver a hole.
// A 0-length skb (a lone FIN) is dropped: redirecting it breaks the peer.
// The FIN is recorded (RG_FIN) once every byte before it went through the
// verdict, so userspace knows when it may half-close the peer.
//
// A redirect that finds no peer (it closed or was reset) sets RG_PEER_GONE:
// the connection is ending anyway.
//
// The verdict redirects into rg_splice_peers, a second SOCKHASH with no
// programs: userspace inserts both sockets there first, then into
// rg_splice_socks, so a redirect never finds its peer missing.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define RG_SEQ_VALID 1
#define RG_FIN 2
#define RG_BROKEN 4
#define RG_PEER_GONE 8
// Up to this many adjust_room calls (of 0xfff bytes) trim an overlap.
#define RG_MAX_TRIM_STEPS 256

// rg_splice_conn is one socket's state; userspace creates it before the
// socket is inserted and deletes it after removal. The verdict runs under
// the socket's lock, so plain updates do.
struct rg_splice_conn {
	__u64 peer;       // the peer's socket cookie
	__u64 bytes;      // bytes redirected to the peer
	__u64 dup_bytes;  // bytes seen again and dropped
	__u64 gap_bytes;  // bytes never seen (a hole): the connection is broken
	__u32 next_seq;   // sequence number of the next byte expected
	__u32 flags;      // RG_*
	__u32 errors;     // failed reads and trims
	__u32 last_overlap; // size of the last overlap that could not be trimmed
	__u64 overlaps;   // skbs whose head repeated bytes already sent (trimmed)
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} rg_splice_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} rg_splice_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct rg_splice_conn);
} rg_splice_conns SEC(".maps");

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

SEC("sk_skb/stream_verdict")
int rg_splice_verdict(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct rg_splice_conn *c = bpf_map_lookup_elem(&rg_splice_conns, &cookie);
	if (!c)
		return SK_PASS;

	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	__u32 se[2];
	if (bpf_probe_read_kernel(se, sizeof(se), &kskb->cb[0])) {
		c->errors++;
		c->flags |= RG_BROKEN;
		return SK_DROP;
	}
	__u32 seq = se[0];
	__u32 len = skb->len;
	// end_seq counts a FIN as one more byte.
	int fin = se[1] - seq > len;

	if (len == 0) {
		if (fin)
			c->flags |= RG_FIN;
		return SK_DROP;
	}
	if (!(c->flags & RG_SEQ_VALID)) {
		c->next_seq = seq;
		c->flags |= RG_SEQ_VALID;
	}
	__s32 ahead = (__s32)(seq - c->next_seq);
	if (ahead > 0) {
		c->gap_bytes += ahead;
		c->flags |= RG_BROKEN;
		return SK_DROP;
	}
	__u32 dup = -ahead;
	if (dup >= len) {
		c->dup_bytes += len;
		if (fin)
			c->flags |= RG_FIN;
		return SK_DROP;
	}
	if (dup > 0) {
		// The kernel handed us bytes we already sent (an skb seen before,
		// grown since by coalescing): cut them off the head. One
		// adjust_room shrinks at most 0xfff linear bytes.
		if (bpf_skb_pull_data(skb, dup)) {
			c->errors++;
			c->last_overlap = dup;
			c->flags |= RG_BROKEN;
			return SK_DROP;
		}
		__u32 left = dup;
		for (int i = 0; i < RG_MAX_TRIM_STEPS && left > 0; i++) {
			__u32 step = left > 0xfff ? 0xfff : left;
			if (bpf_skb_adjust_room(skb, -(__s32)step, 0, 0))
				break;
			left -= step;
		}
		if (left > 0) {
			c->errors++;
			c->last_overlap = dup;
			c->flags |= RG_BROKEN;
			return SK_DROP;
		}
		c->dup_bytes += dup;
		c->overlaps++;
	}
	long ret = bpf_sk_redirect_hash(skb, &rg_splice_peers, &c->peer, 0);
	if (ret != SK_PASS) {
		// The peer left the map (closed, reset): nowhere to send to.
		c->flags |= RG_PEER_GONE;
		return SK_DROP;
	}
	c->next_seq = seq + len;
	c->bytes += len - dup;
	if (fin)
		c->flags |= RG_FIN;
	return ret;
}

char __license[] SEC("license") = "Dual BSD/GPL";

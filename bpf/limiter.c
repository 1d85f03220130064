//go:build ignore

// SPDX-License-Identifier: Apache-2.0
//
// The kernel half of RustyGate's connection limiter. For every TCP packet,
// and every UDP datagram (QUIC, for HTTP/3), addressed to one of the
// gateway's ports (rg_ports) it drops, in order:
//   - packets from a deny-listed source (rg_deny, LPM trie)       -> denied
//   - packets from a banned source whose ban has not expired
//     (rg_bans, LRU hash of CLOCK_MONOTONIC expiry times)          -> banned
//   - new connections (SYN without ACK) from a source that has used up
//     its token bucket (rg_sources, LRU hash), unless the source is
//     allow-listed (rg_allow, LPM trie)                             -> limited
//   - likewise new QUIC connections: a long-header Initial packet (QUIC
//     v1 or v2) whose destination connection ID (the client's choice,
//     8 to 20 bytes) has not been admitted from that source within the
//     last second (rg_quic_seen, LRU hash). A client's first flight can
//     span several Initial packets with that ID: the connection is
//     charged once. An Initial with a shorter ID cannot open a connection
//     (RFC 9000, 7.2) and passes to be discarded by the server.
// New connections that get through count as passed. Everything else,
// including all traffic to other ports, passes untouched.
//
// The same function runs as XDP (native or generic) and as a TCX/tc
// ingress classifier, whichever the interface supports. Userspace
// (loader/) owns every map: it writes the ports, lists, settings and bans,
// reads the counters and sweeps expired bans.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Constants that BTF does not carry (they are #defines in the kernel).
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IP_OFFSET 0x1FFF
#define IP6_OFFSET 0xFFF8
#define NEXTHDR_HOP 0
#define NEXTHDR_TCP 6
#define NEXTHDR_UDP 17
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10
// QUIC long header (RFC 9000, 17.2; RFC 9369 for v2): header form and
// fixed bits, the Initial packet type of each version.
#define QUIC_FORM_FIXED 0xC0
#define QUIC_V1 0x00000001
#define QUIC_V2 0x6b3343cf
#define QUIC_MIN_CID 8
#define QUIC_MAX_CID 20
// rg_quic_seen remembers an admitted connection ID this long.
#define RG_QUIC_SEEN_NS 1000000000ULL
#define RG_FAMILY_V4 4
#define RG_FAMILY_V6 6
// Up to this many bytes of headers are pulled into the linear part of an
// skb before parsing it (tc only; XDP sees the whole frame).
#define RG_PULL_LEN 128

#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))

// rg_addr is a source address: IPv6 as is, IPv4 as an IPv4-mapped IPv6
// address (::ffff:a.b.c.d), so one map serves both families.
struct rg_addr {
	__u8 addr[16];
};

// rg_lpm_key is an allow/deny list key. The family byte and its padding
// come first, so a v6 prefix never matches a v4 source: prefixlen is 32
// plus the CIDR's length, and addr holds 4 (v4) or 16 (v6) bytes.
struct rg_lpm_key {
	__u32 prefixlen;
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};

// rg_quic_key is a QUIC connection being opened: the source and the first
// 8 bytes of the destination connection ID its client chose.
struct rg_quic_key {
	struct rg_addr addr;
	__u8 dcid[QUIC_MIN_CID];
};

// rg_bucket is one source's token bucket, kept as a GCRA "theoretical
// arrival time": a connection is allowed when tat, advanced by one
// interval, stays within the tolerance (burst intervals) of now.
struct rg_bucket {
	__u64 tat;
};

// rg_settings holds the limiter's parameters. interval_ns 0 turns the rate
// limit off (deny list and bans still apply).
struct rg_settings {
	__u64 interval_ns;  // 1e9 / rate
	__u64 tolerance_ns; // burst * interval_ns
};

// rg_counters are per-CPU: userspace sums them.
struct rg_counters {
	__u64 passed;  // new connections let through
	__u64 limited; // SYNs dropped by the token bucket
	__u64 denied;  // packets dropped by the deny list
	__u64 banned;  // packets dropped by a ban
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); // datapath.kernel_rate_limit.max_sources
	__type(key, struct rg_addr);
	__type(value, struct rg_bucket);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rg_sources SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct rg_quic_key);
	__type(value, __u64); // when it was admitted, bpf_ktime_get_ns() clock
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rg_quic_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct rg_addr);
	__type(value, __u64); // ban expiry, bpf_ktime_get_ns() clock
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rg_bans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct rg_lpm_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rg_allow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct rg_lpm_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rg_deny SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16); // destination port, host byte order
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rg_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rg_settings);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rg_settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rg_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rg_counters SEC(".maps");

struct rg_vlan {
	__be16 tci;
	__be16 proto;
};

struct rg_ip6_ext {
	__u8 nexthdr;
	__u8 hdrlen; // in 8-byte units, not counting the first 8 bytes
};

struct rg_ip6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 id;
};

enum rg_verdict {
	RG_PASS,
	RG_DROP,
};

// rg_source is what the limiter needs from a packet.
struct rg_source {
	struct rg_addr key;
	struct rg_lpm_key lpm;
	__u16 dport;
	__u8 proto; // NEXTHDR_TCP or NEXTHDR_UDP
	__u8 flags; // TCP flags
	__u8 quic_initial;
	__u8 dcid[QUIC_MIN_CID];
};

static __always_inline struct rg_counters *counters(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&rg_counters, &zero);
}

// quic_long is the start of a QUIC long header, up to the first 8 bytes
// of the destination connection ID.
struct quic_long {
	__u8 first;
	__be32 version;
	__u8 dcid_len;
	__u8 dcid[QUIC_MIN_CID];
} __attribute__((packed));

// parse_quic reads the UDP header at cur and marks src as a QUIC Initial
// packet that can open a connection.
static __always_inline int parse_quic(void *cur, void *data_end, struct rg_source *src)
{
	struct udphdr *udp = cur;
	if ((void *)(udp + 1) > data_end)
		return -1;
	src->dport = bpf_ntohs(udp->dest);
	struct quic_long *q = (void *)(udp + 1);
	if ((void *)(q + 1) > data_end)
		return 0;
	if ((q->first & QUIC_FORM_FIXED) != QUIC_FORM_FIXED)
		return 0;
	__u32 version = bpf_ntohl(q->version);
	__u8 type = (q->first >> 4) & 3;
	if (!((version == QUIC_V1 && type == 0) || (version == QUIC_V2 && type == 1)))
		return 0;
	if (q->dcid_len < QUIC_MIN_CID || q->dcid_len > QUIC_MAX_CID)
		return 0;
	src->quic_initial = 1;
	__builtin_memcpy(src->dcid, q->dcid, QUIC_MIN_CID);
	return 0;
}

// parse fills src from an Ethernet frame and returns 0, or returns -1 for
// anything that is not the first fragment of a TCP segment or UDP
// datagram over IPv4 or IPv6 (such packets always pass).
static __always_inline int parse(void *data, void *data_end, struct rg_source *src)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return -1;
	__be16 proto = eth->h_proto;
	void *cur = eth + 1;

#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct rg_vlan *vlan = cur;
		if ((void *)(vlan + 1) > data_end)
			return -1;
		proto = vlan->proto;
		cur = vlan + 1;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cur;
		if ((void *)(ip + 1) > data_end)
			return -1;
		if (ip->ihl < 5 || (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP))
			return -1;
		src->proto = ip->protocol;
		if (ip->frag_off & bpf_htons(IP_OFFSET))
			return -1;
		src->key.addr[10] = 0xff;
		src->key.addr[11] = 0xff;
		__builtin_memcpy(&src->key.addr[12], &ip->saddr, 4);
		src->lpm.prefixlen = 32 + 32;
		src->lpm.family = RG_FAMILY_V4;
		__builtin_memcpy(src->lpm.addr, &ip->saddr, 4);
		cur += ip->ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cur;
		if ((void *)(ip6 + 1) > data_end)
			return -1;
		__u8 next = ip6->nexthdr;
		cur = ip6 + 1;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			if (next == NEXTHDR_HOP || next == NEXTHDR_ROUTING || next == NEXTHDR_DEST) {
				struct rg_ip6_ext *ext = cur;
				if ((void *)(ext + 1) > data_end)
					return -1;
				next = ext->nexthdr;
				cur += (ext->hdrlen + 1) * 8;
			} else if (next == NEXTHDR_FRAGMENT) {
				struct rg_ip6_frag *frag = cur;
				if ((void *)(frag + 1) > data_end)
					return -1;
				if (frag->frag_off & bpf_htons(IP6_OFFSET))
					return -1;
				next = frag->nexthdr;
				cur = frag + 1;
			} else {
				break;
			}
		}
		if (next != NEXTHDR_TCP && next != NEXTHDR_UDP)
			return -1;
		src->proto = next;
		__builtin_memcpy(src->key.addr, &ip6->saddr, 16);
		src->lpm.prefixlen = 32 + 128;
		src->lpm.family = RG_FAMILY_V6;
		__builtin_memcpy(src->lpm.addr, &ip6->saddr, 16);
	} else {
		return -1;
	}

	if (src->proto == NEXTHDR_UDP)
		return parse_quic(cur, data_end, src);
	struct tcphdr *tcp = cur;
	if ((void *)(tcp + 1) > data_end)
		return -1;
	src->dport = bpf_ntohs(tcp->dest);
	src->flags = ((__u8 *)tcp)[13];
	return 0;
}

// allow_new charges one new connection to the source's token bucket and
// reports whether it fits.
static __always_inline int allow_new(struct rg_addr *key, struct rg_settings *s, __u64 now)
{
	struct rg_bucket *b = bpf_map_lookup_elem(&rg_sources, key);
	if (!b) {
		// A fresh bucket is full: this connection takes one token. The
		// tolerance always covers one interval (burst >= 1).
		struct rg_bucket fresh = {.tat = now + s->interval_ns};
		bpf_map_update_elem(&rg_sources, key, &fresh, BPF_NOEXIST);
		return 1;
	}
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u64 old = READ_ONCE(b->tat);
		__u64 tat = old > now ? old : now;
		__u64 next = tat + s->interval_ns;
		if (next - now > s->tolerance_ns)
			return 0;
		if (__sync_val_compare_and_swap(&b->tat, old, next) == old)
			return 1;
	}
	// Lost the race four times to other CPUs admitting the same source:
	// let this one through rather than spin.
	return 1;
}

static __always_inline enum rg_verdict decide(void *data, void *data_end)
{
	struct rg_source src = {};
	if (parse(data, data_end, &src) < 0)
		return RG_PASS;
	if (!bpf_map_lookup_elem(&rg_ports, &src.dport))
		return RG_PASS;

	struct rg_counters *c = counters();
	if (!c)
		return RG_PASS;

	if (bpf_map_lookup_elem(&rg_deny, &src.lpm)) {
		c->denied++;
		return RG_DROP;
	}

	__u64 now = bpf_ktime_get_ns();
	__u64 *until = bpf_map_lookup_elem(&rg_bans, &src.key);
	if (until && now < READ_ONCE(*until)) {
		c->banned++;
		return RG_DROP;
	}

	struct rg_quic_key qk = {};
	if (src.proto == NEXTHDR_UDP) {
		if (!src.quic_initial)
			return RG_PASS;
		qk.addr = src.key;
		__builtin_memcpy(qk.dcid, src.dcid, QUIC_MIN_CID);
		__u64 *seen = bpf_map_lookup_elem(&rg_quic_seen, &qk);
		if (seen && now - READ_ONCE(*seen) < RG_QUIC_SEEN_NS)
			return RG_PASS; // a connection admitted already
	} else if (!(src.flags & TCP_FLAG_SYN) || (src.flags & TCP_FLAG_ACK)) {
		return RG_PASS;
	}

	__u32 zero = 0;
	struct rg_settings *s = bpf_map_lookup_elem(&rg_settings, &zero);
	if (!s || s->interval_ns == 0 || bpf_map_lookup_elem(&rg_allow, &src.lpm)) {
		c->passed++;
		return RG_PASS;
	}
	if (!allow_new(&src.key, s, now)) {
		c->limited++;
		return RG_DROP;
	}
	if (src.proto == NEXTHDR_UDP)
		bpf_map_update_elem(&rg_quic_seen, &qk, &now, BPF_ANY);
	c->passed++;
	return RG_PASS;
}

SEC("xdp")
int rg_xdp_limit(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	return decide(data, data_end) == RG_DROP ? XDP_DROP : XDP_PASS;
}

SEC("tc")
int rg_tc_limit(struct __sk_buff *skb)
{
	__u32 want = skb->len < RG_PULL_LEN ? skb->len : RG_PULL_LEN;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (data + want > data_end) {
		// Headers in paged data: pull them into the linear part. The
		// helper invalidates the packet pointers, so read them again.
		bpf_skb_pull_data(skb, want);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}
	// TCX_NEXT lets later programs on the hook run; with the legacy tc
	// hook it is TC_ACT_UNSPEC, which also passes.
	return decide(data, data_end) == RG_DROP ? TCX_DROP : TCX_NEXT;
}

char __license[] SEC("license") = "Apache-2.0";

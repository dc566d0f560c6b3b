/* Rewriting a UDP datagram's addresses and ports in a tc program, checksums
 * kept right: what relay_offload.bpf.c does to each datagram it forwards,
 * and the relay bench's kernel floor (benches/relay/relaytc.bpf.c) too.
 * For BPF programs only; the flow struct is relay_offload.h's. */
#ifndef UDP_REWRITE_H
#define UDP_REWRITE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>

#include "relay_offload.h"

/* Offsets in a frame with an Ethernet header and an IPv4 header without
 * options, or an IPv6 header without extension headers (what the programs
 * take). */
#define IP_AT ETH_HLEN
#define IP_CHECK (IP_AT + __builtin_offsetof(struct iphdr, check))
#define UDP_AT(v6) (ETH_HLEN + ((v6) ? sizeof(struct ipv6hdr) : sizeof(struct iphdr)))
#define UDP_CHECK(v6) (UDP_AT(v6) + __builtin_offsetof(struct udphdr, check))

/* Replaces the `size` bytes at `at` with `new`, keeping the UDP checksum
 * right (the IP one too for an IPv4 header field), and `old` → `new` in
 * the UDP checksum's pseudo-header when `pseudo` (an address). The bytes
 * are stored apart (`store`) when several such changes make one field. */
static __always_inline void csum_fix(struct __sk_buff *skb, int v6, __u32 old, __u32 new, __u32 size, int pseudo) {
    if (old == new)
        return;
    /* A zero IPv4 UDP checksum (none) stays zero. */
    bpf_l4_csum_replace(skb, UDP_CHECK(v6), old, new, (pseudo ? BPF_F_PSEUDO_HDR : 0) | BPF_F_MARK_MANGLED_0 | size);
    if (pseudo && !v6)
        bpf_l3_csum_replace(skb, IP_CHECK, old, new, size);
}

/* A 16-byte address (IPv6, or the IPv4 one in its last 4 bytes) at `at`. */
static __always_inline void rewrite_addr(struct __sk_buff *skb, int v6, __u32 at, const __u8 *old, const __u8 *new) {
    if (v6) {
        for (int i = 0; i < 16; i += 4) {
            __u32 o, n;
            __builtin_memcpy(&o, old + i, 4);
            __builtin_memcpy(&n, new + i, 4);
            csum_fix(skb, 1, o, n, 4, 1);
        }
        bpf_skb_store_bytes(skb, at, new, 16, 0);
    } else {
        __u32 o, n;
        __builtin_memcpy(&o, old + 12, 4);
        __builtin_memcpy(&n, new + 12, 4);
        csum_fix(skb, 0, o, n, 4, 1);
        bpf_skb_store_bytes(skb, at, &n, 4, 0);
    }
}

static __always_inline void rewrite_port(struct __sk_buff *skb, int v6, __u32 at, __be16 old, __be16 new) {
    if (old == new)
        return;
    csum_fix(skb, v6, old, new, 2, 0);
    bpf_skb_store_bytes(skb, at, &new, 2, 0);
}

/* A datagram that arrived as `in` leaves as `out` (the same family). The
 * helpers may move the packet: no pointer into it is valid afterwards. */
static __always_inline void rewrite_flow(struct __sk_buff *skb, int v6, const struct offload_flow *in,
                                         const struct offload_flow *out) {
    __u32 saddr_at = v6 ? IP_AT + __builtin_offsetof(struct ipv6hdr, saddr) : IP_AT + __builtin_offsetof(struct iphdr, saddr);
    __u32 daddr_at = v6 ? IP_AT + __builtin_offsetof(struct ipv6hdr, daddr) : IP_AT + __builtin_offsetof(struct iphdr, daddr);
    rewrite_addr(skb, v6, saddr_at, in->saddr, out->saddr);
    rewrite_addr(skb, v6, daddr_at, in->daddr, out->daddr);
    rewrite_port(skb, v6, UDP_AT(v6) + __builtin_offsetof(struct udphdr, source), in->sport, out->sport);
    rewrite_port(skb, v6, UDP_AT(v6) + __builtin_offsetof(struct udphdr, dest), in->dport, out->dport);
}

/* `flow`'s addresses and ports from an IPv4 header and its UDP header, the
 * addresses mapped into IPv6's. */
static __always_inline void flow_v4(struct offload_flow *flow, const struct iphdr *ip, const struct udphdr *udp) {
    __builtin_memset(flow, 0, sizeof(*flow));
    flow->saddr[10] = flow->saddr[11] = 0xff;
    flow->daddr[10] = flow->daddr[11] = 0xff;
    __builtin_memcpy(flow->saddr + 12, &ip->saddr, 4);
    __builtin_memcpy(flow->daddr + 12, &ip->daddr, 4);
    flow->sport = udp->source;
    flow->dport = udp->dest;
}

#endif

/* Rewriting an IPv4 UDP datagram's addresses and ports in a tc program,
 * checksums kept right: what relay_offload.bpf.c does to each datagram it
 * forwards, and the relay bench's kernel floor (benches/relay/relaytc.bpf.c)
 * too. For BPF programs only; the flow struct is relay_offload.h's. */
#ifndef UDP_REWRITE_H
#define UDP_REWRITE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>

#include "relay_offload.h"

/* Offsets in a frame with an Ethernet header and an IPv4 header without
 * options (what the programs take). */
#define IP_AT ETH_HLEN
#define UDP_AT (ETH_HLEN + sizeof(struct iphdr))
#define IP_CHECK (IP_AT + __builtin_offsetof(struct iphdr, check))
#define UDP_CHECK (UDP_AT + __builtin_offsetof(struct udphdr, check))

/* Replaces the `size` bytes at `at` (an IP header field when `in_ip`, so
 * also part of the UDP checksum's pseudo-header), keeping both checksums
 * right. */
static __always_inline void rewrite(struct __sk_buff *skb, __u32 at, __u32 old, __u32 new, __u32 size, int in_ip) {
    if (old == new)
        return;
    /* A zero UDP checksum (none) stays zero. */
    bpf_l4_csum_replace(skb, UDP_CHECK, old, new, (in_ip ? BPF_F_PSEUDO_HDR : 0) | BPF_F_MARK_MANGLED_0 | size);
    if (in_ip)
        bpf_l3_csum_replace(skb, IP_CHECK, old, new, size);
    bpf_skb_store_bytes(skb, at, &new, size, 0);
}

/* A datagram that arrived as `in` leaves as `out`. The helpers may move the
 * packet: no pointer into it is valid afterwards. */
static __always_inline void rewrite_flow(struct __sk_buff *skb, const struct offload_flow *in,
                                         const struct offload_flow *out) {
    rewrite(skb, IP_AT + __builtin_offsetof(struct iphdr, saddr), in->saddr, out->saddr, 4, 1);
    rewrite(skb, IP_AT + __builtin_offsetof(struct iphdr, daddr), in->daddr, out->daddr, 4, 1);
    rewrite(skb, UDP_AT + __builtin_offsetof(struct udphdr, source), in->sport, out->sport, 2, 0);
    rewrite(skb, UDP_AT + __builtin_offsetof(struct udphdr, dest), in->dport, out->dport, 2, 0);
}

#endif

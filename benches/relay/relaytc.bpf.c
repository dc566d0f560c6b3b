/* The kernel-forwarding relay of the relay bench (relaytc.c loads it): a tc
 * program on the ingress of `lo` that forwards each datagram of a known
 * flow without any socket. A flow is the datagram's source address and port
 * (the endpoint, as a relay has latched it) and destination address and
 * port (the relay's own side of the call); its route gives the addresses
 * and ports it leaves with (the relay's other side, the other endpoint) and
 * the interface, to whose egress it is redirected. Anything else passes up
 * the stack untouched. On `lo` the Ethernet header is all zeros, so no MAC
 * needs rewriting; a relay on a real interface would also fill them in
 * (bpf_fib_lookup), which this floor leaves out. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* All in network byte order; relaytc.c has the same layouts. */
struct flow {
    __be32 saddr, daddr;
    __be16 sport, dport;
};

struct route {
    struct flow out;
    __u32 ifindex;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, struct flow);
    __type(value, struct route);
} routes SEC(".maps");

/* Datagrams forwarded, per CPU: no atomic shared by the cores. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} forwarded SEC(".maps");

#define IP_AT ETH_HLEN
#define UDP_AT (ETH_HLEN + sizeof(struct iphdr))
#define IP_CHECK (IP_AT + __builtin_offsetof(struct iphdr, check))
#define UDP_CHECK (UDP_AT + __builtin_offsetof(struct udphdr, check))

/* Replaces the `size` bytes at `at` (an IP header field when `in_ip`, so
 * also part of the UDP checksum's pseudo-header), keeping the IP and UDP
 * checksums right. */
static __always_inline void rewrite(struct __sk_buff *skb, __u32 at, __u32 old, __u32 new, __u32 size, int in_ip) {
    if (old == new)
        return;
    /* The UDP checksum covers the addresses through its pseudo-header; a
     * zero checksum (none) stays zero. */
    bpf_l4_csum_replace(skb, UDP_CHECK, old, new, (in_ip ? BPF_F_PSEUDO_HDR : 0) | BPF_F_MARK_MANGLED_0 | size);
    if (in_ip)
        bpf_l3_csum_replace(skb, IP_CHECK, old, new, size);
    bpf_skb_store_bytes(skb, at, &new, size, 0);
}

SEC("tc")
int relay(struct __sk_buff *skb) {
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = (void *)(eth + 1);
    struct udphdr *udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
        ip->protocol != IPPROTO_UDP)
        return TC_ACT_OK;
    struct flow in = {ip->saddr, ip->daddr, udp->source, udp->dest};
    struct route *route = bpf_map_lookup_elem(&routes, &in);
    if (!route)
        return TC_ACT_OK;
    /* A copy: the helpers below may move the packet, and the map entry may
     * be replaced meanwhile. */
    struct route r = *route;
    rewrite(skb, IP_AT + __builtin_offsetof(struct iphdr, saddr), in.saddr, r.out.saddr, 4, 1);
    rewrite(skb, IP_AT + __builtin_offsetof(struct iphdr, daddr), in.daddr, r.out.daddr, 4, 1);
    rewrite(skb, UDP_AT + __builtin_offsetof(struct udphdr, source), in.sport, r.out.sport, 2, 0);
    rewrite(skb, UDP_AT + __builtin_offsetof(struct udphdr, dest), in.dport, r.out.dport, 2, 0);
    __u32 zero = 0;
    __u64 *count = bpf_map_lookup_elem(&forwarded, &zero);
    if (count)
        (*count)++;
    return bpf_redirect(r.ifindex, 0);
}

/* GPL-compatible for the kernel (the helpers used are not GPL-only). */
char LICENSE[] SEC("license") = "Dual MPL/GPL";

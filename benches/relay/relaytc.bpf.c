/* The kernel-forwarding relay of the relay bench (relaytc.c loads it): a tc
 * program on the ingress of `lo` that forwards each datagram of a known
 * flow without any socket. A flow is the datagram's source address and port
 * (the endpoint, as a relay has latched it) and destination address and
 * port (the relay's own side of the call); its route gives the addresses
 * and ports it leaves with (the relay's other side, the other endpoint) and
 * the interface, to whose egress it is redirected; on the way each is
 * counted as the relay's channel would count it (relaytc.h). Anything else
 * passes up the stack untouched. On `lo` the Ethernet header is all zeros, so no MAC
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

#include "relaytc.h"
#include "udp_rewrite.h"

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, struct offload_flow);
    __type(value, struct route);
} routes SEC(".maps");

/* Sequence numbers further ahead than this are a jump, not loss (A.1's
 * MAX_DROPOUT); those behind by up to 100 are late or duplicated. */
#define MAX_DROPOUT 3000
#define MAX_MISORDER 100

/* Counts one forwarded datagram whose RTP header starts at `rtp`. */
static __always_inline void count(struct route *route, const __u8 *rtp, const void *end, __u32 octets) {
    struct rtp_counts *c = &route->counts;
    if ((const void *)(rtp + 12) > end || rtp[0] >> 6 != 2) {
        bpf_spin_lock(&c->lock);
        c->not_rtp++;
        bpf_spin_unlock(&c->lock);
        return;
    }
    __u16 seq = (__u16)rtp[2] << 8 | rtp[3];
    __u32 ts = (__u32)rtp[4] << 24 | (__u32)rtp[5] << 16 | (__u32)rtp[6] << 8 | rtp[7];
    __u64 now = bpf_ktime_get_ns();
    bpf_spin_lock(&c->lock);
    /* Arrival in timestamp units, against the RTP timestamp: their
     * difference moves by the network's jitter. */
    __s64 transit = (__s64)(now / 1000 * c->clock_rate / 1000000) - (__s64)ts;
    if (c->packets == 0) {
        c->base_seq = c->max_seq = seq;
    } else {
        __u16 delta = seq - (__u16)c->max_seq;
        if (delta < MAX_DROPOUT)
            c->max_seq += delta; /* in order, maybe past a gap; wraps into the cycles */
        else if (delta <= (__u16)(65536 - MAX_MISORDER)) {
            /* A jump: what was expected so far is kept, and the count starts
             * afresh from here, as at a restart. */
            c->expected_before += c->max_seq - c->base_seq + 1;
            c->base_seq = c->max_seq = seq;
        }
        __s64 d = transit - c->transit;
        if (d < 0)
            d = -d;
        c->jitter += (__u32)d - ((c->jitter + 8) >> 4);
    }
    c->transit = transit;
    c->packets++;
    c->octets += octets;
    bpf_spin_unlock(&c->lock);
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
    struct offload_flow in;
    flow_v4(&in, ip, udp);
    struct route *route = bpf_map_lookup_elem(&routes, &in);
    if (!route)
        return TC_ACT_OK;
    count(route, (const __u8 *)(udp + 1), end, skb->len - UDP_AT(0) - sizeof(struct udphdr));
    /* A copy of where it goes: the helpers below may move the packet. */
    struct offload_flow out = route->out;
    __u32 ifindex = route->ifindex;
    rewrite_flow(skb, 0, &in, &out);
    return bpf_redirect(ifindex, 0);
}

/* GPL-compatible for the kernel (the helpers used are not GPL-only). */
char LICENSE[] SEC("license") = "Dual MPL/GPL";

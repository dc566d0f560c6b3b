/* `rtpmuxserver`'s relay offload (src/offload.rs loads it; the element's
 * `relay-offload`): a tc program on each interface's ingress that forwards
 * the RTP a channel relays without any socket, and one on egress that
 * learns the way to a channel's peer from what the channel's socket sends
 * it. The key is how a datagram arrives (the endpoint's address and port,
 * the relay channel's own); the route says how it leaves (the `relay-to`
 * channel's address and port, its endpoint), and through which interface
 * and MACs: those the other direction's frames came with, or the `relay-to`
 * channel's own sent, learnt here.
 *
 * Only the plain case is taken: IPv4 without options or fragments, or IPv6
 * without extension headers (addresses kept as IPv6 ones, IPv4 ones
 * mapped), and RTP of the session's remote source, in sequence or late
 * (A.1). Anything else
 * (RTCP, another SSRC, a jump, a malformed packet, a route whose other
 * direction has sent nothing yet, or whose interface is gone or has too
 * small an MTU for the packet) goes on up the stack to the channel's
 * socket, where the worker handles it as it handles every packet without
 * offload. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "relay_offload.h"
#include "udp_rewrite.h"

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, OFFLOAD_ROUTES);
    __type(key, struct offload_flow);
    __type(value, struct offload_route);
} routes SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, OFFLOAD_ROUTES);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, __u32);
    __type(value, struct offload_counts);
} counts SEC(".maps");

/* The attached interfaces that are down (or without carrier), by index:
 * a frame redirected there would be dropped unseen; the worker's socket
 * gets an error, or another way (the worker keeps it). */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, __u8);
} down SEC(".maps");

/* One bit per UDP port: set while a route's channel is on it (the worker
 * keeps it). Most datagrams are no relay's: an array word tells, where the
 * route lookups would each hash 36 bytes and miss, twice. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 65536 / 64);
    __type(key, __u32);
    __type(value, __u64);
} local_ports SEC(".maps");

static __always_inline int routed_port(__be16 port) {
    __u32 p = bpf_ntohs(port), word = p / 64;
    __u64 *bits = bpf_map_lookup_elem(&local_ports, &word);
    return bits && (*bits >> (p % 64)) & 1;
}

/* RFC 3550 A.1, as the session applies it (session.rs). */
#define MAX_DROPOUT 3000
#define MAX_MISORDER 100

#define RTP_AT(v6) (UDP_AT(v6) + sizeof(struct udphdr))
/* TCX_NEXT: not ours, the next program on the interface (or the stack)
 * decides. */
#define NOT_OURS TC_ACT_UNSPEC

/* The route of datagrams arriving as `in`: the channel's own address's,
 * else that of a channel bound to any address. */
static __always_inline struct offload_route *route_of(const struct offload_flow *in) {
    if (!routed_port(in->dport))
        return 0;
    struct offload_route *route = bpf_map_lookup_elem(&routes, in);
    if (route)
        return route;
    struct offload_flow any = *in;
    __builtin_memset(any.daddr, 0, sizeof(any.daddr));
    return bpf_map_lookup_elem(&routes, &any);
}

/* The RTP payload's length in a datagram of `len` bytes whose first byte
 * is `b0`, as rtp.rs's parser finds it; -1 when that parser would refuse
 * the packet. */
static __always_inline long payload_len(struct __sk_buff *skb, int v6, __u8 b0, __u32 len) {
    __u32 start = 12 + 4 * (b0 & 0x0f);
    if (start > len)
        return -1;
    if (b0 & 0x10) {
        __u8 ext[4];
        if (start + 4 > len || bpf_skb_load_bytes(skb, RTP_AT(v6) + start, ext, 4))
            return -1;
        start += 4 + 4 * ((__u32)ext[2] << 8 | ext[3]);
        if (start > len)
            return -1;
    }
    __u32 pad = 0;
    if (b0 & 0x20) {
        __u8 last;
        if (bpf_skb_load_bytes(skb, RTP_AT(v6) + len - 1, &last, 1))
            return -1;
        pad = last;
        if (pad == 0 || pad > len - start)
            return -1;
    }
    return len - start - pad;
}

/* The datagram of `skb` that arrived as `in` (IPv6 when `v6`, whose
 * headers were checked): forwarded when a route takes it. */
static __always_inline int relay(struct __sk_buff *skb, struct offload_flow *in, int v6) {
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    struct udphdr *udp = data + UDP_AT(v6);
    __u8 *rtp = data + RTP_AT(v6);
    if ((void *)(rtp + 12) > end)
        return NOT_OURS;
    struct offload_route *route = route_of(in);
    if (!route)
        return NOT_OURS;
    __u32 len = bpf_ntohs(udp->len);
    /* RTCP (RFC 5761's rule, as rtp::is_rtcp) and what is not RTP: the
     * worker's. */
    if (len < 8 + 12 || RTP_AT(v6) + (len - 8) > skb->len || rtp[0] >> 6 != 2 ||
        (rtp[1] >= 192 && rtp[1] <= 223))
        return NOT_OURS;
    len -= 8;
    __u32 ssrc = (__u32)rtp[8] << 24 | (__u32)rtp[9] << 16 | (__u32)rtp[10] << 8 | rtp[11];
    __u16 seq = (__u16)rtp[2] << 8 | rtp[3];
    __u32 ts = (__u32)rtp[4] << 24 | (__u32)rtp[5] << 16 | (__u32)rtp[6] << 8 | rtp[7];
    __u8 b0 = rtp[0];
    long payload = payload_len(skb, v6, b0, len);
    if (payload < 0)
        return NOT_OURS;

    /* Where it leaves: through the interface the other endpoint's frames
     * came in on, to the MAC they came from (or those its channel's
     * socket sent it went by). */
    struct offload_flow out = route->out;
    struct offload_flow reverse = route->reverse;
    struct offload_route *back = bpf_map_lookup_elem(&routes, &reverse);
    if (!back)
        return NOT_OURS;
    struct offload_link link;
    bpf_spin_lock(&back->lock);
    link = back->link;
    bpf_spin_unlock(&back->lock);
    /* Only through an interface that is still there, up, and whose MTU
     * takes the frame: one removed since the frames were learnt (its
     * addresses may be on a new one already), one down, or a narrower one
     * is the stack's to route, to fragment, or to refuse with an error the
     * worker counts. */
    __u32 mtu = 0;
    int fits = link.ifindex != 0 && !bpf_map_lookup_elem(&down, &link.ifindex) &&
               bpf_check_mtu(skb, link.ifindex, &mtu, 0, 0) == 0;

    __u64 now_ns = bpf_ktime_get_ns();
    __u64 now_us = now_ns / 1000;
    int forward = 0;
    __u32 slot;
    bpf_spin_lock(&route->lock);
    slot = route->slot;
    /* This direction's frames, for the other one to answer with. */
    route->link.ifindex = skb->ingress_ifindex;
    __builtin_memcpy(route->link.local_addr, in->daddr, 16);
    __builtin_memcpy(route->link.peer_mac, eth->h_source, 6);
    __builtin_memcpy(route->link.local_mac, eth->h_dest, 6);
    __u16 udelta = seq - (__u16)route->highest;
    if (fits && !(route->flags & OFFLOAD_LINK_ONLY) && ssrc == route->ssrc &&
        (udelta < MAX_DROPOUT || udelta > (__u16)(65536 - MAX_MISORDER))) {
        forward = 1;
        if (udelta < MAX_DROPOUT)
            route->highest += udelta;
        if (route->clock_rate) {
            /* Arrival in timestamp units, modulo 2^32 as the timestamps. */
            __u32 transit = (__u32)(now_us * route->clock_rate / 1000000) - ts;
            if (route->has_transit) {
                __s32 d = (__s32)(transit - route->transit);
                __u32 ad = d < 0 ? -d : d;
                route->jitter16 = route->jitter16 + ad - ((route->jitter16 + 8) >> 4);
                if (route->jitter16 > route->max_jitter16)
                    route->max_jitter16 = route->jitter16;
            }
            route->transit = transit;
            route->has_transit = 1;
        }
    }
    bpf_spin_unlock(&route->lock);
    if (!forward)
        return NOT_OURS;
    /* Counted before it goes: a slot outlives the route that named it. */
    struct offload_counts *c = bpf_map_lookup_elem(&counts, &slot);
    if (!c)
        return NOT_OURS;
    __sync_fetch_and_add(&c->packets, 1);
    __sync_fetch_and_add(&c->octets, len);
    __sync_fetch_and_add(&c->payload_octets, payload);
    c->last_ns = now_ns;

    /* The helpers below may move the packet: no pointer into it is used
     * after the first. */
    __u8 macs[12];
    __builtin_memcpy(macs, link.peer_mac, 6);
    __builtin_memcpy(macs + 6, link.local_mac, 6);
    bpf_skb_store_bytes(skb, 0, macs, 12, 0);
    /* Sent from the address the other endpoint sends to, when the
     * channel is bound to any. */
    __u64 halves[2];
    __builtin_memcpy(halves, out.saddr, 16);
    if ((halves[0] | halves[1]) == 0)
        __builtin_memcpy(out.saddr, link.local_addr, 16);
    rewrite_flow(skb, v6, in, &out);
    return bpf_redirect(link.ifindex, 0);
}

/* The addresses and ports of the UDP datagram in `skb` into `f`: 0 for
 * IPv4 (no options, not a fragment), 1 for IPv6 (no extension headers),
 * -1 for anything else. */
static __always_inline int flow_of(struct __sk_buff *skb, struct offload_flow *f) {
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        return -1;
    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        struct udphdr *udp = (void *)(ip + 1);
        if ((void *)(udp + 1) > end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
            (ip->frag_off & bpf_htons(0x3fff)))
            return -1;
        flow_v4(f, ip, udp);
        return 0;
    }
    if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        struct udphdr *udp = (void *)(ip6 + 1);
        /* UDP right after the header: no extension headers. */
        if ((void *)(udp + 1) > end || ip6->nexthdr != IPPROTO_UDP)
            return -1;
        __builtin_memcpy(f->saddr, &ip6->saddr, 16);
        __builtin_memcpy(f->daddr, &ip6->daddr, 16);
        f->sport = udp->source;
        f->dport = udp->dest;
        return 1;
    }
    return -1;
}

SEC("tc")
int relay_offload(struct __sk_buff *skb) {
    struct offload_flow in;
    int v6 = flow_of(skb, &in);
    if (v6 < 0)
        return NOT_OURS;
    return relay(skb, &in, v6);
}

/* On egress: a datagram a socket of this host sends (not one forwarded,
 * by this program or the stack) to the endpoint of a route's channel,
 * from the channel's address and port, shows the way to that endpoint as
 * well as the endpoint's own frames would: learnt as theirs. So a
 * channel whose endpoint never sends (a one-way relay's far end) gets the
 * link its relay forwards with, from the packets the worker relayed to
 * it before the route went in. Passes everything on unchanged. */
SEC("tc")
int relay_offload_learn(struct __sk_buff *skb) {
    struct offload_flow out;
    if (skb->ingress_ifindex != 0 || flow_of(skb, &out) < 0)
        return NOT_OURS;
    struct offload_flow in;
    __builtin_memcpy(in.saddr, out.daddr, 16);
    __builtin_memcpy(in.daddr, out.saddr, 16);
    in.sport = out.dport;
    in.dport = out.sport;
    struct offload_route *route = route_of(&in);
    if (!route)
        return NOT_OURS;
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        return NOT_OURS;
    bpf_spin_lock(&route->lock);
    route->link.ifindex = skb->ifindex;
    __builtin_memcpy(route->link.local_addr, out.saddr, 16);
    __builtin_memcpy(route->link.peer_mac, eth->h_dest, 6);
    __builtin_memcpy(route->link.local_mac, eth->h_source, 6);
    bpf_spin_unlock(&route->lock);
    return NOT_OURS;
}

/* GPL-compatible for the kernel, which bpf_check_mtu asks for. */
char LICENSE[] SEC("license") = "Dual MPL/GPL";

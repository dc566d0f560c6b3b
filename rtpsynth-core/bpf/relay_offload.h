/* The routes map of relay_offload.bpf.c, shared with src/offload.rs (which
 * mirrors these structs, #[repr(C)], and checks their sizes). Addresses and
 * ports in network byte order, everything else in the host's. */
#ifndef RELAY_OFFLOAD_H
#define RELAY_OFFLOAD_H

#include <linux/bpf.h>
#include <linux/types.h>

/* A datagram's addresses and UDP ports: how it arrives (the map's key; a
 * zero destination address for a channel bound to any address) or how it
 * leaves. IPv6 addresses, IPv4 ones mapped (::ffff:a.b.c.d). */
struct offload_flow {
    __u8 saddr[16], daddr[16];
    __be16 sport, dport;
};

/* Where the frames of one direction came from, learnt from them: the
 * interface, the sender's (or its router's) MAC and ours; or from the
 * frames the channel's own socket sent that way, which carry the same
 * (the interface they leave by, MACs the other way round). The route the
 * other way sends with these, so a reply leaves as the kernel would have
 * sent it to that endpoint, with no neighbour lookup. */
struct offload_link {
    __u32 ifindex;         /* 0 until a frame was seen */
    __u8 local_addr[16];   /* the address they were sent to */
    __u8 peer_mac[6];
    __u8 local_mac[6];
};

/* What the kernel forwarded on a channel's routes, in the `counts` array
 * at the route's slot: added to atomically and never reset while the
 * channel keeps the slot, so a route taken out and seeded anew (or moved
 * to another key) loses nothing that a program still holding the old one
 * adds. The worker folds the growth; user space maps the array. */
struct offload_counts {
    __u64 packets;          /* forwarded (and counted) */
    __u64 octets;           /* their UDP payload bytes */
    __u64 payload_octets;   /* their RTP payload bytes */
    __u64 last_ns;          /* when the last was forwarded (CLOCK_MONOTONIC) */
};

/* One direction of a relay: what a channel receives from its latched (or
 * configured) source, forwarded by the `relay-to` channel. The worker
 * seeds the session's state from the channel's session, and folds it back
 * into it; the kernel keeps it as the session would (RFC 3550 A.1 and
 * A.8). */
struct offload_route {
    struct bpf_spin_lock lock;
    __u32 ssrc;             /* the session's remote source: others go to the socket */
    struct offload_flow out; /* the relay's other side, to the other endpoint; a
                              * zero source address (a channel bound to any
                              * address) is the one the other endpoint sends to */
    __u32 clock_rate;       /* 0: no jitter */
    struct offload_flow reverse; /* the other direction's key, whose link is used */
    struct offload_link link;    /* learnt from this direction's frames */
    __u32 jitter16;         /* A.8's J × 16 */
    __u32 max_jitter16;
    __u32 transit;          /* the last packet's arrival − timestamp */
    __u32 has_transit;
    __u32 flags;            /* OFFLOAD_LINK_ONLY */
    __u64 highest;          /* extended highest sequence number */
    __u32 slot;             /* the channel's offload_counts */
    __u32 reserved;
};

/* A route that forwards nothing: it holds the link of a channel that
 * another one relays to but that relays nothing itself (a one-way relay's
 * far end, a recorder's), learnt from its frames either way. */
#define OFFLOAD_LINK_ONLY 1

/* Routes, and count slots: one per channel with a route. */
#define OFFLOAD_ROUTES 65536

#define OFFLOAD_ROUTE_SIZE 152
_Static_assert(sizeof(struct offload_route) == OFFLOAD_ROUTE_SIZE, "offload.rs mirrors this size");
_Static_assert(sizeof(struct offload_flow) == 36, "offload.rs mirrors this size");
_Static_assert(__builtin_offsetof(struct offload_route, highest) == 136, "offload.rs mirrors this offset");
_Static_assert(sizeof(struct offload_counts) == 32, "offload.rs mirrors this size");

#endif

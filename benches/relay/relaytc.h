/* The routes map of relaytc.bpf.c, shared with relaytc.c which fills it and
 * reads the counts. All addresses and ports in network byte order. */
#ifndef RELAYTC_H
#define RELAYTC_H

#include <linux/bpf.h>
#include <linux/types.h>

/* struct offload_flow: the element's relay offload keys its routes the
 * same way (rtpsynth-core/bpf, which the bench adds to the include path). */
#include "relay_offload.h"

/* What the relay's channel would count for each datagram it forwards:
 * RFC 3550 A.1's extended highest sequence number (for the loss), A.8's
 * interarrival jitter, packets and octets. One route's datagrams come from
 * one sender but may be handled on any core: a lock per route. */
struct rtp_counts {
    struct bpf_spin_lock lock;
    __u32 clock_rate;      /* set by relaytc.c */
    __u32 base_seq;        /* the first sequence number since a jump, extended */
    __u32 max_seq;         /* the highest, extended (cycles in the top 16 bits) */
    __u32 jitter;          /* A.8's J in timestamp units, times 16 */
    __s64 transit;         /* the last arrival minus RTP timestamp, timestamp units */
    __u64 expected_before; /* packets expected before the last jump */
    __u64 packets, octets; /* octets: the RTP packets' whole length */
    __u64 not_rtp;         /* forwarded without counting: too short or not version 2 */
};

struct route {
    struct offload_flow out; /* the addresses and ports it leaves with */
    __u32 ifindex;   /* to whose egress */
    struct rtp_counts counts;
};

#endif

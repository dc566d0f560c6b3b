/* Two rows of the relay bench that leave user space out of the path.
 *
 *   relaytc direct          no relay: A_i and B_i send to each other. The
 *                           baseline: what the endpoints' own sends and
 *                           receives cost.
 *   relaytc tc OBJECT       a relay in the kernel: OBJECT (relaytc.bpf.c,
 *                           built by the bench with clang) attached to the
 *                           ingress of `lo`, one route per direction of each
 *                           call, so a datagram to the relay leaves it for
 *                           the other endpoint without reaching a socket.
 *                           This process only sets it up and waits: the
 *                           forwarding runs in the softirq of whoever sent
 *                           the datagram (here the loadgen), so only the
 *                           traffic's CPU (bench_relay.py: the loadgen's
 *                           and ksoftirqd's) shows its cost.
 *
 * The driver protocol is the other relays' (relay_driver.h): stdin gives N
 * lines "portA portB" and an empty line; it prints "pid PID" and N lines
 * "relayA relayB", waits for stdin to close and prints its totals. When
 * the program cannot be loaded or attached (no privileges, a kernel older
 * than 6.6 without tcx links): "not available: ..." and exit status 3.
 *
 * The program is attached through a tcx link (BPF_LINK_CREATE), which the
 * kernel removes when this process ends however it ends: a bench killed
 * mid-row leaves no route behind on `lo`. */
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <net/if.h>
#include <string.h>
#include <unistd.h>

#include "relay_driver.h"
#include "relaytc.h"

/* BPF_TCX_INGRESS (Linux 6.6), which Debian 12's headers predate. */
#define TCX_INGRESS 46
#define NOT_AVAILABLE 3
/* The loadgen's PCMU. */
#define CLOCK_RATE 8000

/* A datagram between two ports of 127.0.0.1, as the program keys it
 * (relay_offload.h: IPv4 addresses mapped into IPv6's). */
static struct offload_flow loopback_flow(uint16_t sport, uint16_t dport) {
    struct offload_flow f = {.sport = htons(sport), .dport = htons(dport)};
    uint32_t loopback = htonl(INADDR_LOOPBACK);
    f.saddr[10] = f.saddr[11] = f.daddr[10] = f.daddr[11] = 0xff;
    memcpy(f.saddr + 12, &loopback, 4);
    memcpy(f.daddr + 12, &loopback, 4);
    return f;
}

static int not_available(const char *what) {
    printf("not available: %s: %s\n", what, strerror(errno));
    return NOT_AVAILABLE;
}

static void wait_for_stdin_to_close(void) {
    while (fgetc(stdin) != EOF) {
    }
}

/* Datagrams that reached `fd` (no route matched them), read without
 * waiting. */
static unsigned long long drain_count(int fd) {
    char buf[2048];
    unsigned long long n = 0;
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) >= 0) n++;
    return n;
}

int main(int argc, char **argv) {
    int kernel = argc == 3 && strcmp(argv[1], "tc") == 0;
    if (!kernel && !(argc == 2 && strcmp(argv[1], "direct") == 0)) {
        fprintf(stderr, "usage: relaytc direct | relaytc tc OBJECT\n");
        return 2;
    }
    uint16_t *a, *b;
    unsigned n = read_endpoints(&a, &b);
    if (!kernel) {
        printf("pid %d\n", getpid());
        for (unsigned i = 0; i < n; i++) printf("%u %u\n", b[i], a[i]);
        fflush(stdout);
        wait_for_stdin_to_close();
        printf("direct calls=%u\n", n);
        return 0;
    }

    libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
    struct bpf_object *obj = bpf_object__open_file(argv[2], NULL);
    if (!obj) return not_available("opening the BPF object");
    if (bpf_object__load(obj)) return not_available("loading the BPF program (root or CAP_BPF needed)");
    struct bpf_program *prog = bpf_object__find_program_by_name(obj, "relay");
    int routes = bpf_object__find_map_fd_by_name(obj, "routes");
    if (!prog || routes < 0) {
        errno = ENOENT;
        return not_available("the BPF object lacks relay or routes");
    }
    int lo = (int)if_nametoindex("lo");
    if (!lo) return not_available("lo");
    if (bpf_link_create(bpf_program__fd(prog), lo, TCX_INGRESS, NULL) < 0)
        return not_available("attaching to lo's ingress (tcx, Linux 6.6 or later)");

    /* The relay's two ports: held by sockets, so nothing else takes them;
     * what no route matches ends up there and is counted. */
    uint16_t relay_a, relay_b;
    int sa = bound_socket(&relay_a, 0, 0), sb = bound_socket(&relay_b, 0, 0);
    for (unsigned i = 0; i < n; i++) {
        /* A_i -> relay A  becomes  relay B -> B_i, and back. */
        struct offload_flow from_a = loopback_flow(a[i], relay_a);
        struct route to_b = {loopback_flow(relay_b, b[i]), (uint32_t)lo, {.clock_rate = CLOCK_RATE}};
        struct offload_flow from_b = loopback_flow(b[i], relay_b);
        struct route to_a = {loopback_flow(relay_a, a[i]), (uint32_t)lo, {.clock_rate = CLOCK_RATE}};
        if (bpf_map_update_elem(routes, &from_a, &to_b, BPF_ANY) ||
            bpf_map_update_elem(routes, &from_b, &to_a, BPF_ANY))
            die("adding a route");
    }
    printf("pid %d\n", getpid());
    for (unsigned i = 0; i < n; i++) printf("%u %u\n", relay_a, relay_b);
    fflush(stdout);
    wait_for_stdin_to_close();

    /* Every route's counts, read under its lock: the totals the relay's
     * channels would give, and the worst jitter. */
    unsigned long long routes_read = 0, packets = 0, octets = 0, lost = 0, not_rtp = 0;
    double jitter_ms = 0;
    struct offload_flow key, next;
    struct offload_flow *at = NULL;
    while (bpf_map_get_next_key(routes, at, &next) == 0) {
        struct route r;
        if (bpf_map_lookup_elem_flags(routes, &next, &r, BPF_F_LOCK)) die("reading a route");
        const struct rtp_counts *c = &r.counts;
        if (c->packets) {
            unsigned long long expected = c->expected_before + c->max_seq - c->base_seq + 1;
            lost += expected > c->packets ? expected - c->packets : 0;
        }
        packets += c->packets;
        octets += c->octets;
        not_rtp += c->not_rtp;
        double j = c->jitter / 16.0 / c->clock_rate * 1000;
        if (j > jitter_ms) jitter_ms = j;
        routes_read++;
        key = next;
        at = &key;
    }
    /* Forwarded: counted as RTP, or not RTP and forwarded all the same. */
    printf("kernel routes=%llu forwarded=%llu octets=%llu lost=%llu max_jitter_ms=%.3f not_rtp=%llu unknown=%llu\n",
           routes_read, packets + not_rtp, octets, lost, jitter_ms, not_rtp, drain_count(sa) + drain_count(sb));
    return 0;
}

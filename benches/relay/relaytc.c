/* Two rows of the relay bench that leave user space out of the path.
 *
 *   relaytc direct          no relay: A_i and B_i send to each other. The
 *                           baseline: what the machine spends on the
 *                           endpoints' own sends and receives.
 *   relaytc tc OBJECT       a relay in the kernel: OBJECT (relaytc.bpf.c,
 *                           built by the bench with clang) attached to the
 *                           ingress of `lo`, one route per direction of each
 *                           call, so a datagram to the relay leaves it for
 *                           the other endpoint without reaching a socket.
 *                           This process only sets it up and waits: the
 *                           forwarding runs in the softirq of whoever sent
 *                           the datagram (here the loadgen), so only the
 *                           machine's CPU shows its cost.
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

/* BPF_TCX_INGRESS (Linux 6.6), which Debian 12's headers predate. */
#define TCX_INGRESS 46
#define NOT_AVAILABLE 3

/* relaytc.bpf.c's key and value, in network byte order. */
struct flow {
    uint32_t saddr, daddr;
    uint16_t sport, dport;
};

struct route {
    struct flow out;
    uint32_t ifindex;
};

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
    int counts = bpf_object__find_map_fd_by_name(obj, "forwarded");
    if (!prog || routes < 0 || counts < 0) {
        errno = ENOENT;
        return not_available("the BPF object lacks relay, routes or forwarded");
    }
    int lo = (int)if_nametoindex("lo");
    if (!lo) return not_available("lo");
    if (bpf_link_create(bpf_program__fd(prog), lo, TCX_INGRESS, NULL) < 0)
        return not_available("attaching to lo's ingress (tcx, Linux 6.6 or later)");

    /* The relay's two ports: held by sockets, so nothing else takes them;
     * what no route matches ends up there and is counted. */
    uint16_t relay_a, relay_b;
    int sa = bound_socket(&relay_a, 0, 0), sb = bound_socket(&relay_b, 0, 0);
    uint32_t loopback = htonl(INADDR_LOOPBACK);
    for (unsigned i = 0; i < n; i++) {
        /* A_i -> relay A  becomes  relay B -> B_i, and back. */
        struct flow from_a = {loopback, loopback, htons(a[i]), htons(relay_a)};
        struct route to_b = {{loopback, loopback, htons(relay_b), htons(b[i])}, (uint32_t)lo};
        struct flow from_b = {loopback, loopback, htons(b[i]), htons(relay_b)};
        struct route to_a = {{loopback, loopback, htons(relay_a), htons(a[i])}, (uint32_t)lo};
        if (bpf_map_update_elem(routes, &from_a, &to_b, BPF_ANY) ||
            bpf_map_update_elem(routes, &from_b, &to_a, BPF_ANY))
            die("adding a route");
    }
    printf("pid %d\n", getpid());
    for (unsigned i = 0; i < n; i++) printf("%u %u\n", relay_a, relay_b);
    fflush(stdout);
    wait_for_stdin_to_close();

    int cpus = libbpf_num_possible_cpus();
    if (cpus < 1) die("possible CPUs");
    uint64_t *per_cpu = calloc((size_t)cpus, sizeof *per_cpu), forwarded = 0;
    uint32_t zero = 0;
    if (!per_cpu || bpf_map_lookup_elem(counts, &zero, per_cpu)) die("reading the count");
    for (int c = 0; c < cpus; c++) forwarded += per_cpu[c];
    printf("kernel forwarded=%llu unknown=%llu\n", (unsigned long long)forwarded,
           drain_count(sa) + drain_count(sb));
    return 0;
}

/* The floor under a shared-port relay: what the kernel takes to receive
 * and forward the relay bench's traffic, with nothing else done to it.
 *
 * Two UDP sockets on 127.0.0.1, one for every call's A side and one for
 * every B side (as rtpmuxserver channels with shared-socket). A datagram's
 * SSRC names its call (the loadgen sends 0x10000 + 2i from A_i and + 1 from
 * B_i); it goes out of the other socket to the other endpoint, whose port
 * the driver protocol gives up front (as a relay learns it from SDP).
 * Reads are recvmmsg of up to 64, forwards one sendmmsg per read, each
 * message to its own endpoint. With a tick (ms), the sockets are drained
 * once per tick; with 0, on readiness (epoll).
 *
 * The bench's driver protocol (see mux_relay.py): stdin gives N lines
 * "portA portB" (the endpoints) and an empty line; it prints "pid PID",
 * then N lines "relayA relayB" (where each side sends), relays until stdin
 * closes, and prints "floor forwarded=... unknown=...".
 *
 * Usage: relayfloor TICK_MS
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "relay_driver.h"

#define BATCH 64
#define SLOT 2048
#define BASE_SSRC 0x10000u

static unsigned ncalls;
static struct sockaddr_in *to_a, *to_b; /* endpoint A_i, B_i */
static uint64_t forwarded, unknown, send_errors;

static struct {
    char data[BATCH][SLOT];
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    struct iovec out_iov[BATCH];
    struct mmsghdr out[BATCH];
} b;

/* Reads `from` until it is empty, forwarding each datagram out of `other`
 * to the endpoint its SSRC names on the other side (`targets`). */
static void drain(int from, int other, const struct sockaddr_in *targets, unsigned side) {
    for (;;) {
        for (unsigned i = 0; i < BATCH; i++) {
            b.iov[i] = (struct iovec){b.data[i], SLOT};
            b.msgs[i].msg_hdr = (struct msghdr){.msg_iov = &b.iov[i], .msg_iovlen = 1};
        }
        int n = recvmmsg(from, b.msgs, BATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            die("recvmmsg");
        }
        unsigned out = 0;
        for (int i = 0; i < n; i++) {
            const unsigned char *d = (const unsigned char *)b.data[i];
            uint32_t ssrc = b.msgs[i].msg_len >= 12
                ? (uint32_t)d[8] << 24 | (uint32_t)d[9] << 16 | (uint32_t)d[10] << 8 | d[11] : 0;
            uint32_t call = (ssrc - BASE_SSRC) / 2;
            if (ssrc < BASE_SSRC || call >= ncalls || (ssrc - BASE_SSRC) % 2 != side) {
                unknown++;
                continue;
            }
            b.out_iov[out] = (struct iovec){b.data[i], b.msgs[i].msg_len};
            b.out[out].msg_hdr = (struct msghdr){
                .msg_name = (void *)&targets[call], .msg_namelen = sizeof targets[call],
                .msg_iov = &b.out_iov[out], .msg_iovlen = 1};
            out++;
        }
        for (unsigned done = 0; done < out;) {
            int m = sendmmsg(other, b.out + done, out - done, MSG_DONTWAIT);
            if (m < 0) {
                if (errno == EINTR) continue;
                send_errors++;
                done++;
                continue;
            }
            done += (unsigned)m;
            forwarded += (unsigned)m;
        }
        if (n < BATCH) return;
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: relayfloor TICK_MS\n");
        return 2;
    }
    long tick_ms = atol(argv[1]);
    uint16_t *ports_a, *ports_b;
    ncalls = read_endpoints(&ports_a, &ports_b);
    to_a = calloc(ncalls ? ncalls : 1, sizeof *to_a);
    to_b = calloc(ncalls ? ncalls : 1, sizeof *to_b);
    if (!to_a || !to_b) die("calloc");
    for (unsigned i = 0; i < ncalls; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        a.sin_port = htons(ports_a[i]);
        to_a[i] = a;
        a.sin_port = htons(ports_b[i]);
        to_b[i] = a;
    }
    uint16_t port_a, port_b;
    /* As the element asks for its shared sockets: room for a tick of all
     * the streams. */
    int sa = bound_socket(&port_a, SOCK_NONBLOCK, 8 << 20), sb = bound_socket(&port_b, SOCK_NONBLOCK, 8 << 20);
    printf("pid %d\n", getpid());
    for (unsigned i = 0; i < ncalls; i++) printf("%u %u\n", port_a, port_b);
    fflush(stdout);
    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    int fds[3] = {sa, sb, 0};
    for (int i = 0; i < 3; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0) die("epoll_ctl");
    }
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;) {
        struct epoll_event ev[3];
        int n;
        if (tick_ms > 0) {
            next.tv_nsec += tick_ms * 1000000L;
            if (next.tv_nsec >= 1000000000L) {
                next.tv_sec++;
                next.tv_nsec -= 1000000000L;
            }
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
            n = epoll_wait(ep, ev, 3, 0);
        } else {
            n = epoll_wait(ep, ev, 3, -1);
        }
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            if (ev[i].data.fd == sa) drain(sa, sb, to_b, 0);
            else if (ev[i].data.fd == sb) drain(sb, sa, to_a, 1);
            else {
                /* stdin: its close ends the run. */
                char c[64];
                if (read(0, c, sizeof c) <= 0) {
                    printf("floor forwarded=%llu unknown=%llu send_errors=%llu\n",
                           (unsigned long long)forwarded, (unsigned long long)unknown,
                           (unsigned long long)send_errors);
                    return 0;
                }
            }
        }
    }
}

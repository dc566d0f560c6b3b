/* The relay side of the relay bench's driver protocol (see mux_relay.py),
 * shared by the C relays: relayfloor.c and relaytc.c. */
#ifndef RELAY_DRIVER_H
#define RELAY_DRIVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* A UDP socket bound to 127.0.0.1 on a port the kernel picks (`*port`);
 * `rcvbuf` bytes of receive buffer when not 0. */
static int bound_socket(uint16_t *port, int flags, int rcvbuf) {
    int fd = socket(AF_INET, SOCK_DGRAM | flags, 0);
    if (fd < 0) die("socket");
    if (rcvbuf && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0 &&
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) < 0)
        die("SO_RCVBUF");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) < 0) die("getsockname");
    *port = ntohs(a.sin_port);
    return fd;
}

/* The endpoints stdin gives: lines "portA portB" up to an empty one. Returns
 * how many calls; `*a` and `*b` get the ports of A_i and B_i. */
static unsigned read_endpoints(uint16_t **a, uint16_t **b) {
    unsigned n = 0, cap = 16;
    *a = malloc(cap * sizeof **a);
    *b = malloc(cap * sizeof **b);
    char line[128];
    while (*a && *b && fgets(line, sizeof line, stdin) && line[0] != '\n') {
        unsigned pa, pb;
        if (sscanf(line, "%u %u", &pa, &pb) != 2 || !pa || !pb || pa > 65535 || pb > 65535)
            die("endpoint line");
        if (n == cap) {
            cap *= 2;
            *a = realloc(*a, cap * sizeof **a);
            *b = realloc(*b, cap * sizeof **b);
            if (!*a || !*b) break;
        }
        (*a)[n] = (uint16_t)pa;
        (*b)[n] = (uint16_t)pb;
        n++;
    }
    if (!*a || !*b) die("endpoints");
    return n;
}

#endif

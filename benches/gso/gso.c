// The two kernel facts behind rtpmuxserver's `gso` (docs/rtpmuxserver.md,
// "UDP GSO"), measured on loopback with 172-byte datagrams:
//
//   gcc -O2 -Wall -o gso gso.c
//   ./gso cost 0 2000000   CPU per datagram, a message per datagram
//   ./gso cost 2 2000000   the same as UDP GSO messages of 64 (gso=true)
//   ./gso cost 1 2000000   GSO messages to a socket with UDP GRO
//   ./gso drops 1 1        GSO messages to a full socket with GRO
//   ./gso drops 0 1        the same without GRO
//
// cost: one thread sends 64 datagrams per sendmmsg to a socket it reads
// with recvmmsg of 64, and prints its CPU time per datagram.
// drops: 64,000 datagrams to a socket with a 64 KiB receive buffer that is
// read only afterwards; prints what was received and what the kernel
// counted as dropped (SO_MEMINFO). With GRO, a dropped joined message
// counts as one drop, so received + drops falls short of what was sent.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SO_MEMINFO
#define SO_MEMINFO 55
#endif
#define SK_MEMINFO_DROPS 8

enum { LEN = 172, BATCH = 64, ROOM = 65536 };

static char out[BATCH * LEN];
static char in[BATCH][ROOM];

// A receiving socket on 127.0.0.1 (its address in *to) and a sender.
static void sockets(int *rx, int *tx, struct sockaddr_in *to, int rcvbuf, int gro)
{
    int one = 1;
    socklen_t len = sizeof *to;
    *rx = socket(AF_INET, SOCK_DGRAM, 0);
    *tx = socket(AF_INET, SOCK_DGRAM, 0);
    memset(to, 0, sizeof *to);
    to->sin_family = AF_INET;
    to->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(*rx, (struct sockaddr *)to, sizeof *to) || getsockname(*rx, (struct sockaddr *)to, &len)) {
        perror("bind");
        exit(1);
    }
    setsockopt(*rx, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (gro && setsockopt(*rx, IPPROTO_UDP, UDP_GRO, &one, sizeof one)) {
        perror("UDP_GRO");
        exit(1);
    }
}

// Fills *m to send `count` datagrams of LEN bytes from `out` to *to: one
// datagram, or with `gso` one GSO message of them all (control: room for
// CMSG_SPACE(2)).
static void message(struct msghdr *m, struct iovec *iov, char *control, size_t room,
                    struct sockaddr_in *to, char *data, int count, int gso)
{
    memset(m, 0, sizeof *m);
    iov->iov_base = data;
    iov->iov_len = (size_t)count * LEN;
    m->msg_iov = iov;
    m->msg_iovlen = 1;
    m->msg_name = to;
    m->msg_namelen = sizeof *to;
    if (gso) {
        struct cmsghdr *c;
        memset(control, 0, room);
        m->msg_control = control;
        m->msg_controllen = CMSG_SPACE(sizeof(unsigned short));
        c = CMSG_FIRSTHDR(m);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(unsigned short));
        *(unsigned short *)CMSG_DATA(c) = LEN;
    }
}

// Datagrams in what one read returned: a GRO read says its segment size.
static long datagrams(struct msghdr *m, long bytes)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c))
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int size = *(int *)CMSG_DATA(c);
            return (bytes + size - 1) / size;
        }
    return 1;
}

static double cpu_seconds(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6;
}

// mode 0: a message per datagram; 1: GSO messages, GRO receiver; 2: GSO
// messages, plain receiver.
static void cost(int mode, long total)
{
    int rx, tx;
    struct sockaddr_in to;
    struct mmsghdr send[BATCH], recv[BATCH];
    struct iovec send_iov[BATCH], recv_iov[BATCH];
    static char send_control[BATCH][64], recv_control[BATCH][64];
    long sent = 0, got = 0;
    double start;
    sockets(&rx, &tx, &to, 8 << 20, mode == 1);
    start = cpu_seconds();
    while (sent < total) {
        int messages = mode ? 1 : BATCH;
        for (int i = 0; i < messages; i++)
            message(&send[i].msg_hdr, &send_iov[i], send_control[i], sizeof send_control[i], &to,
                    out + i * LEN, mode ? BATCH : 1, mode != 0);
        if (sendmmsg(tx, send, messages, 0) != messages) {
            perror("sendmmsg");
            exit(1);
        }
        sent += BATCH;
        for (;;) {
            int n;
            for (int i = 0; i < BATCH; i++) {
                memset(&recv[i], 0, sizeof recv[i]);
                recv_iov[i].iov_base = in[i];
                recv_iov[i].iov_len = ROOM;
                recv[i].msg_hdr.msg_iov = &recv_iov[i];
                recv[i].msg_hdr.msg_iovlen = 1;
                recv[i].msg_hdr.msg_control = recv_control[i];
                recv[i].msg_hdr.msg_controllen = sizeof recv_control[i];
            }
            n = recvmmsg(rx, recv, BATCH, MSG_DONTWAIT, NULL);
            if (n <= 0)
                break;
            for (int i = 0; i < n; i++)
                got += datagrams(&recv[i].msg_hdr, recv[i].msg_len);
        }
    }
    double used = cpu_seconds() - start;
    printf("cost mode %d: %ld sent, %ld received, %.3f s CPU, %.3f us per datagram\n", mode, sent,
           got, used, used * 1e6 / got);
}

static void drops(int gro, int gso)
{
    int rx, tx;
    struct sockaddr_in to;
    struct msghdr m;
    struct iovec iov;
    char control[64];
    long sent = 0, got = 0, total = 1000L * BATCH;
    unsigned meminfo[16] = {0};
    socklen_t len = sizeof meminfo;
    sockets(&rx, &tx, &to, 65536, gro);
    while (sent < total) {
        message(&m, &iov, control, sizeof control, &to, out, gso ? BATCH : 1, gso);
        if (sendmsg(tx, &m, 0) < 0) {
            perror("sendmsg");
            exit(1);
        }
        sent += gso ? BATCH : 1;
    }
    for (;;) {
        long n;
        memset(&m, 0, sizeof m);
        iov.iov_base = in[0];
        iov.iov_len = ROOM;
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = control;
        m.msg_controllen = sizeof control;
        n = recvmsg(rx, &m, MSG_DONTWAIT);
        if (n < 0)
            break;
        got += datagrams(&m, n);
    }
    getsockopt(rx, SOL_SOCKET, SO_MEMINFO, meminfo, &len);
    printf("drops gro=%d gso=%d: %ld sent, %ld received, %u drops counted, received + drops = %ld\n",
           gro, gso, sent, got, meminfo[SK_MEMINFO_DROPS], got + meminfo[SK_MEMINFO_DROPS]);
}

int main(int argc, char **argv)
{
    memset(out, 0x80, sizeof out);
    if (argc == 4 && !strcmp(argv[1], "cost"))
        cost(atoi(argv[2]), atol(argv[3]));
    else if (argc == 4 && !strcmp(argv[1], "drops"))
        drops(atoi(argv[2]), atoi(argv[3]));
    else {
        fprintf(stderr, "usage: gso cost MODE DATAGRAMS | gso drops GRO GSO\n");
        return 2;
    }
    return 0;
}

/*
 * Load generator for the relay benchmark: N calls, each two RTP endpoints
 * A_i and B_i with a UDP socket of their own on 127.0.0.1. Every 20 ms each
 * endpoint sends one 172-byte PCMU packet (PT 0) to its relay address; each
 * endpoint checks that it receives exactly its peer's stream.
 *
 *   loadgen N WARMUP WINDOW DRAIN        (seconds; may be fractional)
 *
 * stdout: N lines "portA portB" (the endpoints' own ports, for the relay's
 * configuration), then, once stdin has given N lines "relayA relayB" (the
 * relay ports A_i and B_i send to), "started" when the first round is due,
 * and at exit one line of totals: "loadgen key=value ...". It sends for
 * WARMUP + WINDOW seconds and keeps receiving for DRAIN more.
 *
 * Loss is counted against what the peer sent: all sequence numbers of one
 * run fit in a bitmap, so duplicates are exact rather than guessed.
 *
 * Latency: each packet carries its send time (CLOCK_REALTIME, ns, read
 * just before its sendmmsg) in the first 8 bytes of its payload, which a
 * relay passes on untouched; what arrives from a round sent after WARMUP is
 * timed by the kernel's receive timestamp (SO_TIMESTAMPNS, the moment the
 * datagram reached the endpoint's socket), so this process's own delay in
 * reading it (it sends every endpoint's packet of a round before it reads)
 * does not count; its delay between two endpoints' sends does not either.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

enum {
	RTP_HEADER = 12,
	PCMU_PAYLOAD = 160,
	PACKET = RTP_HEADER + PCMU_PAYLOAD,
	ROUNDS_PER_SECOND = 50,
	SSRC_BASE = 0x10000,
	BATCH = 64,
	/* Larger than any datagram a relay should send back, so an oversized
	 * one is seen whole and counted as malformed rather than truncated. */
	RECV_BUF = 2048,
	/* Latency histogram: 50 µs buckets up to 200 ms, then one for longer. */
	LATENCY_BUCKET_NS = 50000,
	LATENCY_BUCKETS = 4000,
};

static struct {
	uint64_t first_seq; /* of the first round sent after WARMUP */
	uint64_t count, sum_ns, max_ns;
	uint64_t hist[LATENCY_BUCKETS + 1];
} latency;

static uint64_t ns_of(struct timespec t)
{
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* The clock the kernel's receive timestamps are taken on. */
static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return ns_of(t);
}

/* When the kernel queued the datagram, from its SCM_TIMESTAMPNS; `fallback`
 * when the message lacks it. */
static uint64_t arrival_ns(struct msghdr *h, uint64_t fallback)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
			struct timespec t;
			memcpy(&t, CMSG_DATA(c), sizeof(t));
			return ns_of(t);
		}
	}
	return fallback;
}

static void time_arrival(const uint8_t *p, uint64_t seq, uint64_t arrived_ns)
{
	uint64_t sent_ns;
	memcpy(&sent_ns, p + RTP_HEADER, sizeof(sent_ns));
	if (seq < latency.first_seq || sent_ns > arrived_ns)
		return;
	uint64_t d = arrived_ns - sent_ns;
	latency.count++;
	latency.sum_ns += d;
	if (d > latency.max_ns)
		latency.max_ns = d;
	uint64_t b = d / LATENCY_BUCKET_NS;
	latency.hist[b < LATENCY_BUCKETS ? b : LATENCY_BUCKETS]++;
}

/* The upper edge of the bucket that holds the q-quantile, in µs. */
static uint64_t latency_quantile_us(double q)
{
	uint64_t want = (uint64_t)ceil(q * (double)latency.count), seen = 0;
	for (unsigned b = 0; b <= LATENCY_BUCKETS; b++) {
		seen += latency.hist[b];
		if (seen >= want && seen > 0)
			return b < LATENCY_BUCKETS ? (uint64_t)(b + 1) * LATENCY_BUCKET_NS / 1000
						   : latency.max_ns / 1000;
	}
	return 0;
}

struct endpoint {
	int fd;
	uint16_t port;
	struct sockaddr_in relay;
	uint32_t ssrc;
	uint32_t peer_ssrc;
	uint64_t sent;
	uint64_t received;
	uint64_t duplicated;
	uint64_t reordered;
	uint64_t misdelivered;
	uint64_t malformed;
	int64_t highest_seq;
	uint8_t *seen;
};

static void die(const char *what)
{
	fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void usage(void)
{
	fprintf(stderr, "usage: loadgen N WARMUP WINDOW DRAIN (seconds)\n");
	exit(2);
}

static double seconds_arg(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	if (*s == '\0' || *end != '\0' || !(v >= 0.0) || v > 600.0)
		usage();
	return v;
}

static void raise_fd_limit(size_t needed)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		die("getrlimit");
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < needed) {
		if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < needed) {
			fprintf(stderr, "loadgen: need %zu descriptors, hard limit is %ju\n", needed,
				(uintmax_t)rl.rlim_max);
			exit(2);
		}
		rl.rlim_cur = needed;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			die("setrlimit");
	}
}

static void open_endpoint(struct endpoint *e, uint32_t ssrc, uint32_t peer_ssrc, size_t seen_bytes)
{
	memset(e, 0, sizeof(*e));
	e->ssrc = ssrc;
	e->peer_ssrc = peer_ssrc;
	e->highest_seq = -1;
	e->seen = calloc(seen_bytes, 1);
	if (!e->seen)
		die("calloc");
	e->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (e->fd < 0)
		die("socket");
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (bind(e->fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		die("bind 127.0.0.1:0");
	socklen_t len = sizeof(a);
	if (getsockname(e->fd, (struct sockaddr *)&a, &len) != 0)
		die("getsockname");
	e->port = ntohs(a.sin_port);
	int on = 1;
	if (setsockopt(e->fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) != 0)
		die("SO_TIMESTAMPNS");
}

static int read_port(unsigned *port)
{
	if (scanf("%u", port) != 1 || *port == 0 || *port > 65535)
		return -1;
	return 0;
}

static void set_relay(struct endpoint *e, unsigned port)
{
	e->relay.sin_family = AF_INET;
	e->relay.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	e->relay.sin_port = htons((uint16_t)port);
}

/* Sends this endpoint's next `count` packets in as few system calls as
 * sendmmsg allows (count > 1 only when the timer fired late). */
static void send_packets(struct endpoint *e, uint64_t count, uint64_t *send_errors)
{
	uint8_t pkts[BATCH][PACKET];
	struct iovec iov[BATCH];
	struct mmsghdr msgs[BATCH];
	while (count > 0) {
		unsigned n = count < BATCH ? (unsigned)count : BATCH;
		uint64_t sent_ns = now_ns();
		for (unsigned k = 0; k < n; k++) {
			uint64_t seq = e->sent + k;
			uint8_t *p = pkts[k];
			p[0] = 0x80;
			p[1] = seq == 0 ? 0x80 : 0x00; /* marker on the first packet, PT 0 */
			uint16_t s16 = htons((uint16_t)seq);
			uint32_t ts = htonl((uint32_t)(seq * PCMU_PAYLOAD));
			uint32_t ssrc = htonl(e->ssrc);
			memcpy(p + 2, &s16, 2);
			memcpy(p + 4, &ts, 4);
			memcpy(p + 8, &ssrc, 4);
			memset(p + RTP_HEADER, 0xff, PCMU_PAYLOAD); /* µ-law silence */
			memcpy(p + RTP_HEADER, &sent_ns, sizeof(sent_ns));
			iov[k] = (struct iovec){.iov_base = p, .iov_len = PACKET};
			msgs[k] = (struct mmsghdr){.msg_hdr = {.msg_name = &e->relay,
							       .msg_namelen = sizeof(e->relay),
							       .msg_iov = &iov[k],
							       .msg_iovlen = 1}};
		}
		int r = sendmmsg(e->fd, msgs, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != ENOBUFS && errno != ECONNREFUSED)
				die("sendmmsg");
			/* A datagram the kernel refused is not sent: the peer's loss
			 * counts only what left, and this counts the rest. */
			(*send_errors)++;
			r = 1;
		} else {
			e->sent += (uint64_t)r;
		}
		count -= (uint64_t)r;
	}
}

static void account(struct endpoint *e, const uint8_t *p, size_t len, int truncated,
		    uint64_t rounds, uint64_t arrived_ns)
{
	if (truncated || len < RTP_HEADER || (p[0] & 0xc0) != 0x80) {
		e->malformed++;
		return;
	}
	uint32_t ssrc;
	uint16_t seq16;
	memcpy(&ssrc, p + 8, 4);
	memcpy(&seq16, p + 2, 2);
	uint64_t seq = ntohs(seq16);
	if (ntohl(ssrc) != e->peer_ssrc || seq >= rounds) {
		e->misdelivered++;
		return;
	}
	if (len != PACKET || (p[1] & 0x7f) != 0) {
		e->malformed++;
		return;
	}
	uint8_t bit = (uint8_t)(1u << (seq & 7));
	if (e->seen[seq >> 3] & bit) {
		e->duplicated++;
		return;
	}
	e->seen[seq >> 3] |= bit;
	e->received++;
	time_arrival(p, seq, arrived_ns);
	if ((int64_t)seq < e->highest_seq)
		e->reordered++;
	else
		e->highest_seq = (int64_t)seq;
}

static void receive_all(struct endpoint *e, uint64_t rounds)
{
	static uint8_t bufs[BATCH][RECV_BUF];
	static uint8_t controls[BATCH][CMSG_SPACE(sizeof(struct timespec))];
	struct iovec iov[BATCH];
	struct mmsghdr msgs[BATCH];
	for (;;) {
		for (unsigned k = 0; k < BATCH; k++) {
			iov[k] = (struct iovec){.iov_base = bufs[k], .iov_len = RECV_BUF};
			msgs[k] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[k],
							       .msg_iovlen = 1,
							       .msg_control = controls[k],
							       .msg_controllen = sizeof(controls[k])}};
		}
		int r = recvmmsg(e->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
		if (r < 0) {
			/* ECONNREFUSED: an ICMP error queued by an earlier send. */
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNREFUSED)
				return;
			if (errno == EINTR)
				continue;
			die("recvmmsg");
		}
		uint64_t read_ns = now_ns();
		for (int k = 0; k < r; k++)
			account(e, bufs[k], msgs[k].msg_len, (msgs[k].msg_hdr.msg_flags & MSG_TRUNC) != 0,
				rounds, arrival_ns(&msgs[k].msg_hdr, read_ns));
		if (r < BATCH)
			return;
	}
}

int main(int argc, char **argv)
{
	if (argc != 5)
		usage();
	char *end;
	long calls = strtol(argv[1], &end, 10);
	if (*argv[1] == '\0' || *end != '\0' || calls < 1 || calls > 20000)
		usage();
	double warmup = seconds_arg(argv[2]), window = seconds_arg(argv[3]),
	       drain = seconds_arg(argv[4]);
	uint64_t send_rounds = (uint64_t)llround((warmup + window) * ROUNDS_PER_SECOND);
	uint64_t all_rounds = send_rounds + (uint64_t)llround(drain * ROUNDS_PER_SECOND);
	latency.first_seq = (uint64_t)llround(warmup * ROUNDS_PER_SECOND);
	/* Sequence numbers must not wrap: that keeps loss and duplicates exact. */
	if (send_rounds == 0 || send_rounds > 65536) {
		fprintf(stderr, "loadgen: WARMUP + WINDOW must be between 0.02 and 1310 s\n");
		return 2;
	}

	size_t n = (size_t)calls * 2;
	raise_fd_limit(n + 16);
	struct endpoint *eps = calloc(n, sizeof(*eps));
	if (!eps)
		die("calloc");
	size_t seen_bytes = (size_t)(send_rounds + 7) / 8;
	for (size_t i = 0; i < n; i++) {
		uint32_t ssrc = SSRC_BASE + (uint32_t)i;
		open_endpoint(&eps[i], ssrc, ssrc ^ 1u, seen_bytes);
	}
	for (size_t c = 0; c < (size_t)calls; c++)
		printf("%u %u\n", eps[2 * c].port, eps[2 * c + 1].port);
	if (fflush(stdout) != 0)
		die("stdout");
	for (size_t c = 0; c < (size_t)calls; c++) {
		unsigned pa, pb;
		if (read_port(&pa) != 0 || read_port(&pb) != 0) {
			fprintf(stderr, "loadgen: stdin must give %ld lines \"relayA relayB\"\n", calls);
			return 2;
		}
		set_relay(&eps[2 * c], pa);
		set_relay(&eps[2 * c + 1], pb);
	}

	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	if (tfd < 0)
		die("timerfd_create");
	for (size_t i = 0; i <= n; i++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = i};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, i < n ? eps[i].fd : tfd, &ev) != 0)
			die("epoll_ctl");
	}
	const long round_ns = 1000000000L / ROUNDS_PER_SECOND;
	struct itimerspec its = {.it_interval = {.tv_nsec = round_ns}, .it_value = {.tv_nsec = round_ns}};
	if (timerfd_settime(tfd, 0, &its, NULL) != 0)
		die("timerfd_settime");
	printf("started\n");
	if (fflush(stdout) != 0)
		die("stdout");

	/* Ticks the timer fired while the loadgen was not running: a stall of
	 * the whole machine shows here as well as in the relay. */
	uint64_t ticks = 0, rounds_sent = 0, late_ticks = 0, max_late_ticks = 0, send_errors = 0;
	struct epoll_event evs[256];
	while (ticks < all_rounds) {
		int r = epoll_wait(ep, evs, 256, -1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int k = 0; k < r; k++) {
			uint64_t i = evs[k].data.u64;
			if (i < n) {
				receive_all(&eps[i], send_rounds);
				continue;
			}
			uint64_t expirations;
			if (read(tfd, &expirations, sizeof(expirations)) != sizeof(expirations))
				die("read timerfd");
			ticks += expirations;
			late_ticks += expirations - 1;
			if (expirations - 1 > max_late_ticks)
				max_late_ticks = expirations - 1;
			uint64_t due = (ticks < send_rounds ? ticks : send_rounds) - rounds_sent;
			if (due > 0) {
				for (size_t e = 0; e < n; e++)
					send_packets(&eps[e], due, &send_errors);
				rounds_sent += due;
			}
		}
	}

	uint64_t sent = 0, received = 0, lost = 0, duplicated = 0, reordered = 0, misdelivered = 0,
		 malformed = 0, silent = 0;
	for (size_t i = 0; i < n; i++) {
		struct endpoint *e = &eps[i];
		const struct endpoint *peer = &eps[i ^ 1];
		sent += e->sent;
		received += e->received;
		lost += peer->sent - e->received;
		duplicated += e->duplicated;
		reordered += e->reordered;
		misdelivered += e->misdelivered;
		malformed += e->malformed;
		silent += e->received == 0;
	}
	printf("loadgen calls=%ld rounds=%" PRIu64 " sent=%" PRIu64 " received=%" PRIu64
	       " lost=%" PRIu64 " duplicated=%" PRIu64 " reordered=%" PRIu64
	       " misdelivered=%" PRIu64 " malformed=%" PRIu64 " silent_endpoints=%" PRIu64
	       " late_ticks=%" PRIu64 " max_stall_ms=%" PRIu64 " send_errors=%" PRIu64
	       " latency_samples=%" PRIu64 " latency_mean_us=%" PRIu64 " latency_p99_us=%" PRIu64
	       " latency_max_us=%" PRIu64 "\n",
	       calls, rounds_sent, sent, received, lost, duplicated, reordered, misdelivered,
	       malformed, silent, late_ticks, max_late_ticks * 1000 / ROUNDS_PER_SECOND, send_errors,
	       latency.count, latency.count ? latency.sum_ns / latency.count / 1000 : 0,
	       latency_quantile_us(0.99), latency.max_ns / 1000);
	if (fflush(stdout) != 0)
		die("stdout");
	return 0;
}

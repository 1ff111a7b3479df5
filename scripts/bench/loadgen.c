/*
 * loadgen: a minimal MTA-side milter load generator, the yardstick for
 * `minimilter bench` (docs/performance.md, "The client is not the bottleneck").
 *
 *   cc -O2 -o target/bench/loadgen scripts/bench/loadgen.c
 *   loadgen [-N] [-S MS] [-c CONNS] [-n MESSAGES] [-d SECONDS] [-b BODY_BYTES] [-m FILE] SOCKET
 *
 * SOCKET is unix:/path, /path or inet:host:port. Each of CONNS connections
 * negotiates once (protocol 6, Postfix's offer), then plays MESSAGES
 * messages in one SMTP session each: the same steps and macros as
 * `minimilter bench` (connect, HELO, MAIL, RCPT, DATA, headers, end of
 * headers, 65535-byte body chunks, end of message, then ABORT as Postfix
 * sends it), leaving out what the milter negotiated away and not waiting
 * where it negotiated no-reply. Every packet of a message is encoded once per
 * connection, right after negotiation; a message is one write per awaited
 * reply (ABORT rides with the next message's first write). One thread,
 * epoll, nonblocking reads, blocking writes (a reply is never due while we
 * write). Macro lists the milter asks for are not honoured: all macros are
 * sent, which milters ignore.
 *
 * With -N each message has its own connection, as an MTA that opens one
 * milter connection per SMTP session: after a message, ABORT and QUIT are
 * written, the socket closed and a new one opened and negotiated (without
 * waiting: the reply is read by the event loop), still CONNS at a time and
 * bounded by MESSAGES per slot and SECONDS. The message is encoded once, on
 * the first negotiation; a milter that negotiates differently later is an
 * error. slowest_negotiation_ms is connect + negotiation, worst seen;
 * negotiation_ms gives the distribution (p50 to p99.9) over all of them.
 * -S MS prints each negotiation, and each awaited reply, slower than MS
 * milliseconds to stderr, with when it started (ms into the run), to tell
 * one slow connection (or a slow accept) from a stall that holds every
 * connection at once.
 *
 * It checks only what it needs to go on: packet lengths, and that a reply is
 * a known code. Decisive replies before end of message end the message
 * (ABORT); at connect or HELO they end the connection. `s` (skip) skips the
 * rest of that kind of step. Bounded: MESSAGES per connection and -d
 * SECONDS for the whole run; messages that complete after it are not counted.
 *
 * Prints one line of JSON: messages, seconds, msgs_per_s, its own CPU time
 * (getrusage) in seconds and per message, and the fewest messages any
 * connection completed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65535
#define MAXSEG 4096

struct buf { char *p; size_t len, cap; };

static void put(struct buf *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) { perror("realloc"); exit(1); }
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

/* One packet: length, code, payload parts (each given with its length). */
static void packet(struct buf *b, char code, const void *p1, size_t n1, const void *p2, size_t n2)
{
    uint32_t len = htonl((uint32_t)(1 + n1 + n2));
    put(b, &len, 4);
    put(b, &code, 1);
    if (n1) put(b, p1, n1);
    if (n2) put(b, p2, n2);
}

/* A macro packet from "name\0value\0..." of total length n. */
static void macros(struct buf *b, char stage, const char *pairs, size_t n)
{
    packet(b, 'D', &stage, 1, pairs, n);
}

#define LIT(s) s, sizeof(s) - 1

/* A step awaiting a reply, with everything written before it. */
struct seg { struct buf out; char kind; int await; };

struct conn {
    int fd, seg, nseg, done, dead, negotiating;
    uint32_t proto;   /* protocol flags of the first negotiation */
    double neg_started;
    double sent_at;         /* when the current step's bytes were written (for -S) */
    struct seg segs[MAXSEG];
    struct buf abort_first; /* ABORT, written in front of every message after the first */
    struct buf greeting;    /* unawaited connect/HELO bytes, written once */
    char in[1 << 16];
    size_t inlen;
    long completed;
    int greeted;
};

static long messages = 100;
static double duration = 60;
static struct buf body, headers; /* headers: encoded L packets */
static int conns = 8;
static int new_conn_per_msg;   /* -N: one connection per message */
static double slowest_neg;     /* seconds, connect + negotiation */
static double *negs;           /* every negotiation's time, for the distribution */
static double slow_ms = -1;    /* -S MS: print each negotiation slower than this */
static double run_started;
static size_t nneg, negcap;
static const char *sockspec;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int open_socket(void)
{
    int fd;
    const char *path = NULL;
    if (!strncmp(sockspec, "unix:", 5)) path = sockspec + 5;
    else if (sockspec[0] == '/') path = sockspec;
    if (path) {
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        strncpy(a.sun_path, path, sizeof a.sun_path - 1);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror(path); exit(1); }
        return fd;
    }
    if (strncmp(sockspec, "inet:", 5)) { fprintf(stderr, "loadgen: bad socket %s\n", sockspec); exit(2); }
    char host[256];
    snprintf(host, sizeof host, "%s", sockspec + 5);
    char *colon = strrchr(host, ':');
    if (!colon) { fprintf(stderr, "loadgen: inet:host:port\n"); exit(2); }
    *colon = 0;
    struct addrinfo *ai, hints = { .ai_socktype = SOCK_STREAM };
    if (getaddrinfo(host, colon + 1, &hints, &ai)) { fprintf(stderr, "loadgen: cannot resolve %s\n", host); exit(1); }
    fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) { perror(sockspec); exit(1); }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof one);
    freeaddrinfo(ai);
    return fd;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) { if (errno == EINTR) continue; perror("write"); exit(1); }
        p += w;
        n -= (size_t)w;
    }
}

static uint32_t be32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return ntohl(v);
}

/* Opens a connection and sends the offer (protocol 6, Postfix's); the
   reply is read by the event loop. */
static void start_conn(struct conn *c)
{
    char opt[12];
    uint32_t v = htonl(6), act = htonl(0x1FF), proto = htonl(0x1FFFFF);
    memcpy(opt, &v, 4); memcpy(opt + 4, &act, 4); memcpy(opt + 8, &proto, 4);
    struct buf o = {0};
    packet(&o, 'O', opt, 12, NULL, 0);
    c->fd = open_socket();
    c->neg_started = now();
    c->negotiating = 1;
    c->inlen = 0;
    write_all(c->fd, o.p, o.len);
    free(o.p);
}

/* Encodes the message script for what the milter asked for (protocol
   flags p of its negotiation reply). */
static void encode_script(struct conn *c, uint32_t p)
{
#define NO(bit) (p & (bit))
    /* Each step: its macros always (as Postfix), the command unless NO_*,
       a reply awaited unless NR_*. Consecutive unawaited bytes join the next. */
    struct buf cur = {0};
    int n = 0;
#define STEP(kind, nobit, nrbit, ...) do { \
        if (!NO(nobit)) { __VA_ARGS__; \
            if (!((nrbit) && NO(nrbit))) { c->segs[n++] = (struct seg){cur, kind, 1}; cur = (struct buf){0}; } } \
    } while (0)
    macros(&cur, 'C', LIT("j\0minimilter.localdomain\0{daemon_name}\0minimilter\0{daemon_addr}\0127.0.0.1\0v\0minimilter check\0_\0localhost [127.0.0.1]\0"));
    STEP('C', 0x1, 0x1000, packet(&cur, 'C', LIT("localhost\0" "4\x9c\x40" "127.0.0.1\0"), NULL, 0));
    STEP('H', 0x2, 0x2000, packet(&cur, 'H', LIT("localhost\0"), NULL, 0));
    int first_message_seg = n;
    struct buf before_mail = cur; /* unawaited greeting bytes go with MAIL */
    cur = (struct buf){0};
    macros(&cur, 'M', LIT("i\0" "4ABCDEF0123\0{mail_addr}\0sender@example.com\0{mail_mailer}\0smtp\0"));
    STEP('M', 0x4, 0x4000, packet(&cur, 'M', LIT("<sender@example.com>\0"), NULL, 0));
    macros(&cur, 'R', LIT("i\0" "4ABCDEF0123\0{rcpt_addr}\0recipient@example.org\0{rcpt_mailer}\0smtp\0"));
    STEP('R', 0x8, 0x8000, packet(&cur, 'R', LIT("<recipient@example.org>\0"), NULL, 0));
    macros(&cur, 'T', LIT("i\0" "4ABCDEF0123\0"));
    STEP('T', 0x200, 0x10000, packet(&cur, 'T', NULL, 0, NULL, 0));
    /* headers: one step each */
    for (size_t off = 0; off < headers.len;) {
        size_t plen = 4 + be32(headers.p + off);
        STEP('L', 0x20, 0x80, put(&cur, headers.p + off, plen));
        off += plen;
    }
    macros(&cur, 'N', LIT("i\0" "4ABCDEF0123\0"));
    STEP('N', 0x40, 0x40000, packet(&cur, 'N', NULL, 0, NULL, 0));
    for (size_t off = 0; off < body.len; off += CHUNK) {
        size_t k = body.len - off < CHUNK ? body.len - off : CHUNK;
        STEP('B', 0x10, 0x80000, packet(&cur, 'B', body.p + off, k, NULL, 0));
        if (n >= MAXSEG - 2) { fprintf(stderr, "loadgen: message too big\n"); exit(2); }
    }
    macros(&cur, 'E', LIT("i\0" "4ABCDEF0123\0"));
    packet(&cur, 'E', NULL, 0, NULL, 0);
    c->segs[n++] = (struct seg){cur, 'E', 1};
    c->nseg = n;
    c->greeting = before_mail; /* greeting bytes nobody waits for, written once */
    c->abort_first = (struct buf){0};
    packet(&c->abort_first, 'A', NULL, 0, NULL, 0);
    c->greeted = first_message_seg; /* index of the first per-message segment */
}

static struct conn *cs;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of the sorted negotiation times (nearest rank), 0 if none. */
static double quantile(double q)
{
    if (!nneg) return 0;
    size_t k = (size_t)(q * (double)nneg);
    return negs[k < nneg ? k : nneg - 1];
}

/* Writes segment c->seg (with ABORT in front when a message came before). */
static void send_seg(struct conn *c, int after_abort)
{
    struct buf *b = &c->segs[c->seg].out;
    if (slow_ms >= 0) c->sent_at = now();
    if (after_abort) {
        struct iovec io[2] = {{c->abort_first.p, c->abort_first.len}, {b->p, b->len}};
        struct msghdr m = { .msg_iov = io, .msg_iovlen = 2 };
        ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (w < 0) { perror("write"); exit(1); }
        size_t total = c->abort_first.len + b->len;
        if ((size_t)w < total) { /* rest, blocking */
            size_t skip = (size_t)w;
            if (skip < c->abort_first.len) {
                write_all(c->fd, c->abort_first.p + skip, c->abort_first.len - skip);
                skip = 0;
            } else skip -= c->abort_first.len;
            write_all(c->fd, b->p + skip, b->len - skip);
        }
    } else {
        write_all(c->fd, b->p, b->len);
    }
}

int main(int argc, char **argv)
{
    long body_bytes = 2048;
    const char *file = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "c:n:d:b:m:NS:")) != -1) {
        switch (opt) {
        case 'c': conns = atoi(optarg); break;
        case 'n': messages = atol(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'b': body_bytes = atol(optarg); break;
        case 'm': file = optarg; break;
        case 'N': new_conn_per_msg = 1; break;
        case 'S': slow_ms = atof(optarg); break;
        default:
            fprintf(stderr, "usage: loadgen [-N] [-S MS] [-c CONNS] [-n MESSAGES] [-d SECONDS] [-b BODY_BYTES] [-m FILE] SOCKET\n");
            return 2;
        }
    }
    if (optind != argc - 1 || conns < 1 || messages < 1 || duration <= 0) {
        fprintf(stderr, "usage: loadgen [-N] [-S MS] [-c CONNS] [-n MESSAGES] [-d SECONDS] [-b BODY_BYTES] [-m FILE] SOCKET\n");
        return 2;
    }
    sockspec = argv[optind];
    /* The message: the same generated one as `minimilter bench`, or a file
       (CRLF or LF; header fields with continuation lines; body sent as is). */
    struct buf msg = {0};
    if (file) {
        FILE *f = fopen(file, "rb");
        if (!f) { perror(file); return 1; }
        char tmp[65536];
        size_t r;
        while ((r = fread(tmp, 1, sizeof tmp, f)) > 0) put(&msg, tmp, r);
        fclose(f);
    } else {
        static const char h[] = "From: <sender@example.com>\r\nTo: <recipient@example.org>\r\nSubject: minimilter bench\r\nMessage-ID: <bench@minimilter.invalid>\r\n\r\n";
        static const char line[] = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n";
        put(&msg, h, sizeof h - 1);
        for (long done = 0; done < body_bytes;) {
            long take = (long)sizeof line - 1 < body_bytes - done ? (long)sizeof line - 1 : body_bytes - done;
            if (take < 2) put(&msg, "\r\n", (size_t)take);
            else { put(&msg, line, (size_t)take - 2); put(&msg, "\r\n", 2); }
            done += take;
        }
    }
    /* Split header fields (name: value, continuation lines kept, CRLF between). */
    size_t i = 0;
    while (i < msg.len) {
        size_t eol = i;
        while (eol < msg.len && msg.p[eol] != '\n') eol++;
        size_t lend = eol > i && msg.p[eol - 1] == '\r' ? eol - 1 : eol;
        if (lend == i) { i = eol + 1; break; } /* blank line */
        size_t end = eol, next = eol + 1;
        while (next < msg.len && (msg.p[next] == ' ' || msg.p[next] == '\t')) {
            end = next;
            while (end < msg.len && msg.p[end] != '\n') end++;
            next = end + 1;
        }
        size_t vend = end > i && msg.p[end - 1] == '\r' ? end - 1 : end;
        char *colon = memchr(msg.p + i, ':', vend - i);
        if (!colon) { i = next; continue; }
        struct buf hv = {0};
        put(&hv, msg.p + i, (size_t)(colon - (msg.p + i)));
        put(&hv, "", 1);
        const char *v = colon + 1;
        while (v < msg.p + vend && (*v == ' ' || *v == '\t')) v++;
        put(&hv, v, (size_t)(msg.p + vend - v));
        put(&hv, "", 1);
        packet(&headers, 'L', hv.p, hv.len, NULL, 0);
        free(hv.p);
        i = next;
    }
    /* Body with CRLF line ends, as the MTA sends it. */
    for (; i < msg.len; i++) {
        if (msg.p[i] == '\n' && (i == 0 || msg.p[i - 1] != '\r')) put(&body, "\r", 1);
        put(&body, msg.p + i, 1);
    }

    cs = calloc((size_t)conns, sizeof *cs);
    int ep = epoll_create1(0);
    double started = now(), deadline = started + duration;
    run_started = started;
    if (slow_ms >= 0)
        fprintf(stderr, "run started at CLOCK_MONOTONIC %.6f s\n", started);
    int live = 0;
    for (int k = 0; k < conns; k++) {
        struct conn *c = &cs[k];
        start_conn(c);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        live++;
    }
    long total = 0;
    struct epoll_event evs[256];
    while (live > 0) {
        int ms = (int)((deadline - now()) * 1000) + 1;
        if (ms <= 0) break;
        int ne = epoll_wait(ep, evs, 256, ms);
        if (ne < 0) { if (errno == EINTR) continue; perror("epoll_wait"); return 1; }
        for (int e = 0; e < ne; e++) {
            struct conn *c = evs[e].data.ptr;
            ssize_t r = recv(c->fd, c->in + c->inlen, sizeof c->in - c->inlen, MSG_DONTWAIT);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (r <= 0) { fprintf(stderr, "loadgen: milter closed a connection\n"); c->dead = 1; live--; epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); continue; }
            c->inlen += (size_t)r;
            if (c->negotiating) {
                if (c->inlen < 5) continue;
                uint32_t len = be32(c->in);
                if (c->in[4] != 'O' || len < 13 || len > sizeof c->in - 4) { fprintf(stderr, "loadgen: bad negotiation reply\n"); return 1; }
                if (c->inlen < 4 + len) continue;
                uint32_t p = be32(c->in + 5 + 8);
                if (!c->nseg) { encode_script(c, p); c->proto = p; }
                else if (p != c->proto) { fprintf(stderr, "loadgen: the milter negotiated differently on a new connection\n"); return 1; }
                double took = now() - c->neg_started;
                if (took > slowest_neg) slowest_neg = took;
                if (slow_ms >= 0 && took * 1e3 > slow_ms)
                    fprintf(stderr, "slow negotiation: started at %.3f ms, took %.3f ms\n",
                            (c->neg_started - run_started) * 1e3, took * 1e3);
                if (nneg == negcap) {
                    negcap = negcap ? 2 * negcap : 1024;
                    negs = realloc(negs, negcap * sizeof *negs);
                    if (!negs) { perror("realloc"); return 1; }
                }
                negs[nneg++] = took;
                memmove(c->in, c->in + 4 + len, c->inlen - 4 - len);
                c->inlen -= 4 + len;
                c->negotiating = 0;
                c->seg = 0;
                if (c->greeting.len) write_all(c->fd, c->greeting.p, c->greeting.len);
                send_seg(c, 0);
                continue;
            }
            size_t off = 0;
            int next = 0, abort_msg = 0, end_conn = 0;
            while (c->inlen - off >= 5) {
                uint32_t len = be32(c->in + off);
                if (len < 1 || len > sizeof c->in - 4) { fprintf(stderr, "loadgen: bad packet length %u\n", len); return 1; }
                if (c->inlen - off < 4 + len) break;
                char code = c->in[off + 4];
                off += 4 + len;
                switch (code) {
                case 'c': next = 1; break;
                case 's': { /* skip the rest of this kind of step */
                    char kind = c->segs[c->seg].kind;
                    while (c->seg + 1 < c->nseg - 1 && c->segs[c->seg + 1].kind == kind) c->seg++;
                    next = 1;
                    break; }
                case 'a': case 'r': case 't': case 'd': case 'y': case '4':
                    next = 1;
                    if (c->segs[c->seg].kind == 'C' || c->segs[c->seg].kind == 'H' || code == '4') end_conn = 1;
                    else if (c->segs[c->seg].kind != 'E') abort_msg = 1;
                    break;
                case 'p': case '+': case '-': case 'b': case 'h': case 'i': case 'm': case 'q':
                case 'e': case 'f': case '2': case '3': case '5': case '6':
                    break; /* progress and modifications: nothing to do */
                default:
                    fprintf(stderr, "loadgen: unknown reply '%c'\n", code);
                    return 1;
                }
            }
            memmove(c->in, c->in + off, c->inlen - off);
            c->inlen -= off;
            if (!next) continue;
            if (slow_ms >= 0 && (now() - c->sent_at) * 1e3 > slow_ms)
                fprintf(stderr, "slow reply: step sent at %.3f ms, took %.3f ms\n",
                        (c->sent_at - run_started) * 1e3, (now() - c->sent_at) * 1e3);
            if (end_conn) {
                fprintf(stderr, "loadgen: the milter ended a session at connect/HELO\n");
                c->dead = 1; live--; epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); continue;
            }
            if (abort_msg || c->seg == c->nseg - 1) {
                /* message done: count it only within the run */
                if (now() <= deadline) { c->completed++; total++; }
                if (c->completed >= messages || now() > deadline) {
                    write_all(c->fd, "\0\0\0\1A\0\0\0\1Q", 10);
                    c->done = 1; live--; epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    continue;
                }
                if (new_conn_per_msg) {
                    /* as Postfix with one SMTP session per message: quit,
                       close, and the next message on a new connection */
                    write_all(c->fd, "\0\0\0\1A\0\0\0\1Q", 10);
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    close(c->fd);
                    start_conn(c);
                    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
                    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
                    continue;
                }
                c->seg = c->greeted;
                send_seg(c, 1);
            } else {
                c->seg++;
                send_seg(c, 0);
            }
        }
    }
    double elapsed = now() - started;
    if (elapsed > duration) elapsed = duration;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    long fewest = -1;
    for (int k = 0; k < conns; k++)
        if (fewest < 0 || cs[k].completed < fewest) fewest = cs[k].completed;
    qsort(negs, nneg, sizeof *negs, cmp_double);
    printf("{\"conns\": %d, \"messages\": %ld, \"seconds\": %.3f, \"msgs_per_s\": %.0f, "
           "\"cpu_s\": %.3f, \"cpu_us_per_msg\": %.2f, \"fewest_messages_on_a_connection\": %ld, "
           "\"new_connection_per_message\": %s, \"slowest_negotiation_ms\": %.3f, "
           "\"negotiations\": %zu, \"negotiation_ms\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"p999\": %.3f}}\n",
           conns, total, elapsed, total / elapsed, cpu, total ? cpu * 1e6 / total : 0.0, fewest,
           new_conn_per_msg ? "true" : "false", slowest_neg * 1e3, nneg,
           quantile(0.5) * 1e3, quantile(0.9) * 1e3, quantile(0.99) * 1e3, quantile(0.999) * 1e3);
    return total > 0 ? 0 : 1;
}

/* The floor under any milter on this machine: the benchmark gate job's
 * conversation (docs/performance.md, "Same job for every milter") answered
 * with no policy at all, by the least code that can hold a milter
 * connection. It negotiates what the gate milters negotiate (protocol 6,
 * the body step and end of message only, SKIP, the add-header action),
 * answers every body chunk with skip and end of message with the header
 * and accept, and never looks inside a packet beyond its command byte.
 *
 * Whatever CPU per message or slowest negotiation it shows is what the
 * kernel, the scheduler and the VM cost before any runtime or filter does
 * anything: the yardstick for the targets of issue 12.
 *
 *   cc -O2 -o target/bench/floor_milter scripts/bench/floor_milter.c -lpthread
 *   target/bench/floor_milter SOCKET-PATH        one thread, epoll, non-blocking
 *   target/bench/floor_milter -t SOCKET-PATH     a blocking thread per connection
 *
 * Not a milter to use: it trusts the MTA, accepts every message and keeps
 * no state but a read buffer per connection. A packet longer than the
 * buffer ends the connection.
 */
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum { BUF = 1 << 18 }; /* body chunks are at most 64 KiB */

/* Protocol flags: no connect, HELO, MAIL, RCPT, headers, end of headers,
 * unknown or DATA step; SKIP is understood. */
#define FLAGS (0x01u | 0x02u | 0x04u | 0x08u | 0x20u | 0x40u | 0x100u | 0x200u | 0x400u)
#define ADD_HEADERS 0x01u

struct conn {
    int fd;
    size_t len; /* bytes held in buf */
    char buf[BUF];
};

static size_t put(char *out, size_t at, char cmd, const void *data, uint32_t n) {
    uint32_t be = htonl(n + 1);
    memcpy(out + at, &be, 4);
    out[at + 4] = cmd;
    memcpy(out + at + 5, data, n);
    return at + 5 + n;
}

/* Answers every whole packet in c->buf; -1 when the connection is to end. */
static int answer(struct conn *c) {
    static const char header[] = "X-PGP-Gate\0encrypted";
    char out[4096];
    size_t at = 0, o = 0;
    while (c->len - at >= 4) {
        uint32_t n;
        memcpy(&n, c->buf + at, 4);
        n = ntohl(n);
        if (n == 0 || n > BUF - 4) return -1;
        if (c->len - at - 4 < n) break;
        char cmd = c->buf[at + 4];
        at += 4 + n;
        switch (cmd) {
        case 'O': {
            uint32_t v[3] = {htonl(6), htonl(ADD_HEADERS), htonl(FLAGS)};
            o = put(out, o, 'O', v, sizeof v);
            break;
        }
        case 'D': /* macros: no reply */
        case 'A': /* abort: no reply */
        case 'K':
            break;
        case 'B':
            o = put(out, o, 's', "", 0);
            break;
        case 'E':
            o = put(out, o, 'h', header, sizeof header);
            o = put(out, o, 'a', "", 0);
            break;
        case 'Q':
            return -1;
        default:
            o = put(out, o, 'c', "", 0);
        }
        if (o > sizeof out - 64) return -1;
    }
    memmove(c->buf, c->buf + at, c->len - at);
    c->len -= at;
    /* Replies are small; a socket that cannot take them at once is dead. */
    return o && write(c->fd, out, o) != (ssize_t)o ? -1 : 0;
}

static void *blocking(void *arg) {
    struct conn *c = arg;
    for (;;) {
        ssize_t r = read(c->fd, c->buf + c->len, BUF - c->len);
        if (r <= 0) break;
        c->len += r;
        if (answer(c)) break;
    }
    close(c->fd);
    free(c);
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc == 3 && strcmp(argv[1], "-t") == 0;
    if (argc != 2 + threads) {
        fprintf(stderr, "usage: %s [-t] SOCKET-PATH\n", argv[0]);
        return 2;
    }
    const char *path = argv[argc - 1];
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) {
        fprintf(stderr, "socket path too long\n");
        return 2;
    }
    strcpy(a.sun_path, path);
    unlink(path);
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096)) {
        perror(path);
        return 1;
    }
    if (threads) {
        for (;;) {
            int fd = accept(ls, NULL, NULL);
            if (fd < 0) continue;
            struct conn *c = malloc(sizeof *c);
            c->fd = fd;
            c->len = 0;
            pthread_t t;
            if (pthread_create(&t, NULL, blocking, c)) {
                close(fd);
                free(c);
                continue;
            }
            pthread_detach(t);
        }
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    fcntl(ls, F_SETFL, O_NONBLOCK);
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    c = malloc(sizeof *c);
                    c->fd = fd;
                    c->len = 0;
                    struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                }
                continue;
            }
            /* Level-triggered: one read per readiness; bytes left in the
             * socket make the next epoll_wait return it again. */
            ssize_t r = read(c->fd, c->buf + c->len, BUF - c->len);
            if (r < 0 && errno == EAGAIN) continue;
            int end = r <= 0 || (c->len += r, answer(c));
            if (end) {
                close(c->fd); /* also leaves the epoll set */
                free(c);
            }
        }
    }
}

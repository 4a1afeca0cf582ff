/* Open-loop HTTP/1.1 load generator for benchmarks/api_latency.py.
 *
 * Sends pre-encoded requests at a fixed rate over keep-alive connections and prints one line per
 * response: when it was due (seconds from the start) and its latency (microseconds, counted from when the request was due, so a slow server cannot hide its
 * queueing: no coordinated omission). Written in C so that the client adds no pauses of its own:
 * a Python client on the same two cores showed a p99 of 4-16 ms against a server that answered a
 * canned response in 0.4 ms.
 *
 *   loadgen HOST PORT RATE REQUESTS_FILE > latencies.txt
 *
 * REQUESTS_FILE holds the requests back to back, each preceded by its length as a 4-byte
 * little-endian integer. Exit status 0 when every request got a 200, 1 otherwise (counts on stderr).
 * A request due while MAX_CONNS are already waiting for answers is not sent and counted as such (an
 * overloaded server): the run goes on, so a long soak reports its overload instead of ending.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define BUF 65536

typedef struct {
    int fd;
    int busy;
    double due, last; /* when the request was due; when the connection was last answered */
    size_t have;
    char buf[BUF + 1];
} conn_t;

static conn_t conns[MAX_CONNS];
static int nconns, *idle, nidle;
static struct sockaddr_in addr;
static int ep;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

/* A new connection, or -1 when MAX_CONNS are open already (all of them waiting for answers). */
static int open_conn(void) {
    if (nconns == MAX_CONNS) return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    conn_t *c = &conns[nconns];
    c->fd = fd;
    c->busy = 0;
    c->last = now();
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)nconns};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    return nconns++;
}

/* An idle connection to send on. One idle for over 2 s is closed instead: the server may be closing it
 * at that very moment (uvicorn drops keep-alive connections after 5 s), and a request sent into that
 * race would be lost with it. */
static int take_conn(double t) {
    while (nidle) {
        int k = idle[--nidle];
        if (t - conns[k].last < 2.0) return k;
        close(conns[k].fd);
    }
    return open_conn();
}

static void send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EAGAIN) continue;
        if (w < 0) die("write");
        p += w;
        n -= (size_t)w;
    }
}

/* The length of a complete response at the start of buf, or 0 if more bytes are needed. */
static size_t complete(const char *buf, size_t have, int *status) {
    const char *end = memmem(buf, have, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t head = (size_t)(end - buf) + 4, length = 0;
    *status = atoi(buf + 9);
    for (const char *line = buf; line < end; line = strstr(line, "\r\n") + 2)
        if (strncasecmp(line, "content-length:", 15) == 0) length = strtoul(line + 15, NULL, 10);
    return have >= head + length ? head + length : 0;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: loadgen HOST PORT RATE REQUESTS_FILE\n");
        return 2;
    }
    double rate = atof(argv[3]);
    FILE *f = fopen(argv[4], "rb");
    if (!f) die(argv[4]);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    char *data = malloc((size_t)size);
    if (fread(data, 1, (size_t)size, f) != (size_t)size) die("read");
    fclose(f);
    size_t n = 0, cap = 1024, *offset = malloc(cap * sizeof *offset);
    for (long at = 0; at < size; n++) {
        if (n == cap) offset = realloc(offset, (cap *= 2) * sizeof *offset);
        offset[n] = (size_t)at;
        at += 4 + (long)(*(uint32_t *)(data + at));
    }

    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) die("address");
    if ((ep = epoll_create1(0)) < 0) die("epoll_create1");
    idle = malloc(MAX_CONNS * sizeof *idle);
    for (int i = 0; i < 16; i++) idle[nidle++] = open_conn(); /* connect before the clock starts */
    int timer = timerfd_create(CLOCK_MONOTONIC, 0);
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(ep, EPOLL_CTL_ADD, timer, &tev);

    double *latency = malloc(n * sizeof *latency), *due = malloc(n * sizeof *due), start = now() + 0.01;
    size_t sent = 0, done = 0, failed = 0, unsent = 0, cut = 0;
    struct epoll_event events[64];
    while (done < n) {
        double t = now();
        for (; sent < n && start + sent / rate <= t; sent++) {
            int k = take_conn(t);
            if (k < 0) { /* every connection is waiting for an answer: counted, not sent */
                unsent++;
                done++;
                continue;
            }
            conn_t *c = &conns[k];
            c->busy = 1;
            c->due = start + sent / rate;
            c->have = 0;
            send_all(c->fd, data + offset[sent] + 4, *(uint32_t *)(data + offset[sent]));
        }
        if (sent < n) {
            double next = start + sent / rate;
            struct itimerspec when = {.it_value = {(time_t)next, (long)((next - (time_t)next) * 1e9)}};
            timerfd_settime(timer, TFD_TIMER_ABSTIME, &when, NULL);
        } else if (now() > start + n / rate + 30) {
            fprintf(stderr, "%zu requests unanswered after 30 s\n", n - done);
            failed += n - done;
            break;
        }
        int ready = epoll_wait(ep, events, 64, sent < n ? -1 : 1000);
        for (int e = 0; e < ready; e++) {
            uint32_t k = events[e].data.u32;
            if (k == UINT32_MAX) {
                uint64_t ticks;
                if (read(timer, &ticks, sizeof ticks) < 0) { /* spurious: nothing to do */ }
                continue;
            }
            conn_t *c = &conns[k];
            ssize_t r = read(c->fd, c->buf + c->have, BUF - c->have);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                close(c->fd);
                if (c->busy) { /* closed with a request in flight: a failure, and the slot reopened */
                    cut++;
                    failed++;
                    done++;
                    c->busy = 0;
                    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
                    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("reconnect");
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
                    c->fd = fd;
                    c->last = now();
                    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = k};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
                    idle[nidle++] = (int)k;
                    continue;
                }
                /* an idle keep-alive connection timed out: forget it */
                for (int i = 0; i < nidle; i++)
                    if (idle[i] == (int)k) idle[i] = idle[--nidle];
                continue;
            }
            c->have += (size_t)r;
            c->buf[c->have] = 0;
            int status = 0;
            if (!c->busy || !complete(c->buf, c->have, &status)) continue;
            size_t at = done - unsent - cut;
            due[at] = c->due - start;
            latency[at] = now() - c->due;
            done++;
            failed += status != 200;
            c->busy = 0;
            c->last = now();
            idle[nidle++] = (int)k;
        }
    }
    for (size_t i = 0; i < done - unsent - cut; i++) printf("%.3f %.1f\n", due[i], latency[i] * 1e6);
    fprintf(stderr, "%zu requests, %zu failed, %zu not sent (more than %d in flight), %zu cut, %d connections\n",
            n, failed, unsent, MAX_CONNS, cut, nconns);
    return failed || unsent ? 1 : 0;
}

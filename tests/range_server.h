/*
 * range_server — a small HTTP/1.1 file server on 127.0.0.1 (ephemeral port)
 * for download tests, header-only. fake_upstream.h sends C strings; this one
 * serves binary bodies and implements what resumable downloads need:
 * `Range: bytes=N-` answered with 206 + Content-Range (or 416 past the end),
 * and knobs to misbehave: ignore ranges, answer a different range, cut the
 * connection after K bytes, pause mid-body, answer a fixed status, redirect
 * /resolve/ paths to /cdn/ like Hugging Face, add headers (digests).
 * One connection at a time, Connection: close; every wait polls a pipe so
 * rs_stop() ends the thread at once. Each request's path, Range and
 * Authorization are recorded.
 */
#ifndef CONFAB_TESTS_RANGE_SERVER_H
#define CONFAB_TESTS_RANGE_SERVER_H

#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RS_MAX_REQ 16

typedef struct {
    /* configuration, set before rs_start */
    const char *body;
    size_t len;
    int status;           /* 0 = serve the body; else this status with a short text body */
    bool ignore_range;    /* always answer 200 with the whole body */
    long bad_range_shift; /* != 0: answer 206 with a Content-Range starting elsewhere */
    long cut_after; /* > 0: the first cut_times responses send this many body bytes, then close */
    int cut_times;
    long pause_after;             /* > 0: after this many body bytes ... */
    int pause_ms;                 /* ... wait this long before sending the rest */
    bool redirect;                /* paths containing /resolve/ answer 302 to /cdn/FILE */
    const char *redirect_headers; /* extra header lines on the 302 (\r\n-terminated) */
    const char *headers;          /* extra header lines on the body response */
    /* state */
    int fd, port, wake[2];
    pthread_t th;
    pthread_mutex_t mu;
    int n_req;
    char paths[RS_MAX_REQ][256];
    char ranges[RS_MAX_REQ][64]; /* "" when the request had no Range */
    char auth[RS_MAX_REQ][128];
} rs_server;

__attribute__((unused)) static int rs_wait(rs_server *s, int fd, int ms) {
    struct pollfd p[2] = {{s->wake[0], POLLIN, 0}, {fd, POLLIN, 0}};
    int n = poll(p, fd >= 0 ? 2 : 1, ms);
    if (n > 0 && (p[0].revents & POLLIN)) return -1;
    return n > 0 ? 1 : 0;
}

__attribute__((unused)) static bool rs_send(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0) return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

__attribute__((unused)) static void rs_header_copy(const char *req, const char *name, char *out,
                                                   size_t cap) {
    out[0] = 0;
    const char *h = strcasestr(req, name);
    if (!h) return;
    h += strlen(name);
    while (*h == ' ')
        h++;
    size_t n = strcspn(h, "\r\n");
    if (n >= cap) n = cap - 1;
    memcpy(out, h, n);
    out[n] = 0;
}

__attribute__((unused)) static void rs_serve(rs_server *s, int c) {
    char req[8192];
    size_t len = 0;
    for (;;) {
        if (rs_wait(s, c, 3000) != 1) return;
        ssize_t r = recv(c, req + len, sizeof req - 1 - len, 0);
        if (r <= 0) return;
        len += (size_t)r;
        req[len] = 0;
        if (strstr(req, "\r\n\r\n") || len >= sizeof req - 1) break;
    }
    char path[256] = "", range[64] = "", auth[128] = "";
    sscanf(req, "GET %255s", path);
    rs_header_copy(req, "\r\nRange:", range, sizeof range);
    rs_header_copy(req, "\r\nAuthorization:", auth, sizeof auth);
    pthread_mutex_lock(&s->mu);
    int idx = s->n_req++;
    if (idx < RS_MAX_REQ) {
        snprintf(s->paths[idx], sizeof s->paths[idx], "%s", path);
        snprintf(s->ranges[idx], sizeof s->ranges[idx], "%s", range);
        snprintf(s->auth[idx], sizeof s->auth[idx], "%s", auth);
    }
    pthread_mutex_unlock(&s->mu);

    char h[2048];
    int n;
    if (s->redirect && strstr(path, "/resolve/")) {
        const char *file = strrchr(path, '/');
        n = snprintf(h, sizeof h,
                     "HTTP/1.1 302 Found\r\nLocation: /cdn%s\r\n%sContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n",
                     file, s->redirect_headers ? s->redirect_headers : "");
        rs_send(c, h, (size_t)n);
        return;
    }
    if (s->status) {
        const char *msg = "no such thing\n";
        n = snprintf(h, sizeof h,
                     "HTTP/1.1 %d X\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     s->status, strlen(msg), msg);
        rs_send(c, h, (size_t)n);
        return;
    }
    size_t start = 0;
    bool partial = false;
    if (range[0] && !s->ignore_range) {
        unsigned long long a;
        if (sscanf(range, "bytes=%llu-", &a) == 1) {
            if (a >= s->len) {
                n = snprintf(h, sizeof h,
                             "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */%zu\r\n"
                             "Content-Length: 0\r\nConnection: close\r\n\r\n",
                             s->len);
                rs_send(c, h, (size_t)n);
                return;
            }
            start = (size_t)a;
            partial = true;
        }
    }
    size_t send_from = start;
    if (partial) {
        long shown = (long)start + s->bad_range_shift;
        if (shown < 0) shown = 0;
        send_from = (size_t)shown;
        n = snprintf(h, sizeof h,
                     "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes %ld-%zu/%zu\r\n"
                     "Content-Length: %zu\r\n%sConnection: close\r\n\r\n",
                     shown, s->len - 1, s->len, s->len - send_from, s->headers ? s->headers : "");
    } else {
        n = snprintf(h, sizeof h,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: %zu\r\n%sConnection: close\r\n\r\n",
                     s->len, s->headers ? s->headers : "");
    }
    if (!rs_send(c, h, (size_t)n)) return;
    size_t todo = s->len - send_from;
    pthread_mutex_lock(&s->mu);
    bool cut = s->cut_after > 0 && s->cut_times > 0;
    if (cut) s->cut_times--;
    pthread_mutex_unlock(&s->mu);
    if (cut && (size_t)s->cut_after < todo) todo = (size_t)s->cut_after;
    /* In pieces, so the client sees progress and a cancel can land mid-body. */
    const char *p = s->body + send_from;
    size_t sent = 0;
    while (todo) {
        size_t k = todo < 65536 ? todo : 65536;
        if (s->pause_after > 0 && sent < (size_t)s->pause_after &&
            sent + k > (size_t)s->pause_after)
            k = (size_t)s->pause_after - sent;
        if (!rs_send(c, p, k)) return;
        p += k;
        sent += k;
        todo -= k;
        /* A client that hangs up during the pause ends it (readable = EOF). */
        if (s->pause_after > 0 && sent == (size_t)s->pause_after && rs_wait(s, c, s->pause_ms) != 0)
            return;
    }
}

__attribute__((unused)) static void *rs_main(void *arg) {
    rs_server *s = arg;
    for (;;) {
        if (rs_wait(s, s->fd, -1) < 0) break;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0) continue;
        rs_serve(s, c);
        shutdown(c, SHUT_RDWR);
        close(c);
    }
    return NULL;
}

__attribute__((unused)) static void rs_start(rs_server *s) {
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->fd, 16), 0);
    socklen_t al = sizeof a;
    getsockname(s->fd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pipe(s->wake), 0);
    pthread_mutex_init(&s->mu, NULL);
    pthread_create(&s->th, NULL, rs_main, s);
}

__attribute__((unused)) static void rs_stop(rs_server *s) {
    if (write(s->wake[1], "x", 1) != 1) abort();
    pthread_join(s->th, NULL);
    close(s->fd);
    close(s->wake[0]);
    close(s->wake[1]);
    pthread_mutex_destroy(&s->mu);
}

#endif

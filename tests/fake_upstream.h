/*
 * fake_upstream — a scripted HTTP/1.1 server on 127.0.0.1 (ephemeral port)
 * for provider tests, header-only so each test binary can include it.
 *
 * One thread accepts connections one at a time, reads a request (head and
 * Content-Length body), counts it, keeps a copy, and answers with the next
 * entry of its script (the last entry repeats). An entry can delay before
 * answering (to trip timeouts), send SSE events with pauses between them,
 * stall after the body (idle timeout), declare a longer Content-Length than
 * it sends (a cut connection), or send arbitrary bytes. Every wait polls a
 * pipe so fu_stop() ends the thread at once; nothing outlives the test.
 */
#ifndef CONFAB_TESTS_FAKE_UPSTREAM_H
#define CONFAB_TESTS_FAKE_UPSTREAM_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int status;               /* 0 = 200 */
    const char *content_type; /* NULL = none */
    const char *headers;      /* extra header lines, each ending in \r\n */
    const char *body;         /* sent as is; SSE events split at blank lines when event_gap_ms */
    int delay_ms;             /* before the response head */
    int event_gap_ms;         /* between SSE events */
    int stall_ms;             /* after the body, before closing */
    long declared_len;        /* > 0: Content-Length to announce (may exceed the body) */
    bool content_length;      /* announce the real Content-Length */
} fu_response;

#define FU_MAX_SCRIPT 8
#define FU_REQ_MAX 65536

typedef struct {
    int fd, port;
    int wake[2];
    pthread_t th;
    pthread_mutex_t mu;
    fu_response script[FU_MAX_SCRIPT];
    int n_script;
    int n_requests;        /* guarded by mu */
    char last[FU_REQ_MAX]; /* last request, head and body (guarded by mu) */
} fu_server;

/* Waits up to MS for FD to be readable or the stop pipe; returns 1 readable,
 * 0 timeout, -1 stopping. */
__attribute__((unused)) static int fu_wait(fu_server *s, int fd, int ms) {
    struct pollfd p[2] = {{s->wake[0], POLLIN, 0}, {fd, POLLIN, 0}};
    int n = poll(p, fd >= 0 ? 2 : 1, ms);
    if (n > 0 && (p[0].revents & POLLIN)) return -1;
    return n > 0 ? 1 : 0;
}

__attribute__((unused)) static bool fu_send(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

__attribute__((unused)) static void fu_serve(fu_server *s, int c) {
    char buf[FU_REQ_MAX];
    size_t len = 0;
    long clen = -1;
    size_t head = 0;
    for (;;) {
        if (fu_wait(s, c, 2000) != 1) return;
        ssize_t r = recv(c, buf + len, sizeof buf - 1 - len, 0);
        if (r <= 0) return;
        len += (size_t)r;
        buf[len] = 0;
        if (!head) {
            char *e = strstr(buf, "\r\n\r\n");
            if (!e) continue;
            head = (size_t)(e - buf) + 4;
            char *cl = strcasestr(buf, "\r\ncontent-length:");
            clen = cl && cl < e ? strtol(cl + 17, NULL, 10) : 0;
        }
        if (head && len >= head + (size_t)clen) break;
        if (len >= sizeof buf - 1) break;
    }
    pthread_mutex_lock(&s->mu);
    int idx = s->n_requests < s->n_script ? s->n_requests : s->n_script - 1;
    s->n_requests++;
    memcpy(s->last, buf, len + 1);
    fu_response rs = s->script[idx < 0 ? 0 : idx];
    pthread_mutex_unlock(&s->mu);
    if (rs.delay_ms && fu_wait(s, -1, rs.delay_ms) < 0) return;
    char h[1024];
    const char *body = rs.body ? rs.body : "";
    int n = snprintf(h, sizeof h, "HTTP/1.1 %d X\r\n%s%s%s%sConnection: close\r\n",
                     rs.status ? rs.status : 200, rs.content_type ? "Content-Type: " : "",
                     rs.content_type ? rs.content_type : "", rs.content_type ? "\r\n" : "",
                     rs.headers ? rs.headers : "");
    if (rs.declared_len > 0)
        n += snprintf(h + n, sizeof h - (size_t)n, "Content-Length: %ld\r\n", rs.declared_len);
    else if (rs.content_length)
        n += snprintf(h + n, sizeof h - (size_t)n, "Content-Length: %zu\r\n", strlen(body));
    n += snprintf(h + n, sizeof h - (size_t)n, "\r\n");
    if (!fu_send(c, h, (size_t)n)) return;
    if (rs.event_gap_ms) {
        const char *p = body;
        while (*p) {
            const char *e = strstr(p, "\n\n");
            size_t k = e ? (size_t)(e - p) + 2 : strlen(p);
            if (!fu_send(c, p, k)) return;
            p += k;
            if (*p && fu_wait(s, -1, rs.event_gap_ms) < 0) return;
        }
    } else if (!fu_send(c, body, strlen(body))) {
        return;
    }
    if (rs.stall_ms) fu_wait(s, -1, rs.stall_ms);
}

__attribute__((unused)) static void *fu_main(void *arg) {
    fu_server *s = arg;
    for (;;) {
        int w = fu_wait(s, s->fd, -1);
        if (w < 0) break;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0) continue;
        fu_serve(s, c);
        shutdown(c, SHUT_RDWR);
        close(c);
    }
    return NULL;
}

/* Starts a server answering with SCRIPT (N entries, N >= 1). */
__attribute__((unused)) static fu_server *fu_start(const fu_response *script, int n) {
    fu_server *s = calloc(1, sizeof *s);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(s->fd, (struct sockaddr *)&a, sizeof a) || listen(s->fd, 16)) {
        perror("fu bind");
        abort();
    }
    socklen_t al = sizeof a;
    getsockname(s->fd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    if (pipe(s->wake)) abort();
    pthread_mutex_init(&s->mu, NULL);
    s->n_script = n < FU_MAX_SCRIPT ? n : FU_MAX_SCRIPT;
    memcpy(s->script, script, sizeof *script * (size_t)s->n_script);
    pthread_create(&s->th, NULL, fu_main, s);
    return s;
}

__attribute__((unused)) static void fu_stop(fu_server *s) {
    if (!s) return;
    if (write(s->wake[1], "x", 1) != 1) abort();
    pthread_join(s->th, NULL);
    close(s->fd);
    close(s->wake[0]);
    close(s->wake[1]);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

__attribute__((unused)) static int fu_requests(fu_server *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->n_requests;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* Copy of the last request (caller frees). */
__attribute__((unused)) static char *fu_last(fu_server *s) {
    pthread_mutex_lock(&s->mu);
    char *r = strdup(s->last);
    pthread_mutex_unlock(&s->mu);
    return r;
}

/* "http://127.0.0.1:PORT" + SUFFIX into a static-per-call buffer OUT. */
__attribute__((unused)) static const char *fu_url(fu_server *s, const char *suffix, char out[128]) {
    snprintf(out, 128, "http://127.0.0.1:%d%s", s->port, suffix ? suffix : "");
    return out;
}

/* A port with nothing listening (bound then closed). */
__attribute__((unused)) static int fu_dead_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof a);
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    return ntohs(a.sin_port);
}

/* ------------------------------------------------ documented bodies */

/* OpenAI chat.completion.chunk stream with include_usage (the usage chunk has
 * empty choices), as in the API reference. */
#define FU_OPENAI_STREAM                                                                           \
    "data: "                                                                                       \
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{"    \
    "\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n"        \
    "data: "                                                                                       \
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{"    \
    "\"content\":\"Hello\"},\"finish_reason\":null}],\"usage\":null}\n\n"                          \
    "data: "                                                                                       \
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{"    \
    "\"content\":\", w\xC3\xB6rld\"},\"finish_reason\":null}],\"usage\":null}\n\n"                 \
    "data: "                                                                                       \
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},"  \
    "\"finish_reason\":\"stop\"}],\"usage\":null}\n\n"                                             \
    "data: "                                                                                       \
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_"      \
    "tokens\":12,\"completion_tokens\":4,\"total_tokens\":16,\"prompt_tokens_details\":{\"cached_" \
    "tokens\":8}}}\n\n"                                                                            \
    "data: [DONE]\n\n"

#define FU_OPENAI_JSON                                                                             \
    "{\"id\":\"c2\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":{"        \
    "\"role\":\"assistant\",\"content\":\"Hi "                                                     \
    "there\"},\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":9,\"completion_"         \
    "tokens\":2,\"total_tokens\":11}}"

/* Anthropic Messages stream (docs' event flow, with a ping). */
#define FU_ANTHROPIC_STREAM                                                                        \
    "event: message_start\ndata: "                                                                 \
    "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":"     \
    "\"assistant\",\"content\":[],\"model\":\"claude-3-5-haiku-20241022\",\"stop_reason\":null,"   \
    "\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":100,\"cache_creation_input_"       \
    "tokens\":0,\"output_tokens\":1}}}\n\n"                                                        \
    "event: content_block_start\ndata: "                                                           \
    "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":" \
    "\"\"}}\n\n"                                                                                   \
    "event: ping\ndata: {\"type\":\"ping\"}\n\n"                                                   \
    "event: content_block_delta\ndata: "                                                           \
    "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"   \
    "\"Bonjour\"}}\n\n"                                                                            \
    "event: content_block_delta\ndata: "                                                           \
    "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"   \
    "\" !\"}}\n\n"                                                                                 \
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"           \
    "event: message_delta\ndata: "                                                                 \
    "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\",\"stop_sequence\":"     \
    "null},\"usage\":{\"output_tokens\":15}}\n\n"                                                  \
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"

/* Cohere v2 chat stream. */
#define FU_COHERE_STREAM                                                                           \
    "event: message-start\ndata: "                                                                 \
    "{\"id\":\"m1\",\"type\":\"message-start\",\"delta\":{\"message\":{\"role\":\"assistant\","    \
    "\"content\":[],\"tool_plan\":\"\",\"tool_calls\":[],\"citations\":[]}}}\n\n"                  \
    "event: content-start\ndata: "                                                                 \
    "{\"type\":\"content-start\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"type\":"       \
    "\"text\",\"text\":\"\"}}}}\n\n"                                                               \
    "event: content-delta\ndata: "                                                                 \
    "{\"type\":\"content-delta\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"text\":"       \
    "\"Hola\"}}}}\n\n"                                                                             \
    "event: content-delta\ndata: "                                                                 \
    "{\"type\":\"content-delta\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"text\":\" "    \
    "mundo\"}}}}\n\n"                                                                              \
    "event: content-end\ndata: {\"type\":\"content-end\",\"index\":0}\n\n"                         \
    "event: message-end\ndata: "                                                                   \
    "{\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"COMPLETE\",\"usage\":{\"billed_"     \
    "units\":{\"input_tokens\":7,\"output_tokens\":3},\"tokens\":{\"input_tokens\":70,\"output_"   \
    "tokens\":3}}}}\n\n"

#endif

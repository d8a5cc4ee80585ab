/* Tests for src/app/gen: the generation event log, its registry, and
 * producers and subscribers on several threads. */
#include "app/gen.h"
#include "app/gen_chat.h"
#include "base/clock.h"
#include "base/sb.h"
#include "testutil.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static void events_are_numbered_from_one_and_readable_from_any_point(void **st) {
    (void)st;
    gen_registry *r = gen_registry_new(60000);
    gen *g = gen_start(r, "local", "s1", NULL);
    assert_non_null(g);
    assert_int_equal(strncmp(gen_id(g), "gen_", 4), 0);
    assert_int_equal(strlen(gen_id(g)), 28);
    assert_int_equal(gen_delta(g, "Hel", 3), 1);
    assert_int_equal(gen_delta(g, "lo \"x\"", 6), 2);
    assert_int_equal(gen_usage(g, 5, 2, 0.001, true), 3);
    assert_int_equal(gen_done(g, "stop", "m", "local", false), 4);
    assert_int_equal(gen_get_state(g), GEN_DONE);

    const gen_event *evs[8];
    size_t n;
    assert_int_equal(gen_wait(g, 1, 0, evs, 8, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(evs[0]->seq, 2);
    assert_int_equal(evs[0]->type, GEN_EV_DELTA);
    json_t *j = json_loads(evs[0]->json, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "text")), "lo \"x\"");
    json_decref(j);
    j = json_loads(evs[1]->json, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "total_tokens")), 7);
    assert_true(json_is_true(json_object_get(j, "estimated")));
    json_decref(j);
    assert_int_equal(evs[2]->type, GEN_EV_DONE);
    /* Nothing after the last event of a finished generation: complete. */
    assert_int_equal(gen_wait(g, 4, 100, evs, 8, &n), CF_ECLOSED);
    assert_int_equal(n, 0);
    /* Appending after the end is refused. */
    assert_int_equal(gen_delta(g, "late", 4), CF_ECLOSED);
    gen_unref(g);
    gen_registry_free(r);
}

static void payload_that_is_not_a_json_object_is_rejected(void **st) {
    (void)st;
    gen_registry *r = gen_registry_new(0);
    gen *g = gen_start(r, NULL, NULL, NULL);
    assert_int_equal(gen_append(g, GEN_EV_INFO, "[1,2]"), CF_EINVAL);
    assert_int_equal(gen_append(g, GEN_EV_INFO, "{\"a\":"), CF_EINVAL);
    assert_int_equal(gen_append(g, GEN_EV_INFO, "\"x\""), CF_EINVAL);
    assert_int_equal(gen_last_seq(g), 0);
    assert_int_equal(gen_info(g, "budget_warning", "80% used"), 1);
    gen_unref(g);
    gen_registry_free(r);
}

typedef struct {
    gen *g;
    int rc;
    double waited_ms;
    atomic_bool done;
} waiter_arg;

static void *long_waiter(void *p) {
    waiter_arg *a = p;
    const gen_event *evs[4];
    size_t n;
    double t0 = clock_mono_ms();
    a->rc = gen_wait(a->g, 0, 10000, evs, 4, &n);
    a->waited_ms = clock_mono_ms() - t0;
    atomic_store(&a->done, true);
    return NULL;
}

static void wait_times_out_when_nothing_arrives_and_wake_ends_it_early(void **st) {
    (void)st;
    gen_registry *r = gen_registry_new(0);
    gen *g = gen_start(r, NULL, NULL, NULL);
    const gen_event *evs[4];
    size_t n;
    double t0 = clock_mono_ms();
    assert_int_equal(gen_wait(g, 0, 50, evs, 4, &n), CF_ETIMEOUT);
    assert_true(clock_mono_ms() - t0 >= 45);
    assert_int_equal(gen_wait(g, 0, 0, evs, 4, &n), CF_ETIMEOUT);
    waiter_arg wa = {.g = g};
    pthread_t t;
    pthread_create(&t, NULL, long_waiter, &wa);
    /* The waiter may not be waiting yet on a loaded machine: wake until it
     * returns (a wake before its wait starts is not seen by that wait). */
    while (!atomic_load(&wa.done)) {
        gen_wake(g);
        clock_sleep_ms(20);
    }
    pthread_join(t, NULL);
    assert_int_equal(wa.rc, CF_ETIMEOUT);
    assert_true(wa.waited_ms < 5000);
    gen_unref(g);
    gen_registry_free(r);
}

/* ---- threads ---- */

#define N_DELTAS 400

typedef struct {
    gen *g;
    int delay_every; /* sleep 1 ms every N deltas, so subscribers interleave */
    bool honour_cancel;
    int produced;
} producer_arg;

static void *producer(void *p) {
    producer_arg *a = p;
    char buf[32];
    for (int i = 0; i < N_DELTAS; i++) {
        if (a->honour_cancel && gen_cancelled(a->g)) {
            gen_done(a->g, "cancelled", "m", "local", false);
            return NULL;
        }
        int n = snprintf(buf, sizeof buf, "%d,", i);
        if (gen_delta(a->g, buf, (size_t)n) < 0) return NULL;
        a->produced++;
        if (a->delay_every && i % a->delay_every == 0) clock_sleep_ms(1);
    }
    gen_done(a->g, "stop", "m", "local", false);
    return NULL;
}

typedef struct {
    gen_registry *r;
    char id[32];
    int join_after_ms;
    uint64_t start_after; /* resume point, like Last-Event-ID */
    sb_t text;
    uint64_t first_seq, last_seq;
    bool saw_done, in_order;
} subscriber_arg;

static void *subscriber(void *p) {
    subscriber_arg *a = p;
    clock_sleep_ms((uint64_t)a->join_after_ms);
    gen *g = gen_get(a->r, a->id);
    if (!g) return NULL;
    a->in_order = true;
    uint64_t after = a->start_after;
    for (;;) {
        const gen_event *evs[16];
        size_t n;
        int rc = gen_wait(g, after, 1000, evs, 16, &n);
        if (rc == CF_ECLOSED) break;
        if (rc == CF_ETIMEOUT) continue;
        for (size_t i = 0; i < n; i++) {
            if (evs[i]->seq != after + 1) a->in_order = false;
            if (!a->first_seq) a->first_seq = evs[i]->seq;
            after = evs[i]->seq;
            if (evs[i]->type == GEN_EV_DELTA) {
                json_t *j = json_loads(evs[i]->json, 0, NULL);
                sb_append(&a->text, json_string_value(json_object_get(j, "text")));
                json_decref(j);
            } else if (evs[i]->type == GEN_EV_DONE) {
                a->saw_done = true;
            }
        }
    }
    a->last_seq = after;
    gen_unref(g);
    return NULL;
}

static void late_and_resuming_subscribers_each_see_every_event_in_order(void **st) {
    (void)st;
    gen_registry *r = gen_registry_new(60000);
    gen *g = gen_start(r, "k", "sess", NULL);
    sb_t expect = {0};
    for (int i = 0; i < N_DELTAS; i++)
        sb_printf(&expect, "%d,", i);

    enum { NS = 4 };
    subscriber_arg subs[NS];
    memset(subs, 0, sizeof subs);
    int joins[NS] = {0, 5, 30, 1000}; /* the last joins after the end */
    for (int i = 0; i < NS; i++) {
        subs[i].r = r;
        snprintf(subs[i].id, sizeof subs[i].id, "%s", gen_id(g));
        subs[i].join_after_ms = joins[i];
    }
    pthread_t pt, ts[NS + 1];
    producer_arg pa = {.g = g, .delay_every = 20};
    for (int i = 0; i < NS; i++)
        pthread_create(&ts[i], NULL, subscriber, &subs[i]);
    /* A reconnecting client that had seen events 1..100. */
    subscriber_arg resumed = {.r = r, .join_after_ms = 10, .start_after = 100};
    snprintf(resumed.id, sizeof resumed.id, "%s", gen_id(g));
    pthread_create(&ts[NS], NULL, subscriber, &resumed);
    pthread_create(&pt, NULL, producer, &pa);
    pthread_join(pt, NULL);
    for (int i = 0; i <= NS; i++)
        pthread_join(ts[i], NULL);

    for (int i = 0; i < NS; i++) {
        assert_true(subs[i].in_order);
        assert_true(subs[i].saw_done);
        assert_int_equal(subs[i].first_seq, 1);
        assert_int_equal(subs[i].last_seq, N_DELTAS + 1);
        assert_string_equal(sb_str(&subs[i].text), expect.data);
        sb_free(&subs[i].text);
    }
    assert_int_equal(resumed.first_seq, 101);
    assert_true(resumed.in_order);
    assert_true(resumed.saw_done);
    /* Deltas 101..400 are numbers 100..399. */
    assert_int_equal(strncmp(sb_str(&resumed.text), "100,101,", 8), 0);
    sb_free(&resumed.text);
    sb_free(&expect);
    gen_unref(g);
    gen_registry_free(r);
}

static void cancel_stops_a_running_producer_and_marks_the_generation_cancelled(void **st) {
    (void)st;
    gen_registry *r = gen_registry_new(60000);
    gen *g = gen_start(r, NULL, NULL, NULL);
    producer_arg pa = {.g = g, .delay_every = 1, .honour_cancel = true};
    pthread_t pt;
    pthread_create(&pt, NULL, producer, &pa);
    /* Cancel once a few deltas are out. */
    const gen_event *evs[4];
    size_t n;
    assert_int_equal(gen_wait(g, 3, 5000, evs, 4, &n), 0);
    assert_int_equal(gen_cancel(g), 0);
    assert_true(gen_cancelled(g));
    pthread_join(pt, NULL);
    assert_true(pa.produced < N_DELTAS);
    assert_int_equal(gen_get_state(g), GEN_CANCELLED);
    uint64_t last = gen_last_seq(g);
    assert_int_equal(gen_wait(g, last - 1, 0, evs, 4, &n), 0);
    assert_int_equal(evs[0]->type, GEN_EV_DONE);
    assert_non_null(strstr(evs[0]->json, "\"cancelled\""));
    /* Cancelling a finished generation says so. */
    assert_int_equal(gen_cancel(g), CF_ECLOSED);
    gen_unref(g);
    gen_registry_free(r);
}

static void params_are_validated_merged_and_versioned(void **st) {
    (void)st;
    gen_registry *r = gen_registry_new(0);
    gen *g = gen_start(r, NULL, NULL, NULL);
    gen_params p = {0}, cur;
    assert_int_equal(gen_get_params(g, &cur), 0);
    cf_err err = {0};
    p.has_temperature = true;
    p.temperature = 3.5;
    assert_int_equal(gen_set_params(g, &p, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "temperature"));
    p.temperature = 0.2;
    assert_int_equal(gen_set_params(g, &p, &err), 0);
    memset(&p, 0, sizeof p);
    p.has_top_p = true;
    p.top_p = 0;
    assert_int_equal(gen_set_params(g, &p, &err), CF_EINVAL);
    p.top_p = 0.9;
    snprintf(p.granularity, sizeof p.granularity, "paragraph");
    assert_int_equal(gen_set_params(g, &p, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "granularity"));
    snprintf(p.granularity, sizeof p.granularity, "word");
    assert_int_equal(gen_set_params(g, &p, &err), 0);
    assert_int_equal(gen_get_params(g, &cur), 2);
    assert_true(cur.has_temperature && cur.has_top_p);
    assert_true(cur.temperature == 0.2 && cur.top_p == 0.9);
    assert_string_equal(cur.granularity, "word");
    gen_error(g, "upstream", "boom");
    assert_int_equal(gen_get_state(g), GEN_ERROR);
    assert_int_equal(gen_set_params(g, &p, &err), CF_ECLOSED);
    gen_unref(g);
    gen_registry_free(r);
}

static void registry_finds_by_id_and_session_and_expires_finished_ones(void **st) {
    (void)st;
    gen_registry *r = gen_registry_new(50);
    gen *a = gen_start(r, "o", "sess", NULL);
    gen *b = gen_start(r, "o", "sess", NULL);
    gen *c = gen_start(r, "o", "other", NULL);
    assert_string_not_equal(gen_id(a), gen_id(b));
    gen *f = gen_for_session(r, "sess");
    assert_ptr_equal(f, b); /* newest is current */
    gen_unref(f);
    f = gen_get(r, gen_id(a));
    assert_ptr_equal(f, a);
    gen_unref(f);
    assert_null(gen_get(r, "gen_nope"));
    assert_null(gen_for_session(r, "none"));
    assert_int_equal(gen_registry_count(r), 3);
    assert_int_equal(gen_registry_running(r), 3);

    gen_done(a, "stop", NULL, NULL, false);
    assert_int_equal(gen_registry_sweep(r), 0); /* not expired yet */
    clock_sleep_ms(70);
    assert_int_equal(gen_registry_sweep(r), 1);
    assert_null(gen_get(r, gen_id(a)));
    /* Our own reference keeps the expired generation readable. */
    assert_int_equal(gen_last_seq(a), 1);
    assert_int_equal(gen_registry_cancel_all(r), 2);
    assert_true(gen_cancelled(b) && gen_cancelled(c));
    assert_int_equal(gen_registry_running(r), 2); /* until producers end them */
    gen_unref(a);
    gen_unref(b);
    gen_unref(c);
    gen_registry_free(r);
}

typedef struct {
    int n_events, n_deltas;
    uint64_t last_seq;
} obs_counts;

static void count_obs(void *ctx, gen *g, const gen_event *ev) {
    (void)g;
    obs_counts *c = ctx;
    c->n_events++;
    if (ev->type == GEN_EV_DELTA) c->n_deltas++;
    c->last_seq = ev->seq;
}

static void observer_sees_every_appended_event(void **st) {
    (void)st;
    gen_registry *r = gen_registry_new(0);
    obs_counts oc = {0};
    gen_registry_set_observer(r, count_obs, &oc);
    gen *g = gen_start(r, NULL, NULL, NULL);
    gen_delta(g, "a", 1);
    gen_delta(g, "b", 1);
    gen_done(g, "stop", NULL, NULL, false);
    gen_delta(g, "c", 1); /* refused: not observed */
    assert_int_equal(oc.n_events, 3);
    assert_int_equal(oc.n_deltas, 2);
    assert_int_equal(oc.last_seq, 3);
    gen_unref(g);
    gen_registry_free(r);
}

static void bump(void *ud) { (*(int *)ud)++; }

static void cancel_watcher_runs_once_and_at_once_when_already_cancelled(void **st) {
    (void)st;
    gen_registry *r = gen_registry_new(0);
    gen *g = gen_start(r, NULL, NULL, NULL);
    int calls = 0;
    gen_on_cancel(g, bump, &calls);
    assert_int_equal(calls, 0);
    assert_int_equal(gen_cancel(g), 0);
    assert_int_equal(calls, 1);
    assert_int_equal(gen_cancel(g), 0); /* still running: ok, but no second call */
    assert_int_equal(calls, 1);
    int late = 0;
    gen_on_cancel(g, bump, &late); /* already cancelled: runs now */
    assert_int_equal(late, 1);
    gen_done(g, "cancelled", NULL, NULL, false);
    assert_int_equal(gen_get_state(g), GEN_CANCELLED);
    gen_unref(g);
    gen_registry_free(r);
}

static void chat_bridge_maps_turn_events_and_controls_both_ways(void **st) {
    (void)st;
    gen_registry *r = gen_registry_new(0);
    gen *g = gen_start(r, "local", "s", NULL);
    prov_cancel *pc = prov_cancel_new();
    gen_chat_bridge b;
    gen_chat_bridge_init(&b, g, pc);
    chat_sink sink = gen_chat_bridge_sink(&b);
    sink.emit(sink.ud,
              &(chat_event){.type = CHAT_EV_INFO, .kind = "budget_warning", .message = "80%"});
    sink.emit(sink.ud, &(chat_event){.type = CHAT_EV_DELTA, .text = "Hi there", .len = 2});
    chunk_mode m = CHUNK_TOKEN;
    assert_false(sink.granularity(sink.ud, &m));
    gen_params p = {0};
    snprintf(p.granularity, sizeof p.granularity, "sentence");
    assert_int_equal(gen_set_params(g, &p, NULL), 0);
    assert_true(sink.granularity(sink.ud, &m));
    assert_int_equal(m, CHUNK_SENTENCE);
    assert_false(sink.granularity(sink.ud, &m)); /* only changes are reported */
    sink.emit(sink.ud,
              &(chat_event){
                  .type = CHAT_EV_USAGE, .prompt_tokens = 3, .completion_tokens = 1, .cost = -1});
    /* A stop from any client reaches the provider's cancel handle at once. */
    assert_false(prov_cancel_fired(pc));
    gen_cancel(g);
    assert_true(prov_cancel_fired(pc));
    sink.emit(sink.ud, &(chat_event){.type = CHAT_EV_DONE,
                                     .finish_reason = "cancelled",
                                     .model = "m",
                                     .provider = "local",
                                     .session_id = 7,
                                     .message_id = 9});
    gen_chat_bridge_finish(&b, 0, NULL); /* already ended: adds nothing */
    assert_int_equal(gen_get_state(g), GEN_CANCELLED);
    const gen_event *evs[8];
    size_t n;
    assert_int_equal(gen_wait(g, 0, 0, evs, 8, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(evs[0]->type, GEN_EV_INFO);
    assert_non_null(strstr(evs[1]->json, "\"text\":\"Hi\""));
    assert_int_equal(evs[2]->type, GEN_EV_USAGE);
    json_t *j = json_loads(evs[3]->json, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "session_id")), 7);
    assert_int_equal(json_integer_value(json_object_get(j, "message_id")), 9);
    assert_string_equal(json_string_value(json_object_get(j, "provider")), "local");
    json_decref(j);
    gen_unref(g);

    /* A turn that failed before any terminal event still ends the log. */
    g = gen_start(r, NULL, NULL, NULL);
    gen_chat_bridge_init(&b, g, NULL);
    cf_err err = {0};
    cf_seterr(&err, CF_EUPSTREAM, "every upstream failed");
    gen_chat_bridge_finish(&b, CF_EUPSTREAM, &err);
    assert_int_equal(gen_get_state(g), GEN_ERROR);
    assert_int_equal(gen_wait(g, 0, 0, evs, 8, &n), 0);
    assert_non_null(strstr(evs[0]->json, "every upstream failed"));
    gen_unref(g);
    prov_cancel_free(pc);
    gen_registry_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(events_are_numbered_from_one_and_readable_from_any_point),
        cmocka_unit_test(payload_that_is_not_a_json_object_is_rejected),
        cmocka_unit_test(wait_times_out_when_nothing_arrives_and_wake_ends_it_early),
        cmocka_unit_test(late_and_resuming_subscribers_each_see_every_event_in_order),
        cmocka_unit_test(cancel_stops_a_running_producer_and_marks_the_generation_cancelled),
        cmocka_unit_test(params_are_validated_merged_and_versioned),
        cmocka_unit_test(registry_finds_by_id_and_session_and_expires_finished_ones),
        cmocka_unit_test(observer_sees_every_appended_event),
        cmocka_unit_test(cancel_watcher_runs_once_and_at_once_when_already_cancelled),
        cmocka_unit_test(chat_bridge_maps_turn_events_and_controls_both_ways),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

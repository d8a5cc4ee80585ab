/*
 * store — confab's conversation store: sessions, messages, search, A/B
 * votes, export and import, on SQLite.
 *
 * Thread rules. A store handle is one SQLite connection and is used by one
 * thread at a time (it is not locked internally). Every thread that writes
 * opens its own handle on the same file; WAL mode lets readers run beside
 * the one writer, and a busy timeout makes writers wait for each other
 * instead of failing. A streaming writer (store_stream) belongs to the handle
 * it was made from and is used from that handle's thread.
 *
 * Recovery. store_open() marks messages left in status "streaming" by a crash
 * as "cancelled" (their partial text kept) -- but only when no other handle,
 * in this or any other process, has the database open: every handle holds a
 * shared advisory lock on "<db>-lock", and recovery runs only when an
 * exclusive lock can be taken. So `confab sessions list` run beside a server
 * never cancels the server's live replies.
 *
 * Times are milliseconds since the Unix epoch, UTC. Strings returned inside
 * structs are malloc'd and owned by the struct; free them with the matching
 * *_clear / *_free function. Functions return 0 or a negative CF_E* code and
 * fill ERR (may be NULL) with a message for a person.
 */
#ifndef CONFAB_STORE_H
#define CONFAB_STORE_H

#include "base/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct store store;
typedef struct store_stream store_stream;

/* Schema version this build creates and upgrades to (PRAGMA user_version). */
#define STORE_SCHEMA_VERSION 3

/* ------------------------------------------------------------ open/close */

enum {
    STORE_OPEN_CREATE = 1,     /* create the file when missing */
    STORE_OPEN_NO_RECOVER = 2, /* skip startup recovery */
};

/* Opens (and, with STORE_OPEN_CREATE, creates) the database at PATH
 * (":memory:" for a private in-memory one), migrates it to
 * STORE_SCHEMA_VERSION and runs recovery (see above). Errors: CF_ENOTFOUND
 * (missing, no CREATE flag), CF_EFORMAT (not a database, or a schema newer
 * than this build; the file is left untouched), CF_EIO. Free with
 * store_close(). */
store *store_open(const char *path, int flags, cf_err *err);
void store_close(store *st);

/* Opens a database at schema version TARGET (0..STORE_SCHEMA_VERSION) without
 * recovery: for tests of the migrations. Versions below the current one have
 * the shape old builds created; only store_migrate() and store_exec() are
 * meaningful on such a handle. */
store *store_open_at_version(const char *path, int target, cf_err *err);
/* Upgrades the database to TARGET, one transaction per version. */
int store_migrate(store *st, int target, cf_err *err);
/* Current PRAGMA user_version, or a negative CF_E* code. */
int store_schema_version(store *st);

/* Runs SQL (one or more statements, no results) on the handle: for tests,
 * maintenance and the benchmark. */
int store_exec(store *st, const char *sql, cf_err *err);
/* Runs PRAGMA integrity_check; 0 when it says "ok", CF_EFORMAT otherwise
 * (message holds the first complaint). */
int store_integrity_check(store *st, cf_err *err);

/* Marks every "streaming" message "cancelled", keeping its text. Returns the
 * number of messages changed, or a negative CF_E* code. Call only when no
 * other writer is live (store_open does this safely by itself). */
int store_recover(store *st, cf_err *err);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK, to group many writes. Functions
 * that write several rows (append, stream finish, import) use their own
 * transaction when none is open, and join the caller's otherwise -- then a
 * failure leaves the rollback to the caller. */
int store_begin(store *st, cf_err *err);
int store_commit(store *st, cf_err *err);
void store_rollback(store *st);

/* ------------------------------------------------------------ sessions */

typedef struct {
    int64_t id;
    char uuid[37];
    char *title;         /* never NULL after a get; "" when untitled */
    char *system_prompt; /* NULL when none */
    char *model;         /* default model, NULL when none */
    char *params;        /* JSON object text; NULL in input means "{}" */
    char *owner;         /* NULL when none */
    bool archived;
    int64_t created_at, updated_at;
    int64_t message_count; /* filled by get and list */
} store_session;

/* Frees the strings inside S and zeroes it. */
void store_session_clear(store_session *s);
/* Frees an array from store_session_list. */
void store_sessions_free(store_session *a, size_t n);

/* Creates a session from IN (id, message_count ignored; uuid generated when
 * empty; created_at/updated_at default to now). *ID gets the new id. Errors:
 * CF_EINVAL (params not a JSON object, text not UTF-8, bad uuid). */
int store_session_create(store *st, const store_session *in, int64_t *id, cf_err *err);
/* Fills OUT (caller clears it) with session ID. CF_ENOTFOUND if absent. */
int store_session_get(store *st, int64_t id, store_session *out, cf_err *err);
/* Resolves REF, a decimal id or a uuid, to a session id. CF_ENOTFOUND. */
int store_session_find(store *st, const char *ref, int64_t *id, cf_err *err);

typedef struct {
    int limit;             /* <= 0: 50 */
    int offset;            /* rows to skip */
    bool include_archived; /* default: only active sessions */
    const char *owner;     /* NULL: every owner */
} store_list_opts;

/* Lists sessions newest first (updated_at, then id). *OUT gets a malloc'd
 * array of *N sessions (free with store_sessions_free; NULL when empty). */
int store_session_list(store *st, const store_list_opts *o, store_session **out, size_t *n,
                       cf_err *err);
/* Replaces session ID's settings with IN's system_prompt, model, params
 * (NULL: "{}") and owner (NULL clears); title and archived are left alone
 * (see rename/archive). Errors: CF_ENOTFOUND, CF_EINVAL (params not a JSON
 * object, text not UTF-8). */
int store_session_update(store *st, int64_t id, const store_session *in, cf_err *err);
/* Renames session ID (TITLE: valid UTF-8). CF_ENOTFOUND when absent. */
int store_session_rename(store *st, int64_t id, const char *title, cf_err *err);
/* Sets or clears the archived flag. CF_ENOTFOUND when absent. */
int store_session_archive(store *st, int64_t id, bool archived, cf_err *err);
/* Deletes session ID with its messages, votes and search entries. */
int store_session_delete(store *st, int64_t id, cf_err *err);

/* A title made from a message: first non-empty line, whitespace collapsed,
 * at most 60 characters cut at a word boundary (then "…"). UTF-8 safe.
 * Returns a malloc'd string ("" when TEXT has no visible characters). */
char *store_auto_title(const char *text);

/* ------------------------------------------------------------ messages */

/* Zero is "complete", so a zeroed store_message is a finished one. */
typedef enum {
    STORE_COMPLETE = 0,
    STORE_STREAMING = 1,
    STORE_CANCELLED = 2,
    STORE_ERROR = 3,
} store_status;

/* "streaming", "complete", ...; store_status_parse returns -1 if unknown. */
const char *store_status_name(store_status s);
int store_status_parse(const char *name);
/* True for "system", "user", "assistant", "tool". */
bool store_role_valid(const char *role);

/* Token counts, cost and latency use 0 for "unknown" (stored as NULL). */
typedef struct {
    int64_t id;
    char uuid[37];
    int64_t session_id;
    int64_t parent_id; /* 0: none */
    char *role;        /* system | user | assistant | tool */
    char *content;
    int64_t created_at; /* the seed's "timestamp" column */
    char *model, *provider;
    store_status status;
    int64_t prompt_tokens, completion_tokens;
    double cost; /* US dollars */
    int64_t latency_ms;
    char *finish_reason;
    char *variant; /* A/B arm ("a", "b"), NULL when none */
    bool cached;
    char *error; /* error text for status error */
} store_message;

void store_message_clear(store_message *m);
void store_messages_free(store_message *a, size_t n);

/* Appends message IN to session IN->session_id (uuid generated when empty,
 * created_at defaults to now, status as given: complete when zeroed). The
 * parent must be in the same session. The
 * session's updated_at moves to now; an untitled session gets its title from
 * its first user message. *ID (may be NULL) gets the new id. Errors:
 * CF_ENOTFOUND (session or parent), CF_EINVAL (role, UTF-8, uuid). */
int store_msg_append(store *st, const store_message *in, int64_t *id, cf_err *err);
/* Fills OUT (caller clears) with message ID. CF_ENOTFOUND. */
int store_msg_get(store *st, int64_t id, store_message *out, cf_err *err);
/* Every message of SESSION_ID in creation order (malloc'd array; free with
 * store_messages_free). */
int store_msg_list(store *st, int64_t session_id, store_message **out, size_t *n, cf_err *err);
/* The chain from the root to LEAF_ID following parent ids, root first: the
 * history of one branch of a conversation with alternatives. */
int store_msg_thread(store *st, int64_t leaf_id, store_message **out, size_t *n, cf_err *err);

/* ------------------------------------------------------------ usage */

typedef enum {
    STORE_USAGE_TOTAL = 0,
    STORE_USAGE_BY_MODEL,
    STORE_USAGE_BY_DAY,     /* key: YYYY-MM-DD (UTC) */
    STORE_USAGE_BY_SESSION, /* key: "<id> <title>" */
    STORE_USAGE_BY_VARIANT, /* A/B arms */
} store_usage_by;

typedef struct {
    char *key;
    int64_t replies, prompt_tokens, completion_tokens, cached, errors;
    double cost; /* US dollars */
} store_usage_row;

/* Token and cost totals of assistant replies since SINCE_MS (0: all time),
 * for OWNER's sessions (NULL: everyone's), grouped by BY. *OUT: malloc'd
 * array of *N rows (free with store_usage_free). */
int store_usage(store *st, store_usage_by by, int64_t since_ms, const char *owner,
                store_usage_row **out, size_t *n, cf_err *err);
void store_usage_free(store_usage_row *a, size_t n);

/* ------------------------------------------------------------ streaming */

typedef struct {
    int64_t session_id;
    int64_t parent_id; /* 0: none */
    const char *role;  /* NULL: "assistant" */
    const char *model, *provider, *variant;
    int flush_interval_ms; /* <= 0: 100 */
    /* Clock used to pace flushes (ms); NULL: the monotonic clock. */
    int64_t (*now_ms)(void *ctx);
    void *now_ctx;
} store_stream_opts;

typedef struct {
    store_status status; /* complete | cancelled | error */
    int64_t prompt_tokens, completion_tokens;
    double cost;
    int64_t latency_ms;
    const char *finish_reason; /* may be NULL */
    const char *error;         /* may be NULL */
    bool cached;
    /* Who answered, when only known at the end (after fallbacks): NULL
     * keeps what store_stream_begin recorded. */
    const char *model, *provider, *variant;
} store_stream_end;

/* Inserts an empty message in status "streaming" and returns a writer that
 * grows it. Text appended is buffered and written at most once per flush
 * interval (one UPDATE appending the buffered bytes), so a reply costs about
 * ten row writes a second whatever its token rate. Bytes of a UTF-8
 * character split across appends are held back until complete. NULL on
 * error (CF_ENOTFOUND for the session or parent). */
store_stream *store_stream_begin(store *st, const store_stream_opts *o, cf_err *err);
/* Id of the message being written. */
int64_t store_stream_id(const store_stream *w);
/* Appends N bytes of TEXT; flushes when the interval has passed. */
int store_stream_append(store_stream *w, const char *text, size_t n, cf_err *err);
/* Writes buffered text now. */
int store_stream_flush(store_stream *w, cf_err *err);
/* Number of flushes that wrote to the database so far. */
int store_stream_flushes(const store_stream *w);
/* Writes the rest and the final fields (END may be NULL: complete), then
 * frees W, even when it fails. An incomplete UTF-8 tail becomes U+FFFD. */
int store_stream_finish(store_stream *w, const store_stream_end *end, cf_err *err);
/* Frees W without finishing: the message stays "streaming" (a crash in
 * miniature; recovery will cancel it). For tests; use finish otherwise. */
void store_stream_abandon(store_stream *w);

/* ------------------------------------------------------------ search */

enum { STORE_HIT_MESSAGE = 0, STORE_HIT_TITLE = 1 };

typedef struct {
    const char *query;              /* words; "quoted phrase"; word* for a prefix */
    bool raw;                       /* QUERY is FTS5 syntax, passed as is */
    int64_t session_id;             /* 0: every session */
    int64_t since, until;           /* creation-time range (ms); 0: open */
    int limit, offset;              /* limit <= 0: 20 */
    const char *hl_open, *hl_close; /* highlight markers; NULL: "**" */
    /* Unfiltered searches rank only the newest MAX_CANDIDATES matching
     * messages (0: 10,000; < 0: all), bounding the cost of very common
     * words. Searches filtered by session or date rank every match. */
    int max_candidates;
} store_search_opts;

typedef struct {
    int kind; /* STORE_HIT_MESSAGE or STORE_HIT_TITLE */
    int64_t session_id;
    int64_t message_id; /* 0 for title hits */
    char *session_title;
    char *role;    /* NULL for title hits */
    int64_t time;  /* message time, or the session's updated_at */
    char *snippet; /* text around the match, markers around terms */
    double rank;   /* bm25: lower is better */
} store_hit;

void store_hits_free(store_hit *a, size_t n);

/* Full-text search over finished messages and session titles, best first.
 * User text is quoted term by term, so stray quotes and operators are safe;
 * with RAW set, FTS5 syntax errors come back as CF_EINVAL. A query with no
 * words is CF_EINVAL. Messages still streaming are not indexed yet. */
int store_search(store *st, const store_search_opts *o, store_hit **out, size_t *n, cf_err *err);

/* ------------------------------------------------------------ A/B votes */

typedef struct {
    int64_t session_id;
    int64_t message_a, message_b; /* the two answers compared */
    const char *model_a, *model_b;
    const char *winner; /* "a", "b" or "tie" */
    int64_t created_at; /* 0: now */
} store_vote;

int store_vote_add(store *st, const store_vote *v, int64_t *id, cf_err *err);

typedef struct {
    char *model_a, *model_b; /* model_a < model_b (byte order) */
    int64_t total, wins_a, wins_b, ties;
    double rate_a; /* (wins_a + ties/2) / total */
} store_pair_stats;

/* Win counts per unordered model pair, most-voted pairs first. */
int store_vote_stats(store *st, store_pair_stats **out, size_t *n, cf_err *err);
void store_pair_stats_free(store_pair_stats *a, size_t n);

/* ------------------------------------------------------------ export/import */

#define STORE_EXPORT_FORMAT "confab-export"
#define STORE_EXPORT_VERSION 1

/* Writes session SESSION_ID (0: every session, archived included) to F as
 * the versioned JSON document {"format","version","exported_at","sessions"}
 * with every field of every session, message and vote. */
int store_export_json(store *st, int64_t session_id, FILE *f, cf_err *err);
/* Writes a readable Markdown transcript (title, roles, times, models). */
int store_export_markdown(store *st, int64_t session_id, FILE *f, cf_err *err);

typedef struct {
    int sessions_added, sessions_existing;
    int messages_added, messages_existing;
    int votes_added, votes_existing;
} store_import_result;

/* Imports a JSON export of LEN bytes. The whole document is validated first;
 * a bad one imports nothing and the error names the first problem with its
 * place ("sessions[2].messages[5].role: ..." or "line 3 column 7: ...").
 * Things whose uuid is already present are skipped, so importing a file twice
 * adds nothing the second time. Messages imported as "streaming" become
 * "cancelled". R (may be NULL) gets the counts. */
int store_import_json(store *st, const char *data, size_t len, store_import_result *r, cf_err *err);

/* ------------------------------------------------------------ helpers */

/* Writes a random (version 4) uuid into OUT. */
void store_uuid_new(char out[37]);
/* True when S is a uuid in canonical 8-4-4-4-12 hex form. */
bool store_uuid_valid(const char *s);
/* Parses "YYYY-MM-DDTHH:MM:SS[.mmm]Z" into ms since the epoch. 0 or -1. */
int store_time_parse(const char *s, int64_t *ms);

#endif

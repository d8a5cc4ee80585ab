/*
 * store_schema — the schema and its migrations, keyed on PRAGMA user_version.
 *
 * migrations[k-1] takes a database from version k-1 to k. Every version's
 * DDL stays in the list forever, so a database made by any older confab can
 * be upgraded, and the tests can build a database at each old version and
 * upgrade it. Each step runs in its own BEGIN IMMEDIATE transaction that
 * also sets user_version, re-reading the version inside the transaction so
 * two processes upgrading at once do not apply a step twice. Foreign keys are
 * switched off around a step (table rebuilds need it; SQLite ignores the
 * pragma inside a transaction) and PRAGMA foreign_key_check must come back
 * empty before the step commits.
 *
 *   v1  the seed: sessions(id, created_at, title, updated_at) and
 *       messages(id, session_id, role, content, timestamp).
 *   v2  the product schema: both tables rebuilt with uuids, session
 *       settings, per-message accounting and status, ON DELETE CASCADE,
 *       times as integer ms since the epoch (seed text times converted),
 *       and the A/B votes table. Messages whose session does not exist
 *       (the seed did not enforce the foreign key) cannot be kept and are
 *       dropped.
 *   v3  full-text search: external-content FTS5 tables over message content
 *       and session titles, kept in step by triggers. Messages are indexed
 *       once they stop streaming, so growing a reply costs no index work.
 */
#include "store/store_int.h"

#include <stdio.h>

// clang-format off
/* A seed TIMESTAMP (text, seconds or ms) as integer ms since the epoch. */
#define MS(x)                                                                              \
    "(CASE WHEN " x " IS NULL THEN CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) " \
    "WHEN typeof(" x ") IN ('integer','real') THEN "                                      \
    "CASE WHEN " x " < 100000000000 THEN CAST(" x " * 1000 AS INTEGER) ELSE CAST(" x " AS INTEGER) END " \
    "ELSE coalesce(CAST(round((julianday(" x ") - 2440587.5) * 86400000) AS INTEGER), 0) END)"

/* A random version-4 uuid, evaluated per row. */
#define UUID_SQL                                                                            \
    "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) " \
    "|| '-' || substr('89AB', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' " \
    "|| hex(randomblob(6)))"

static const char *const migrations[STORE_SCHEMA_VERSION] = {
    /* v1: the seed schema, exactly. */
    "CREATE TABLE sessions (id INTEGER PRIMARY KEY, created_at TIMESTAMP, title TEXT, updated_at TIMESTAMP);\n"
    "CREATE TABLE messages (id INTEGER PRIMARY KEY, session_id INTEGER, role TEXT, content TEXT, timestamp TIMESTAMP,\n"
    "                       FOREIGN KEY(session_id) REFERENCES sessions(id));\n",

    /* v2: the product schema. */
    "CREATE TABLE sessions_v2 (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  uuid TEXT NOT NULL UNIQUE,\n"
    "  created_at INTEGER NOT NULL,\n"
    "  updated_at INTEGER NOT NULL,\n"
    "  title TEXT NOT NULL DEFAULT '',\n"
    "  system_prompt TEXT,\n"
    "  model TEXT,\n"
    "  params TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(params) AND json_type(params) = 'object'),\n"
    "  archived INTEGER NOT NULL DEFAULT 0 CHECK (archived IN (0, 1)),\n"
    "  owner TEXT);\n"
    "INSERT INTO sessions_v2 (id, uuid, created_at, updated_at, title)\n"
    "  SELECT id, " UUID_SQL ", " MS("created_at") ", " MS("coalesce(updated_at, created_at)") ",\n"
    "         coalesce(title, '') FROM sessions;\n"
    "CREATE TABLE messages_v2 (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  uuid TEXT NOT NULL UNIQUE,\n"
    "  session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,\n"
    "  parent_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,\n"
    "  role TEXT NOT NULL,\n"
    "  content TEXT NOT NULL DEFAULT '',\n"
    "  timestamp INTEGER NOT NULL,\n"
    "  model TEXT,\n"
    "  provider TEXT,\n"
    "  status TEXT NOT NULL DEFAULT 'complete'\n"
    "    CHECK (status IN ('streaming', 'complete', 'cancelled', 'error')),\n"
    "  prompt_tokens INTEGER,\n"
    "  completion_tokens INTEGER,\n"
    "  cost REAL,\n"
    "  latency_ms INTEGER,\n"
    "  finish_reason TEXT,\n"
    "  variant TEXT,\n"
    "  cached INTEGER NOT NULL DEFAULT 0 CHECK (cached IN (0, 1)),\n"
    "  error TEXT);\n"
    "INSERT INTO messages_v2 (id, uuid, session_id, role, content, timestamp, status)\n"
    "  SELECT id, " UUID_SQL ", session_id, coalesce(role, 'user'), coalesce(content, ''),\n"
    "         " MS("timestamp") ", 'complete'\n"
    "  FROM messages WHERE session_id IN (SELECT id FROM sessions);\n"
    "DROP TABLE messages;\n"
    "DROP TABLE sessions;\n"
    "ALTER TABLE sessions_v2 RENAME TO sessions;\n"
    "ALTER TABLE messages_v2 RENAME TO messages;\n"
    "CREATE INDEX sessions_recent ON sessions(archived, updated_at DESC, id DESC);\n"
    "CREATE INDEX sessions_updated ON sessions(updated_at DESC, id DESC);\n"
    "CREATE INDEX sessions_owner ON sessions(owner, updated_at DESC, id DESC);\n"
    "CREATE INDEX messages_session ON messages(session_id, id);\n"
    "CREATE INDEX messages_parent ON messages(parent_id) WHERE parent_id IS NOT NULL;\n"
    "CREATE INDEX messages_streaming ON messages(status) WHERE status = 'streaming';\n"
    "CREATE TABLE votes (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  uuid TEXT NOT NULL UNIQUE,\n"
    "  session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,\n"
    "  message_a INTEGER REFERENCES messages(id) ON DELETE SET NULL,\n"
    "  message_b INTEGER REFERENCES messages(id) ON DELETE SET NULL,\n"
    "  model_a TEXT NOT NULL,\n"
    "  model_b TEXT NOT NULL,\n"
    "  winner TEXT NOT NULL CHECK (winner IN ('a', 'b', 'tie')),\n"
    "  created_at INTEGER NOT NULL);\n"
    "CREATE INDEX votes_session ON votes(session_id);\n"
    "CREATE INDEX votes_message_a ON votes(message_a);\n"
    "CREATE INDEX votes_message_b ON votes(message_b);\n",

    /* v3: full-text search. */
    "CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='id',\n"
    "  tokenize='unicode61 remove_diacritics 2');\n"
    "CREATE VIRTUAL TABLE sessions_fts USING fts5(title, content='sessions', content_rowid='id',\n"
    "  tokenize='unicode61 remove_diacritics 2');\n"
    "INSERT INTO messages_fts(rowid, content) SELECT id, content FROM messages WHERE status != 'streaming';\n"
    "INSERT INTO sessions_fts(rowid, title) SELECT id, title FROM sessions;\n"
    "CREATE TRIGGER messages_fts_ins AFTER INSERT ON messages WHEN new.status != 'streaming' BEGIN\n"
    "  INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END;\n"
    "CREATE TRIGGER messages_fts_del AFTER DELETE ON messages WHEN old.status != 'streaming' BEGIN\n"
    "  INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content); END;\n"
    "CREATE TRIGGER messages_fts_upd_old AFTER UPDATE OF content, status ON messages\n"
    "  WHEN old.status != 'streaming' BEGIN\n"
    "  INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content); END;\n"
    "CREATE TRIGGER messages_fts_upd_new AFTER UPDATE OF content, status ON messages\n"
    "  WHEN new.status != 'streaming' BEGIN\n"
    "  INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END;\n"
    "CREATE TRIGGER sessions_fts_ins AFTER INSERT ON sessions BEGIN\n"
    "  INSERT INTO sessions_fts(rowid, title) VALUES (new.id, new.title); END;\n"
    "CREATE TRIGGER sessions_fts_del AFTER DELETE ON sessions BEGIN\n"
    "  INSERT INTO sessions_fts(sessions_fts, rowid, title) VALUES ('delete', old.id, old.title); END;\n"
    "CREATE TRIGGER sessions_fts_upd AFTER UPDATE OF title ON sessions BEGIN\n"
    "  INSERT INTO sessions_fts(sessions_fts, rowid, title) VALUES ('delete', old.id, old.title);\n"
    "  INSERT INTO sessions_fts(rowid, title) VALUES (new.id, new.title); END;\n",
};

// clang-format on

static int fk_check(store *st, cf_err *err, int version) {
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, "PRAGMA foreign_key_check", -1, &s, NULL) != SQLITE_OK)
        return store__sqlerr(st, err, "foreign key check");
    int rc = sqlite3_step(s);
    int r = 0;
    if (rc == SQLITE_ROW)
        r = cf_seterr(err, CF_EFORMAT,
                      "migration to version %d left a broken reference in table %s", version,
                      (const char *)sqlite3_column_text(s, 0));
    else if (rc != SQLITE_DONE)
        r = store__sqlerr(st, err, "foreign key check");
    sqlite3_finalize(s);
    return r;
}

int store__migrate(store *st, int target, cf_err *err) {
    int v = store_schema_version(st);
    if (v < 0) return store__sqlerr(st, err, "reading the schema version");
    for (int k = v + 1; k <= target; k++) {
        if (store_exec(st, "PRAGMA foreign_keys=OFF; BEGIN IMMEDIATE", err) != 0)
            return cf_errctx(err, "migration to version %d", k);
        int cur = store_schema_version(st); /* another process may have done it */
        int r = 0;
        if (cur < k) {
            char setv[64];
            snprintf(setv, sizeof setv, "PRAGMA user_version=%d", k);
            r = store_exec(st, migrations[k - 1], err);
            if (r == 0) r = fk_check(st, err, k);
            if (r == 0) r = store_exec(st, setv, err);
        }
        if (r == 0) r = store_exec(st, "COMMIT", err);
        if (r != 0) {
            store_rollback(st);
            store_exec(st, "PRAGMA foreign_keys=ON", NULL);
            return cf_errctx(err, "migration to version %d", k);
        }
        if (store_exec(st, "PRAGMA foreign_keys=ON", err) != 0) return err ? err->code : CF_EIO;
    }
    return 0;
}

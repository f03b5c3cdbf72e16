/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Store and forward: the only file that calls sqlite3_*.
 *
 * Durability: batches live in memory first. Every commit interval, the batches that are
 * still unacknowledged are written to <storage.path>/spool.db in one transaction (WAL,
 * synchronous=FULL), and the rows of batches acknowledged since are deleted in the same
 * transaction. While the Edge answers, a batch is acknowledged within milliseconds and
 * never reaches the disk (one sent less than an interval ago waits for the next commit);
 * while it is away, everything is on disk within one interval, so SIGKILL or a power cut
 * loses at most the last interval. A graceful stop commits everything.
 *
 * Order: per device, batches form one queue ordered by seq (a global counter persisted
 * through the rows). Sending takes the oldest batch not in flight.
 *
 * Memory: a device keeps at most MEM_BATCHES batches in memory. Beyond that, committed
 * batches are evicted, always the one just after a read-ahead window at the head of the
 * queue, so that the disk-only batches of a device form one contiguous run of its queue:
 * the "gap" (gap_lo, gap_hi) in seq. As the head is sent and acknowledged, rows are read
 * back from the gap in order. After a restart the whole backlog is one gap.
 *
 * Size: bounded by storage.max_size_mb. When full, the oldest batches of all devices are
 * dropped, counted, and the episode logged once.
 *
 * Rejection: ThingsBoard closes the session on a message it cannot take (no PUBACK, no
 * error), and a store-and-forward gateway that resends it blindly loops forever. But it
 * also closes sessions for other reasons (an outage, a rate limit, a restart), with valid
 * batches in flight: a close never proves a batch bad by itself. The oldest batch in flight
 * when a session died shortly after sending it becomes a suspect, and a suspect is sent
 * alone (spool_batch_alone): first after a fresh CONNACK, nothing else in flight. Only a
 * batch that closed the session twice that way is moved to the quarantine table (kept for
 * inspection, `tbgwctl spool`, counted, no longer sent). The caller may say a close is not
 * the data's fault at all (a device profile that refuses every upload): then no batch is
 * judged.
 *
 * Damage: a spool file that SQLite finds corrupt, that fails its quick check, or that is
 * not ours, is moved aside (spool.db.damaged-<time>) with a log line and a new one is
 * started. A full disk or an unwritable directory is not damage: the file is left alone.
 * If the disk cannot be written (or the file not even opened), batches stay in memory
 * (bounded), the problem is logged once, and every commit tries again; a close that still
 * cannot write logs what is lost.
 *
 * Thread: uplink only.
 */
#include "config.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spool/spool.h"
#include "util/complain.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/time-util.h"

#define SCHEMA_VERSION "1"
#define MEM_BATCHES 256u        /* per device, in memory at most */
#define READAHEAD 32u           /* batches kept at the head of a queue for sending */
#define QUARANTINE_TRIES 2      /* closes while sent alone, first after a CONNACK */
#define REJECT_WINDOW_MS 5000u  /* a loss this soon after sending counts against the batch */
#define MEM_UNCOMMITTED_MAX (32u << 20) /* when the disk fails: memory bound */
#define SEQ_MAX (INT64_C(1) << 62)      /* far beyond any spool's life, far from overflow */

struct queue {
    struct batch *head, *tail; /* in memory, ordered by seq */
    size_t n_mem;
    size_t n_disk_only;        /* rows in the gap */
    uint64_t gap_lo, gap_hi;   /* disk-only rows have gap_lo < seq < gap_hi */
    uint64_t acked_ms;         /* monotonic time of the last PUBACK, 0: none yet */
    char *name;
};

struct spool {
    const struct config *cfg;
    sqlite3 *db;
    char *path;
    struct queue *q;
    size_t n_devices;
    uint64_t next_seq;
    uint64_t batches, bytes;   /* everything waiting, memory and disk */
    uint64_t values;           /* ... and the values in those batches */
    bool flush_failed;         /* the last spool_flush() could not write everything */
    uint64_t uncommitted_bytes;
    uint64_t max_bytes;
    uint64_t *deleted;         /* seqs of committed batches acked or dropped since the commit */
    size_t n_deleted, cap_deleted;
    uint64_t last_commit_ms;
    struct spool_stats st;
    bool full_logged;
    struct complain disk;
    uint64_t orphans;          /* rows of devices no longer configured */
    sqlite3_stmt *ins, *del, *load, *oldest, *quar;
};

/* ---- SQLite plumbing --------------------------------------------------------------------- */

static int exec(struct spool *s, const char *sql)
{
    char *err = NULL;
    int r = sqlite3_exec(s->db, sql, NULL, NULL, &err);

    if (r != SQLITE_OK) {
        log_debug("spool: %s: %s", sql, err ? err : sqlite3_errstr(r));
        sqlite3_free(err);
    }
    return r;
}

static void close_db(struct spool *s)
{
    sqlite3_finalize(s->ins);
    sqlite3_finalize(s->del);
    sqlite3_finalize(s->load);
    sqlite3_finalize(s->oldest);
    sqlite3_finalize(s->quar);
    s->ins = s->del = s->load = s->oldest = s->quar = NULL;
    if (s->db)
        sqlite3_close(s->db);
    s->db = NULL;
}

static int prepare(struct spool *s)
{
    static const struct {
        size_t off;
        const char *sql;
    } stmts[] = {
        {offsetof(struct spool, ins), "INSERT OR REPLACE INTO batches(seq, device, first_ts, "
                                      "n_values, tries, payload) VALUES (?,?,?,?,?,?)"},
        {offsetof(struct spool, del), "DELETE FROM batches WHERE seq = ?"},
        {offsetof(struct spool, load), "SELECT seq, first_ts, n_values, tries, payload FROM "
                                       "batches WHERE device = ? AND seq > ? AND seq < ? "
                                       "ORDER BY seq LIMIT ?"},
        {offsetof(struct spool, oldest), "SELECT seq, device, first_ts, n_values, "
                                         "length(payload) FROM batches ORDER BY seq LIMIT 1"},
        {offsetof(struct spool, quar), "INSERT OR REPLACE INTO quarantine(seq, device, first_ts, "
                                       "n_values, payload, reason, at) VALUES (?,?,?,?,?,?,?)"},
    };

    for (size_t i = 0; i < ARRAY_SIZE(stmts); i++) {
        sqlite3_stmt **st = (sqlite3_stmt **)(void *)((char *)s + stmts[i].off);
        int r = sqlite3_prepare_v2(s->db, stmts[i].sql, -1, st, NULL);
        if (r != SQLITE_OK)
            return r;
    }
    return SQLITE_OK;
}

/* Open (or create) the file and check that it is ours. SQLITE_OK, or an error code that
 * means "move it aside". */
static int open_db(struct spool *s)
{
    sqlite3_stmt *st = NULL;
    int r;

    r = sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (r != SQLITE_OK)
        return r;
    sqlite3_busy_timeout(s->db, 1000);
    r = exec(s, "PRAGMA journal_mode=WAL");
    if (r == SQLITE_OK)
        r = exec(s, "PRAGMA synchronous=FULL");
    if (r != SQLITE_OK)
        return r;
    /* A damaged file shows here, not at open. */
    r = sqlite3_prepare_v2(s->db, "PRAGMA quick_check", -1, &st, NULL);
    if (r == SQLITE_OK) {
        r = sqlite3_step(st);
        if (r == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0)
            r = SQLITE_CORRUPT;
        else if (r == SQLITE_ROW || r == SQLITE_DONE)
            r = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (r != SQLITE_OK)
        return r;

    r = exec(s, "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                "INSERT OR IGNORE INTO meta VALUES ('application', 'tbgw'), "
                "('schema', '" SCHEMA_VERSION "');"
                "CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY, "
                "device TEXT NOT NULL, first_ts INTEGER NOT NULL, n_values INTEGER NOT NULL, "
                "tries INTEGER NOT NULL DEFAULT 0, payload BLOB NOT NULL);"
                "CREATE INDEX IF NOT EXISTS batches_device ON batches(device, seq);"
                "CREATE TABLE IF NOT EXISTS quarantine (seq INTEGER PRIMARY KEY, device TEXT, "
                "first_ts INTEGER, n_values INTEGER, payload BLOB, reason TEXT, at INTEGER);");
    /* The system lets us write the file and SQLite does not: its header says it is for a
     * later SQLite (or the header is damaged). It would never take a batch: not ours. */
    if (r == SQLITE_READONLY && access(s->path, W_OK) == 0)
        r = SQLITE_NOTADB;
    if (r != SQLITE_OK)
        return r;

    /* Someone else's database, or a future schema: not ours to touch. */
    r = sqlite3_prepare_v2(s->db,
                           "SELECT (SELECT value FROM meta WHERE key='application'), "
                           "(SELECT value FROM meta WHERE key='schema')",
                           -1, &st, NULL);
    if (r == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        const char *app = (const char *)sqlite3_column_text(st, 0);
        const char *ver = (const char *)sqlite3_column_text(st, 1);
        r = (app && ver && strcmp(app, "tbgw") == 0 && strcmp(ver, SCHEMA_VERSION) == 0)
                ? SQLITE_OK
                : SQLITE_NOTADB;
    } else if (r == SQLITE_OK) {
        r = SQLITE_CORRUPT;
    }
    sqlite3_finalize(st);
    if (r != SQLITE_OK)
        return r;

    /* Sequence numbers start at 1 and only grow. A row outside that range was not written
     * by tbgw: it would never be read back in order and would block its device for good. */
    r = sqlite3_prepare_v2(s->db, "SELECT count(*) FROM batches WHERE seq < 1 OR seq > ?", -1,
                           &st, NULL);
    if (r == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, SEQ_MAX);
        r = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) == 0 ? SQLITE_OK
                                                                              : SQLITE_CORRUPT;
    }
    sqlite3_finalize(st);
    if (r != SQLITE_OK)
        return r;

    /* quick_check does not compare an index with its table, and a damaged index hides rows
     * from the read-back (the device then waits for them for ever) or shows them under
     * another device. The index is only derived data: rebuild it from the checked table.
     * Cheaper than the check itself; if it fails, the old index is still there. */
    exec(s, "REINDEX batches_device");
    return prepare(s);
}

static void move_aside(struct spool *s, int why)
{
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    char *aside;

    localtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
    aside = xasprintf("%s.damaged-%s", s->path, stamp);
    if (rename(s->path, aside) == 0) {
        char *from = xasprintf("%s-wal", s->path), *to = xasprintf("%s-wal", aside);
        rename(from, to);
        free(from);
        free(to);
        from = xasprintf("%s-shm", s->path);
        unlink(from);
        free(from);
        log_error("spool '%s' is unusable (%s); moved aside to '%s', starting an empty one",
                  s->path, sqlite3_errstr(why), aside);
    } else {
        log_error("spool '%s' is unusable (%s) and cannot be moved aside: %s", s->path,
                  sqlite3_errstr(why), strerror(errno));
    }
    free(aside);
}

/* ---- queues ------------------------------------------------------------------------------- */

static int device_index(const struct spool *s, const char *name)
{
    for (size_t i = 0; i < s->n_devices; i++)
        if (strcmp(s->q[i].name, name) == 0)
            return (int)i;
    return -1;
}

static void batch_free(struct batch *b)
{
    free(b->payload);
    free(b);
}

static void list_unlink(struct queue *q, struct batch *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        q->head = b->next;
    if (b->next)
        b->next->prev = b->prev;
    else
        q->tail = b->prev;
    b->prev = b->next = NULL;
    q->n_mem--;
}

/* Insert b before `before` (NULL: at the tail). */
static void list_insert(struct queue *q, struct batch *b, struct batch *before)
{
    b->next = before;
    b->prev = before ? before->prev : q->tail;
    if (b->prev)
        b->prev->next = b;
    else
        q->head = b;
    if (before)
        before->prev = b;
    else
        q->tail = b;
    q->n_mem++;
}

static void remember_deleted(struct spool *s, uint64_t seq)
{
    if (s->n_deleted == s->cap_deleted) {
        s->cap_deleted = s->cap_deleted ? s->cap_deleted * 2 : 64;
        s->deleted = xreallocarray(s->deleted, s->cap_deleted, sizeof(*s->deleted));
    }
    s->deleted[s->n_deleted++] = seq;
}

/* Read up to n rows of the gap of device d back into memory, in order. */
static void load_from_gap(struct spool *s, uint32_t d, unsigned n)
{
    struct queue *q = &s->q[d];
    struct batch *before = q->head;
    int r;

    if (!q->n_disk_only || !s->db)
        return;
    while (before && before->seq < q->gap_hi)
        before = before->next;
    sqlite3_reset(s->load);
    sqlite3_bind_text(s->load, 1, q->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s->load, 2, (sqlite3_int64)q->gap_lo);
    sqlite3_bind_int64(s->load, 3, (sqlite3_int64)MIN(q->gap_hi, (uint64_t)INT64_MAX));
    sqlite3_bind_int(s->load, 4, (int)n);
    while ((r = sqlite3_step(s->load)) == SQLITE_ROW) {
        struct batch *b = xcalloc(1, sizeof(*b));
        const void *p = sqlite3_column_blob(s->load, 4);

        b->seq = (uint64_t)sqlite3_column_int64(s->load, 0);
        b->device = d;
        b->first_ts = sqlite3_column_int64(s->load, 1);
        b->n_values = (uint32_t)sqlite3_column_int64(s->load, 2);
        b->tries = (uint8_t)MIN(sqlite3_column_int(s->load, 3), 255);
        b->suspect = b->tries > 0;
        b->len = (size_t)sqlite3_column_bytes(s->load, 4);
        b->payload = xmalloc(b->len + 1);
        if (b->len)
            memcpy(b->payload, p, b->len);
        b->payload[b->len] = '\0';
        b->on_disk = true;
        list_insert(q, b, before);
        q->gap_lo = b->seq;
        if (q->n_disk_only)
            q->n_disk_only--;
    }
    sqlite3_reset(s->load);
    if (r != SQLITE_DONE && r != SQLITE_ROW)
        complain(&s->disk, LOG_ERR, 0, "spool '%s': cannot read: %s", s->path,
                 sqlite3_errmsg(s->db));
    if (!q->n_disk_only)
        q->gap_lo = q->gap_hi = 0;
}

/* Keep the head of the queue in memory for sending. */
static void refill(struct spool *s, uint32_t d)
{
    struct queue *q = &s->q[d];
    unsigned ahead = 0;

    if (!q->n_disk_only)
        return;
    for (struct batch *b = q->head; b && b->seq < q->gap_hi && ahead < READAHEAD; b = b->next)
        if (!b->inflight)
            ahead++;
    if (ahead < READAHEAD / 2)
        load_from_gap(s, d, READAHEAD - ahead);
}

/* Move committed batches out of memory into the gap, keeping a read-ahead window at the
 * head. The gap stays one contiguous run: with a gap, the batch evicted is the one just
 * after it; without one, the first one past the window starts it. */
static void evict(struct spool *s, uint32_t d)
{
    struct queue *q = &s->q[d];

    while (q->n_mem > MEM_BATCHES) {
        struct batch *b = q->head;
        unsigned pos = 0;

        if (q->n_disk_only) {
            while (b && b->seq < q->gap_hi)
                b = b->next;
        } else {
            while (b && (pos < READAHEAD || b->inflight)) {
                b = b->next;
                pos++;
            }
            if (b)
                q->gap_lo = b->prev ? b->prev->seq : 0;
        }
        if (!b || !b->on_disk || b->inflight)
            return; /* not committed yet: it stays until the next commit */
        q->gap_hi = b->seq + 1;
        q->n_disk_only++;
        list_unlink(q, b);
        batch_free(b);
    }
}

/* ---- open / close ------------------------------------------------------------------------- */

static void load_index(struct spool *s)
{
    sqlite3_stmt *st = NULL;

    if (sqlite3_prepare_v2(s->db, "SELECT device, count(*), sum(length(payload)), max(seq), "
                                  "sum(n_values) FROM batches GROUP BY device",
                           -1, &st, NULL) != SQLITE_OK)
        return;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        uint64_t n = (uint64_t)sqlite3_column_int64(st, 1);
        uint64_t bytes = (uint64_t)sqlite3_column_int64(st, 2);
        uint64_t max = (uint64_t)sqlite3_column_int64(st, 3);
        uint64_t values = (uint64_t)sqlite3_column_int64(st, 4);
        int d = name ? device_index(s, name) : -1;

        s->values += values;
        s->st.loaded_values += values;
        s->batches += n;
        s->bytes += bytes;
        s->next_seq = MAX(s->next_seq, max + 1);
        if (d < 0) {
            s->orphans += n;
            log_warning("spool: %llu batches of device '%s', which is no longer configured, "
                        "are kept until the spool needs their room",
                        (unsigned long long)n, name ? name : "?");
            continue;
        }
        s->q[d].n_disk_only = n;
    }
    sqlite3_finalize(st);
    /* After a restart each device's whole backlog is one gap, older than anything new. */
    for (size_t d = 0; d < s->n_devices; d++)
        if (s->q[d].n_disk_only) {
            s->q[d].gap_lo = 0;
            s->q[d].gap_hi = s->next_seq;
        }
    if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM quarantine", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        s->st.quarantined += (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (s->batches)
        log_info("spool: %llu batches (%llu KiB) waiting from before; sending them first",
                 (unsigned long long)s->batches, (unsigned long long)(s->bytes + 1023) / 1024);
}

/* Whether an error from opening the file means the file itself is bad (damaged, someone
 * else's, a future schema), so that a new one is the cure. A full disk, a read-only or
 * missing directory or a lock say nothing about the file: it is left alone and opened
 * again later, or a gateway that starts on a full disk would throw its backlog away as
 * "damaged". SQLite reports a full disk while it maps the WAL index as an I/O error. */
static bool damaged(const struct spool *s, int r)
{
    int e = s->db ? sqlite3_system_errno(s->db) : 0;

    switch (r & 0xff) {
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_NOMEM:
        return false;
    case SQLITE_IOERR:
        return !(e == ENOSPC || e == EDQUOT || e == EROFS || e == EACCES || e == EPERM ||
                 e == ENOMEM);
    default:
        return true;
    }
}

/* Batches kept in memory while the file could not be opened are newer than all of its
 * rows: number them after those, in their order, so that rows and batches never share a
 * seq and each device's backlog on disk goes out first. */
static int batch_seq_cmp(const void *a, const void *b)
{
    uint64_t x = (*(struct batch *const *)a)->seq, y = (*(struct batch *const *)b)->seq;

    return (x > y) - (x < y);
}

static void renumber(struct spool *s)
{
    struct batch **v;
    size_t n = 0;

    for (size_t d = 0; d < s->n_devices; d++)
        for (struct batch *b = s->q[d].head; b; b = b->next)
            n++;
    if (!n)
        return;
    v = xreallocarray(NULL, n, sizeof(*v));
    n = 0;
    for (size_t d = 0; d < s->n_devices; d++)
        for (struct batch *b = s->q[d].head; b; b = b->next)
            v[n++] = b;
    /* Up to MEM_UNCOMMITTED_MAX of batches after a long outage of the disk. */
    qsort(v, n, sizeof(*v), batch_seq_cmp);
    for (size_t i = 0; i < n; i++)
        v[i]->seq = s->next_seq++;
    free(v);
}

/* Open the file and take over what it holds. Called at start and, while that fails,
 * again at every commit. SQLITE_OK, or the error (logged once per outage). */
static int attach(struct spool *s)
{
    uint64_t mem_next = s->next_seq;
    int r = open_db(s);

    if (r != SQLITE_OK && damaged(s, r)) {
        close_db(s);
        move_aside(s, r);
        r = open_db(s);
    }
    if (r != SQLITE_OK) {
        close_db(s);
        complain(&s->disk, LOG_ERR, 0, "spool '%s': cannot open: %s; data is kept in memory "
                 "only until this is fixed", s->path, sqlite3_errstr(r));
        return r;
    }
    exec(s, "CREATE TEMP TABLE configured (name TEXT PRIMARY KEY)");
    for (size_t i = 0; i < s->n_devices; i++) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->db, "INSERT OR IGNORE INTO temp.configured VALUES (?)", -1, &st,
                               NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, s->q[i].name, -1, SQLITE_STATIC);
            sqlite3_step(st);
        }
        sqlite3_finalize(st);
    }
    s->next_seq = 1;
    load_index(s);
    if (mem_next > 1)
        renumber(s);
    return SQLITE_OK;
}

struct spool *spool_open(const struct config *cfg)
{
    struct spool *s = xcalloc(1, sizeof(*s));

    s->cfg = cfg;
    s->n_devices = cfg->n_devices;
    s->q = xcalloc(s->n_devices ? s->n_devices : 1, sizeof(*s->q));
    for (size_t i = 0; i < s->n_devices; i++)
        s->q[i].name = xstrdup(cfg->devices[i]->name);
    s->next_seq = 1;
    s->max_bytes = (uint64_t)cfg->storage.max_size_mb << 20;
    s->path = xasprintf("%s/spool.db", cfg->storage.path);
    s->last_commit_ms = now_ms();
    attach(s); /* or batches wait in memory, and every commit tries again */
    return s;
}

/* ---- commit ---------------------------------------------------------------------------- */

/* A batch sent less than one interval ago is normally acknowledged within milliseconds:
 * writing it only to delete it at the next commit was most of the disk traffic while the
 * Edge answers (about 100 MiB an hour at 1 000 samples/s, on an SD card). It is written at
 * the next commit if it is still waiting then. Data that is not in flight (the Edge is
 * away) is written at the first commit, as before. */
static bool must_write(const struct spool *s, const struct batch *b, bool all, uint64_t now)
{
    /* now is the committing pass's clock, read before the pass sent anything: a batch sent
     * in that pass has sent_ms > now, and is in flight like any other. */
    uint64_t interval = (uint64_t)s->cfg->storage.commit_interval_ms;

    return !b->on_disk && (all || !b->inflight || b->sent_ms + interval <= now);
}

/* all: write every batch (stopping), not only the ones whose time has come. */
static int commit(struct spool *s, bool all, uint64_t now)
{
    size_t written = 0;
    int r;

    s->last_commit_ms = now;
    if (!s->db && attach(s) != SQLITE_OK)
        return -EIO;
    if (!s->n_deleted) {
        bool dirty = false;
        for (size_t d = 0; d < s->n_devices && !dirty; d++)
            for (struct batch *b = s->q[d].tail; b && !dirty; b = b->prev)
                dirty = must_write(s, b, all, now);
        if (!dirty)
            return 0; /* nothing to do: the common case while the Edge answers */
    }
    r = exec(s, "BEGIN IMMEDIATE");
    for (size_t i = 0; r == SQLITE_OK && i < s->n_deleted; i++) {
        sqlite3_reset(s->del);
        sqlite3_bind_int64(s->del, 1, (sqlite3_int64)s->deleted[i]);
        if (sqlite3_step(s->del) != SQLITE_DONE)
            r = sqlite3_errcode(s->db);
    }
    for (size_t d = 0; r == SQLITE_OK && d < s->n_devices; d++) {
        for (struct batch *b = s->q[d].head; b && r == SQLITE_OK; b = b->next) {
            if (!must_write(s, b, all, now))
                continue;
            sqlite3_reset(s->ins);
            sqlite3_bind_int64(s->ins, 1, (sqlite3_int64)b->seq);
            sqlite3_bind_text(s->ins, 2, s->q[d].name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s->ins, 3, b->first_ts);
            sqlite3_bind_int64(s->ins, 4, b->n_values);
            sqlite3_bind_int(s->ins, 5, b->tries);
            sqlite3_bind_blob(s->ins, 6, b->payload, (int)b->len, SQLITE_STATIC);
            if (sqlite3_step(s->ins) != SQLITE_DONE)
                r = sqlite3_errcode(s->db);
            written++;
        }
    }
    if (r == SQLITE_OK)
        r = exec(s, "COMMIT");
    if (r != SQLITE_OK) {
        exec(s, "ROLLBACK");
        complain(&s->disk, LOG_ERR, 0, "spool '%s': cannot write (%s); keeping data in memory "
                 "and retrying", s->path, sqlite3_errstr(r));
        return -EIO;
    }
    complain_release(&s->disk, "spool '%s': writing again", s->path);
    s->n_deleted = 0;
    s->uncommitted_bytes = 0;
    for (size_t d = 0; d < s->n_devices; d++) {
        for (struct batch *b = s->q[d].head; b; b = b->next) {
            if (must_write(s, b, all, now))
                b->on_disk = true;
            else if (!b->on_disk)
                s->uncommitted_bytes += b->len;
        }
        evict(s, (uint32_t)d);
    }
    if (written)
        log_debug("spool: committed %zu batches", written);
    return 0;
}

struct spool *spool_close(struct spool *s)
{
    if (!s)
        return NULL;
    /* After a failed flush (stopping) the numbers are final: the uplink has reported
     * them as lost, so no second try that could make them wrong. */
    if (s->flush_failed || commit(s, true, now_ms()) < 0) {
        uint64_t n = 0, values = 0;
        for (size_t d = 0; d < s->n_devices; d++)
            for (struct batch *b = s->q[d].head; b; b = b->next)
                if (!b->on_disk) {
                    n++;
                    values += b->n_values;
                }
        /* What the disk would not take lived in memory only: say what goes with it. */
        if (n)
            log_error("spool '%s': cannot write; %llu batches (%llu values) kept in memory "
                      "are lost",
                      s->path, (unsigned long long)n, (unsigned long long)values);
    }
    close_db(s);
    for (size_t d = 0; d < s->n_devices; d++) {
        struct batch *b = s->q[d].head;
        while (b) {
            struct batch *next = b->next;
            batch_free(b);
            b = next;
        }
        free(s->q[d].name);
    }
    free(s->q);
    free(s->deleted);
    free(s->path);
    free(s);
    return NULL;
}

/* ---- dropping ---------------------------------------------------------------------------- */

static void account_drop(struct spool *s, uint64_t len, uint64_t n_values)
{
    s->st.dropped++;
    s->st.dropped_values += n_values;
    s->values -= MIN(n_values, s->values);
    s->batches--;
    s->bytes -= MIN(len, s->bytes);
    if (!s->full_logged) {
        s->full_logged = true;
        log_warning("spool: full (storage.max_size_mb = %d); dropping the oldest data",
                    s->cfg->storage.max_size_mb);
    }
}

/* Drop one batch for room: rows of devices no longer configured first (they cannot be
 * sent), then the oldest batch of the whole spool that is not in flight. False if none. */
static bool drop_oldest(struct spool *s)
{
    struct batch *mem = NULL;
    uint64_t best = UINT64_MAX;
    int best_dev = -1;
    int64_t len = 0, values = 0;

    if (s->db && s->orphans) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->db, "SELECT seq, length(payload), n_values FROM batches "
                                      "WHERE device NOT IN (SELECT name FROM temp.configured) "
                                      "ORDER BY seq LIMIT 1",
                               -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW) {
            int64_t seq = sqlite3_column_int64(st, 0);
            len = sqlite3_column_int64(st, 1);
            values = sqlite3_column_int64(st, 2);
            sqlite3_finalize(st);
            sqlite3_reset(s->del);
            sqlite3_bind_int64(s->del, 1, seq);
            sqlite3_step(s->del);
            sqlite3_reset(s->del);
            s->orphans--;
            account_drop(s, (uint64_t)len, (uint64_t)values);
            return true;
        }
        sqlite3_finalize(st);
        s->orphans = 0;
    }

    for (size_t d = 0; d < s->n_devices; d++) {
        struct queue *q = &s->q[d];
        struct batch *b = q->head;

        while (b && b->inflight)
            b = b->next;
        if (b && (!q->n_disk_only || b->seq < q->gap_hi) && b->seq < best) {
            best = b->seq;
            mem = b;
            best_dev = -1;
        }
        /* The gap's first row is older than anything after the gap. */
        if (q->n_disk_only && s->db && q->gap_lo + 1 < best && (!b || b->seq >= q->gap_hi)) {
            sqlite3_reset(s->load);
            sqlite3_bind_text(s->load, 1, q->name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s->load, 2, (sqlite3_int64)q->gap_lo);
            sqlite3_bind_int64(s->load, 3, (sqlite3_int64)MIN(q->gap_hi, (uint64_t)INT64_MAX));
            sqlite3_bind_int(s->load, 4, 1);
            if (sqlite3_step(s->load) == SQLITE_ROW &&
                (uint64_t)sqlite3_column_int64(s->load, 0) < best) {
                best = (uint64_t)sqlite3_column_int64(s->load, 0);
                values = sqlite3_column_int64(s->load, 2);
                len = sqlite3_column_bytes(s->load, 4);
                best_dev = (int)d;
                mem = NULL;
            }
            sqlite3_reset(s->load);
        }
    }
    if (mem) {
        struct queue *q = &s->q[mem->device];
        if (mem->on_disk)
            remember_deleted(s, mem->seq);
        else
            s->uncommitted_bytes -= MIN(mem->len, s->uncommitted_bytes);
        account_drop(s, mem->len, mem->n_values);
        list_unlink(q, mem);
        batch_free(mem);
        return true;
    }
    if (best_dev >= 0) {
        struct queue *q = &s->q[best_dev];
        sqlite3_reset(s->del);
        sqlite3_bind_int64(s->del, 1, (sqlite3_int64)best);
        sqlite3_step(s->del);
        sqlite3_reset(s->del);
        q->gap_lo = best;
        if (--q->n_disk_only == 0)
            q->gap_lo = q->gap_hi = 0;
        account_drop(s, (uint64_t)len, (uint64_t)values);
        return true;
    }
    return false;
}

/* ---- API ----------------------------------------------------------------------------------- */

struct batch *spool_append(struct spool *s, uint32_t device, int64_t first_ts, uint32_t n_values,
                           char *payload, size_t len)
{
    struct batch *b = xcalloc(1, sizeof(*b));

    /* Make room: the oldest goes first (the newest data is what a user wants most). */
    while (s->batches && (s->bytes + len > s->max_bytes ||
                          s->uncommitted_bytes + len > MEM_UNCOMMITTED_MAX))
        if (!drop_oldest(s))
            break;
    b->seq = s->next_seq++;
    b->device = device;
    b->first_ts = first_ts;
    b->n_values = n_values;
    b->payload = payload;
    b->len = len;
    list_insert(&s->q[device], b, NULL);
    s->batches++;
    s->values += n_values;
    s->bytes += len;
    s->uncommitted_bytes += len;
    return b;
}

struct batch *spool_next(struct spool *s, uint32_t device)
{
    struct queue *q = &s->q[device];

    refill(s, device);
    for (struct batch *b = q->head; b; b = b->next) {
        if (q->n_disk_only && b->seq > q->gap_lo && b->seq >= q->gap_hi)
            return NULL; /* the gap comes first: wait for the refill */
        if (!b->inflight)
            return b;
    }
    return NULL;
}

void spool_sent(struct spool *s, struct batch *b, int token)
{
    b->inflight = true;
    b->token = token;
    b->sent_ms = now_ms();
}

struct batch *spool_find_token(struct spool *s, uint32_t device, int token)
{
    for (struct batch *b = s->q[device].head; b; b = b->next)
        if (b->inflight && b->token == token)
            return b;
    return NULL;
}

void spool_ack(struct spool *s, struct batch *b)
{
    struct queue *q = &s->q[b->device];

    q->acked_ms = MAX(now_ms(), 1u);
    if (b->on_disk)
        remember_deleted(s, b->seq);
    else
        s->uncommitted_bytes -= MIN(b->len, s->uncommitted_bytes);
    s->batches--;
    s->values -= MIN(b->n_values, s->values);
    s->bytes -= MIN(b->len, s->bytes);
    list_unlink(q, b);
    batch_free(b);
    if (s->full_logged && s->bytes < s->max_bytes / 2) {
        s->full_logged = false;
        log_info("spool: below half of its size again");
    }
}

static void quarantine(struct spool *s, struct batch *b)
{
    struct queue *q = &s->q[b->device];

    log_error("device '%s': the edge closed the session each of the %d times a batch "
              "(%u values from %lld) was sent alone; it is kept in the quarantine table of "
              "'%s' (see tbgwctl spool) and not sent again",
              q->name, b->tries, b->n_values, (long long)b->first_ts, s->path);
    if (s->db) {
        sqlite3_reset(s->quar);
        sqlite3_bind_int64(s->quar, 1, (sqlite3_int64)b->seq);
        sqlite3_bind_text(s->quar, 2, q->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s->quar, 3, b->first_ts);
        sqlite3_bind_int64(s->quar, 4, b->n_values);
        sqlite3_bind_blob(s->quar, 5, b->payload, (int)b->len, SQLITE_STATIC);
        sqlite3_bind_text(s->quar, 6, "the edge closed the session twice when it was sent alone",
                          -1, SQLITE_STATIC);
        sqlite3_bind_int64(s->quar, 7, (sqlite3_int64)time(NULL));
        sqlite3_step(s->quar);
        sqlite3_reset(s->quar);
    }
    s->st.quarantined++;
    s->st.quarantined_values += b->n_values;
    s->values -= MIN(b->n_values, s->values);
    if (b->on_disk)
        remember_deleted(s, b->seq);
    else
        s->uncommitted_bytes -= MIN(b->len, s->uncommitted_bytes);
    s->batches--;
    s->bytes -= MIN(b->len, s->bytes);
    list_unlink(q, b);
    batch_free(b);
}

bool spool_batch_alone(const struct batch *b)
{
    return b->suspect;
}

void spool_requeue(struct spool *s, uint32_t device, uint64_t session_ms, bool judge)
{
    struct queue *q = &s->q[device];
    struct batch *first = NULL;
    unsigned sent = 0;
    uint64_t now = now_ms();
    bool acked = q->acked_ms && q->acked_ms >= session_ms;

    /* paho may have failed the pending publishes before it reported the loss, so "in
     * flight" is not the test: sent during this session and not acknowledged is. */
    for (struct batch *b = q->head; b; b = b->next) {
        if (b->sent_ms && b->sent_ms >= session_ms) {
            if (!first)
                first = b;
            sent++;
        }
        b->inflight = false;
    }
    if (!judge || !first || now - first->sent_ms > REJECT_WINDOW_MS)
        return;
    /* Only the oldest is suspect: the server closes the session on the first message it
     * cannot take; the others were merely in the way. Proof takes it alone. */
    first->suspect = true;
    if (sent == 1 && !acked && ++first->tries >= QUARANTINE_TRIES)
        quarantine(s, first);
}

size_t spool_pending(const struct spool *s, uint32_t device)
{
    return s->q[device].n_mem + s->q[device].n_disk_only;
}

uint64_t spool_commit_after(const struct spool *s, uint64_t t)
{
    uint64_t interval = (uint64_t)s->cfg->storage.commit_interval_ms;

    return (t / interval + 1) * interval;
}

uint64_t spool_commit_due_ms(const struct spool *s)
{
    if (!s->uncommitted_bytes && !s->n_deleted)
        return UINT64_MAX; /* everything is where it belongs: no commit to make */
    /* In the past when data comes to a spool that has been clean for a while: it is
     * written at once, since a batch closed for this very instant may be among it. */
    return spool_commit_after(s, s->last_commit_ms);
}

void spool_tick(struct spool *s, uint64_t now)
{
    if (now >= spool_commit_due_ms(s))
        commit(s, false, now);
}

void spool_flush(struct spool *s)
{
    s->flush_failed = commit(s, true, now_ms()) < 0;
}

struct spool_stats spool_stats(const struct spool *s)
{
    struct spool_stats st = s->st;
    int64_t oldest = 0;

    st.batches = s->batches;
    st.bytes = s->bytes;
    st.values = s->values;
    for (size_t d = 0; d < s->n_devices; d++) {
        if (s->q[d].head && (!oldest || s->q[d].head->first_ts < oldest))
            oldest = s->q[d].head->first_ts;
        for (const struct batch *b = s->q[d].head; b; b = b->next)
            if (!b->on_disk)
                st.unsaved_values += b->n_values;
    }
    if (s->db) {
        sqlite3_reset(s->oldest);
        if (sqlite3_step(s->oldest) == SQLITE_ROW) {
            int64_t ts = sqlite3_column_int64(s->oldest, 2);
            if (!oldest || ts < oldest)
                oldest = ts;
        }
        sqlite3_reset(s->oldest);
    }
    st.oldest_ts = oldest;
    return st;
}

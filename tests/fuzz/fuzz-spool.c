/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz target: what the spool reads back from its SQLite file after a restart
 * (src/spool/spool.c). The first byte chooses how the file is made:
 *   bit 0 clear: rows. The rest of the input is a list of rows, written with SQLite into a
 *                file of tbgw's schema: sequence numbers (0, negative and huge ones too),
 *                devices that are configured, gone or NULL, payloads as blobs, text or
 *                NULL, odd counters. Bit 1 makes the batches table untyped and without
 *                constraints (a file that says it is tbgw's but was written by something
 *                else).
 *   bit 0 set:   damage. The rest is a list of (offset, byte) patches to a healthy spool
 *                file that holds a few batches.
 * Bits 2-7 ask for up to 63 * 8 new batches appended while the backlog drains, enough to
 * push a device past its in-memory limit into the read-back path.
 *
 * The spool is then opened for two configured devices and drained, as the uplink does:
 * next, sent, ack, with commits in between. Promises checked (abort when broken): each
 * device's batches come out in strictly increasing order and each exactly once; a file
 * that is not moved aside gives back every row of each configured device, payload intact,
 * before anything new; no device is left with batches it can never send; a reopened
 * spool counts only what is really left.
 */
#include "config.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "spool/spool.h"
#include "tests/fuzz/fuzz.h"
#include "util/macros.h"

#define N_DEVS 2
#define MAX_NEW (63 * 8)

/* The target's own files cannot be made: nothing to do with the code under test. */
static void setup_failed(void)
{
    perror("fuzz-spool: setting up");
    abort();
}

struct reader {
    const uint8_t *p, *end;
};

static unsigned u8(struct reader *r)
{
    return r->p < r->end ? *r->p++ : 0;
}

static uint64_t le(struct reader *r, unsigned n)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)u8(r) << (8 * i);
    return v;
}

struct row {
    int64_t seq;
    int dev; /* 0..N_DEVS-1, or -1: not configured */
    char *payload;
    size_t len;
};

static struct config cfg;
static struct device_config devs[N_DEVS];
static struct device_config *devp[N_DEVS];
static char *dir, *db_path;
static uint8_t *healthy;
static size_t healthy_len;

static void remove_files(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *p = xasprintf("%s/%s", dir, e->d_name);
        unlink(p);
        free(p);
    }
    if (d)
        closedir(d);
}

static bool moved_aside(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    bool found = false;

    while (d && (e = readdir(d)))
        if (strncmp(e->d_name, "spool.db.damaged-", 17) == 0)
            found = true;
    if (d)
        closedir(d);
    return found;
}

static sqlite3 *open_raw(void)
{
    sqlite3 *db = NULL;

    if (sqlite3_open(db_path, &db) != SQLITE_OK)
        setup_failed();
    return db;
}

static void init(void)
{
    static const char *const names[N_DEVS] = {"d0", "d1"};
    struct spool *s;
    FILE *f;
    sqlite3 *db;

    fuzz_quiet();
    dir = xasprintf("%s/state", fuzz_scratch_dir());
    if (mkdir(dir, 0700) < 0)
        setup_failed();
    db_path = xasprintf("%s/spool.db", dir);
    for (size_t i = 0; i < N_DEVS; i++) {
        devs[i].name = (char *)names[i];
        devs[i].index = i;
        devp[i] = &devs[i];
    }
    cfg.storage.path = dir;
    cfg.storage.max_size_mb = 64;
    cfg.storage.commit_interval_ms = 1000;
    cfg.n_devices = N_DEVS;
    cfg.devices = devp;

    /* The healthy file the damage mode patches: a few batches of each kind of device. */
    s = spool_open(&cfg);
    spool_close(s);
    db = open_raw();
    if (sqlite3_exec(db,
                     "INSERT INTO batches VALUES (1,'d0',1000,1,0,x'5b7b7d5d');"
                     "INSERT INTO batches VALUES (2,'d1',1001,2,0,'[{\"ts\":1}]');"
                     "INSERT INTO batches VALUES (3,'gone',1002,1,0,x'00');"
                     "INSERT INTO batches VALUES (4,'d0',1003,3,2,x'');"
                     "INSERT INTO quarantine VALUES (5,'d1',1004,1,x'41','r',0);"
                     "PRAGMA wal_checkpoint(TRUNCATE);",
                     NULL, NULL, NULL) != SQLITE_OK)
        setup_failed();
    sqlite3_close(db);
    f = fopen(db_path, "rb");
    if (!f)
        setup_failed();
    healthy = xmalloc(1 << 20);
    healthy_len = fread(healthy, 1, 1 << 20, f);
    fclose(f);
    if (!healthy_len)
        setup_failed();
}

static void write_rows(struct reader *r, bool loose)
{
    sqlite3 *db;
    sqlite3_stmt *st = NULL;

    remove_files();
    db = open_raw();
    if (loose)
        sqlite3_exec(db, "CREATE TABLE batches (seq INTEGER PRIMARY KEY, device, first_ts, "
                         "n_values, tries, payload)", NULL, NULL, NULL);
    sqlite3_close(db);
    spool_close(spool_open(&cfg)); /* the schema, as the daemon makes it */
    if (moved_aside())
        setup_failed();
    db = open_raw();
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO batches(seq, device, first_ts, n_values, "
                               "tries, payload) VALUES (?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        setup_failed();
    while (r->p < r->end) {
        static const char *const names[] = {"d0", "d1", "gone", NULL};
        unsigned f = u8(r);
        int64_t seq = (f & 4) ? (int64_t)le(r, 8) : (int64_t)le(r, 2);
        unsigned len = u8(r) & 0x3f;
        char payload[64];

        for (unsigned i = 0; i < len; i++)
            payload[i] = (char)u8(r);
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, seq);
        if (names[f & 3])
            sqlite3_bind_text(st, 2, names[f & 3], -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 2);
        if (f & 32) {
            sqlite3_bind_int64(st, 3, (int8_t)u8(r) * 1000000000000000LL);
            sqlite3_bind_int64(st, 4, (int8_t)u8(r));
            sqlite3_bind_int64(st, 5, (int8_t)u8(r));
        } else {
            sqlite3_bind_int64(st, 3, 1700000000000);
            sqlite3_bind_int64(st, 4, 1);
            sqlite3_bind_int64(st, 5, 0);
        }
        if (f & 16)
            sqlite3_bind_null(st, 6);
        else if (f & 8)
            sqlite3_bind_text(st, 6, payload, (int)len, SQLITE_TRANSIENT);
        else
            sqlite3_bind_blob(st, 6, payload, (int)len, SQLITE_TRANSIENT);
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
}

static void write_damaged(struct reader *r)
{
    uint8_t *file = xmemdup(healthy, healthy_len);
    FILE *f;

    remove_files();
    while (r->p < r->end) {
        size_t off = (size_t)le(r, 2) % healthy_len;
        file[off] = (uint8_t)u8(r);
    }
    f = fopen(db_path, "wb");
    if (!f || fwrite(file, 1, healthy_len, f) != healthy_len)
        setup_failed();
    fclose(f);
    free(file);
}

/* The rows as the table holds them (read by rowid, no index), in seq order. False if the
 * file cannot be read through: its content is then unknown. */
static bool read_rows(struct row **ret, size_t *ret_n, size_t *ret_orphans)
{
    sqlite3 *db = open_raw();
    sqlite3_stmt *st = NULL;
    struct row *v = NULL;
    size_t n = 0;
    int r = SQLITE_ERROR;

    *ret_orphans = 0;
    if (sqlite3_prepare_v2(db, "SELECT seq, device, payload FROM batches NOT INDEXED ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 1);
        int dev = name && strcmp(name, "d0") == 0 ? 0 : name && strcmp(name, "d1") == 0 ? 1 : -1;
        const void *p = sqlite3_column_blob(st, 2);
        size_t len = (size_t)sqlite3_column_bytes(st, 2);

        if (dev < 0) {
            (*ret_orphans)++;
            continue;
        }
        v = xreallocarray(v, n + 1, sizeof(*v));
        v[n] = (struct row){.seq = sqlite3_column_int64(st, 0), .dev = dev, .len = len,
                            .payload = xmemdup(p ? p : "", len ? len : 1)};
        n++;
    }
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    *ret = v;
    *ret_n = n;
    return r == SQLITE_DONE;
}

/* Sequence numbers of the batches appended during this run, in increasing order. */
static uint64_t new_seq[MAX_NEW];

static void append(struct spool *s, unsigned i)
{
    char *p = xasprintf("new-%u", i);

    new_seq[i] = spool_append(s, i % N_DEVS, 1800000000000 + i, 1, p, strlen(p))->seq;
}

static bool is_new(uint64_t seq, unsigned appended)
{
    size_t lo = 0, hi = appended;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (new_seq[mid] == seq)
            return true;
        if (new_seq[mid] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct reader r = {data, data + size};
    unsigned mode, new_total, appended = 0, delivered_new[N_DEVS] = {0};
    struct row *rows = NULL;
    size_t n_rows = 0, orphans = 0, pos[N_DEVS] = {0}, want[N_DEVS] = {0};
    uint64_t last[N_DEVS] = {0};
    bool checked, first[N_DEVS] = {true, true};
    struct spool *s;
    int token = 0;

    if (!dir)
        init();
    if (size < 1)
        return 0;
    mode = u8(&r);
    new_total = (mode >> 2) * 8;
    if (mode & 1)
        write_damaged(&r);
    else
        write_rows(&r, mode & 2);

    /* What the spool must give back is what its table holds once it has opened the file
     * (and moved it aside, or not). A file that cannot be read through is only checked for
     * order and for nothing left behind. */
    s = spool_open(&cfg);
    checked = moved_aside() || read_rows(&rows, &n_rows, &orphans);
    if (moved_aside()) {
        for (size_t i = 0; i < n_rows; i++)
            free(rows[i].payload);
        n_rows = orphans = 0;
    }
    for (size_t i = 0; i < n_rows; i++)
        want[rows[i].dev]++;

    for (unsigned iter = 0; iter < 4 * (n_rows + new_total) + 64; iter++) {
        bool progress = false;

        if (appended < new_total && (appended < new_total / 2 || iter % 3 == 0))
            append(s, appended++), progress = true;
        for (unsigned d = 0; d < N_DEVS; d++) {
            struct batch *b = spool_next(s, d);
            if (!b)
                continue;
            if (b->device != d || (!first[d] && b->seq <= last[d]))
                BROKEN();
            first[d] = false;
            last[d] = b->seq;
            if (checked && pos[d] < want[d]) {
                /* The backlog first, row by row, as it is in the file. */
                const struct row *w = NULL;
                for (size_t i = 0, k = 0; i < n_rows && !w; i++)
                    if (rows[i].dev == (int)d && k++ == pos[d])
                        w = &rows[i];
                if (!w || (int64_t)b->seq != w->seq || b->len != w->len ||
                    memcmp(b->payload, w->payload, w->len) != 0)
                    BROKEN();
                pos[d]++;
            } else if (is_new(b->seq, appended)) {
                delivered_new[d]++;
            } else if (checked) {
                BROKEN(); /* something that was never there */
            }
            spool_sent(s, b, ++token);
            spool_ack(s, b);
            progress = true;
        }
        if (iter % 16 == 15)
            spool_flush(s);
        if (!progress && appended == new_total)
            break;
    }
    for (unsigned d = 0; d < N_DEVS; d++) {
        if (spool_pending(s, d) != 0)
            BROKEN(); /* stuck: batches it cannot send */
        if (checked && pos[d] != want[d])
            BROKEN();
        if (delivered_new[d] != new_total / N_DEVS + (d < new_total % N_DEVS))
            BROKEN();
    }
    spool_close(s);

    s = spool_open(&cfg);
    if (checked && !moved_aside() && spool_stats(s).batches != orphans)
        BROKEN();
    spool_close(s);

    for (size_t i = 0; i < n_rows; i++)
        free(rows[i].payload);
    free(rows);
    return 0;
}

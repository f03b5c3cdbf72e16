/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The spool against a real SQLite file in a temporary directory: order, commit, restart,
 * eviction and read-back of a long backlog, the size limit, quarantine, and damaged or
 * foreign files.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "spool/spool.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/time-util.h"

struct fx {
    char dir[64];
    struct config cfg;
    struct device_config dev[3];
    struct device_config *devs[3];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    strcpy(f->dir, "/tmp/tbgw-spool-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->cfg.storage.path = f->dir;
    f->cfg.storage.max_size_mb = 64;
    f->cfg.storage.commit_interval_ms = 1000;
    f->cfg.n_devices = 2;
    f->dev[0].name = (char *)"a";
    f->dev[1].name = (char *)"b";
    f->dev[2].name = (char *)"c";
    for (int i = 0; i < 3; i++) {
        f->dev[i].index = (size_t)i;
        f->devs[i] = &f->dev[i];
    }
    f->cfg.devices = f->devs;
    log_max_level = LOG_WARNING;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static struct batch *add(struct spool *s, uint32_t dev, int n)
{
    char *p = xasprintf("[{\"ts\":%d,\"values\":{\"n\":%d}}]", 1000 + n, n);

    return spool_append(s, dev, 1000 + n, 1, p, strlen(p));
}

static int payload_n(const struct batch *b)
{
    const char *p = strstr(b->payload, "\"n\":");
    return p ? atoi(p + 4) : -1;
}

static long rows(struct fx *f, const char *table)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    char path[128], sql[128];
    long n = -1;

    snprintf(path, sizeof(path), "%s/spool.db", f->dir);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* Send and acknowledge everything of dev, checking the order; returns how many. */
static int drain(struct spool *s, uint32_t dev, int first)
{
    struct batch *b;
    int n = 0;

    while ((b = spool_next(s, dev))) {
        assert_int_equal(payload_n(b), first + n);
        spool_sent(s, b, 1);
        spool_ack(s, b);
        n++;
    }
    return n;
}

static void test_order_and_acks(void **state)
{
    struct fx *f = *state;
    struct spool *s = spool_open(&f->cfg);
    struct batch *a, *b;

    for (int i = 0; i < 5; i++)
        add(s, 0, i);
    add(s, 1, 100);
    a = spool_next(s, 0);
    assert_int_equal(payload_n(a), 0);
    spool_sent(s, a, 11);
    b = spool_next(s, 0);
    assert_int_equal(payload_n(b), 1); /* the window moves on */
    spool_sent(s, b, 12);
    /* PUBACKs may come in any order. */
    assert_ptr_equal(spool_find_token(s, 0, 12), b);
    spool_ack(s, b);
    spool_requeue(s, 0, 0, true); /* session lost: a goes again, first */
    assert_ptr_equal(spool_next(s, 0), a);
    assert_int_equal(spool_pending(s, 0), 4);
    assert_int_equal(spool_stats(s).batches, 5);
    /* Nothing was committed yet: acknowledged data never touched the disk. */
    spool_flush(s);
    assert_int_equal(rows(f, "batches"), 5);
    spool_close(s);
}

/* A batch caught in flight by a commit waits for the next one: it is normally
 * acknowledged by then and never written. Still waiting then, or at a stop, it is. */
static void test_in_flight_batches_wait_one_interval(void **state)
{
    struct fx *f = *state;
    struct spool *s;
    struct batch *a, *c;

    f->cfg.storage.commit_interval_ms = 200;
    s = spool_open(&f->cfg);
    a = add(s, 0, 0);
    add(s, 0, 1);
    c = add(s, 1, 100);
    usleep(210 * 1000);
    spool_sent(s, a, 1);
    spool_sent(s, c, 2);
    spool_tick(s, now_ms()); /* due: only the batch that is not in flight is written */
    assert_int_equal(rows(f, "batches"), 1);
    spool_ack(s, c); /* acknowledged in time: never written */
    usleep(210 * 1000);
    spool_tick(s, now_ms()); /* a has waited one interval and is still unacknowledged */
    assert_int_equal(rows(f, "batches"), 2);
    spool_close(s);

    s = spool_open(&f->cfg);
    assert_int_equal(drain(s, 0, 0), 2);
    a = add(s, 1, 101);
    spool_sent(s, a, 3);
    spool_flush(s); /* stopping: everything unacknowledged goes to disk */
    assert_int_equal(rows(f, "batches"), 1);
    spool_close(s);
}

/* Commits fall on a grid of the interval, so that the uplink can close every batch it
 * holds at the very commit that must take it (batch.c): what was read before a commit is
 * on disk after it. Data reaching a spool that has been clean for longer is written at
 * once, since a batch closed for a grid instant that has just passed may be among it. The
 * clock is the caller's (the uplink's pass), so the instants here are chosen, not slept. */
static void test_commits_fall_on_a_grid(void **state)
{
    struct fx *f = *state;
    const uint64_t interval = 200;
    struct spool *s;
    uint64_t g;

    f->cfg.storage.commit_interval_ms = (int)interval;
    s = spool_open(&f->cfg);
    assert_int_equal(spool_commit_after(s, 0), interval);
    assert_int_equal(spool_commit_after(s, 199), interval);
    assert_int_equal(spool_commit_after(s, 200), 2 * interval);
    assert_int_equal(spool_commit_due_ms(s), UINT64_MAX); /* clean: nothing to commit */

    g = spool_commit_after(s, now_ms() + 2 * interval); /* clean across two instants */
    add(s, 0, 0);
    assert_true(spool_commit_due_ms(s) < g);
    spool_tick(s, g + 10); /* overdue: written at once */
    assert_int_equal(rows(f, "batches"), 1);

    add(s, 0, 1); /* the next commit is at the grid's next instant, not one whole
                   * interval after the one just made */
    assert_int_equal(spool_commit_due_ms(s), g + interval);
    spool_tick(s, g + interval - 1);
    assert_int_equal(rows(f, "batches"), 1);
    spool_tick(s, g + interval);
    assert_int_equal(rows(f, "batches"), 2);
    assert_int_equal(spool_commit_due_ms(s), UINT64_MAX);
    spool_close(s);
}

/* The uplink commits at the end of a pass by the clock it read at the start, so a batch
 * sent during that pass was sent after the commit's now: it is in flight like any other,
 * and not written. */
static void test_batch_sent_in_the_committing_pass_waits(void **state)
{
    struct fx *f = *state;
    struct spool *s;
    struct batch *a;
    uint64_t now;

    f->cfg.storage.commit_interval_ms = 200;
    s = spool_open(&f->cfg);
    usleep(210 * 1000);
    now = now_ms(); /* the pass begins; a commit is due */
    a = add(s, 0, 0);
    usleep(2 * 1000);
    spool_sent(s, a, 1);
    spool_tick(s, now);
    assert_int_equal(rows(f, "batches"), 0);
    spool_ack(s, a);
    spool_flush(s);
    assert_int_equal(rows(f, "batches"), 0);
    spool_close(s);
}

static void test_restart_resumes_in_order(void **state)
{
    struct fx *f = *state;
    struct spool *s = spool_open(&f->cfg);

    for (int i = 0; i < 10; i++)
        add(s, 0, i);
    for (int i = 0; i < 3; i++)
        add(s, 1, 100 + i);
    spool_close(s); /* graceful stop commits */

    s = spool_open(&f->cfg);
    assert_int_equal(spool_stats(s).batches, 13);
    assert_int_equal(spool_stats(s).oldest_ts, 1000);
    add(s, 0, 10); /* live data queues behind the backlog */
    assert_int_equal(drain(s, 0, 0), 11);
    assert_int_equal(drain(s, 1, 100), 3);
    spool_flush(s);
    assert_int_equal(rows(f, "batches"), 0);
    spool_close(s);
}

static void test_long_backlog_is_bounded_in_memory(void **state)
{
    struct fx *f = *state;
    struct spool *s = spool_open(&f->cfg);
    const int n = 3000;

    for (int i = 0; i < n; i++) {
        add(s, 0, i);
        if (i % 100 == 99)
            spool_flush(s); /* as the commit timer would */
    }
    spool_flush(s);
    /* Live data keeps coming while the backlog drains. */
    for (int i = 0; i < n;) {
        struct batch *b = spool_next(s, 0);
        assert_non_null(b);
        assert_int_equal(payload_n(b), i);
        spool_sent(s, b, i);
        spool_ack(s, b);
        i++;
        if (i == n / 2) {
            for (int k = 0; k < 10; k++)
                add(s, 0, n + k);
            spool_flush(s);
        }
    }
    assert_int_equal(drain(s, 0, n), 10);
    spool_close(s);
}

static void test_restart_with_long_backlog(void **state)
{
    struct fx *f = *state;
    struct spool *s = spool_open(&f->cfg);

    for (int i = 0; i < 1000; i++)
        add(s, 1, i);
    spool_close(s);
    s = spool_open(&f->cfg);
    assert_int_equal(drain(s, 1, 0), 1000);
    spool_close(s);
}

static void test_size_limit_drops_oldest(void **state)
{
    struct fx *f = *state;
    struct spool *s;
    struct spool_stats st;
    char *big;

    f->cfg.storage.max_size_mb = 1;
    s = spool_open(&f->cfg);
    for (int i = 0; i < 40; i++) {
        big = xmalloc(64 * 1024 + 1);
        memset(big, 'x', 64 * 1024);
        big[64 * 1024] = '\0';
        snprintf(big, 32, "{\"n\":%d}", i);
        big[strlen(big)] = ' ';
        spool_append(s, (uint32_t)(i % 2), i, 1, big, 64 * 1024);
        if (i % 5 == 4)
            spool_flush(s);
    }
    st = spool_stats(s);
    assert_true(st.bytes <= 1u << 20);
    assert_true(st.dropped >= 24);
    assert_int_equal(st.batches + st.dropped, 40);
    /* What is left is the newest. */
    assert_true(payload_n(spool_next(s, 0)) >= 24);
    spool_close(s);
    f->cfg.storage.max_size_mb = 64;
}

/* A session close never blames the data by itself: only a batch that closed the session
 * twice while it was sent alone, first after a CONNACK, is quarantined. */
/* A new session starts: later than anything sent in the one before. */
static uint64_t new_session(void)
{
    usleep(2000);
    return now_ms();
}

static void test_quarantine(void **state)
{
    struct fx *f = *state;
    struct spool *s = spool_open(&f->cfg);
    struct batch *b;
    uint64_t session;

    add(s, 0, 0);
    add(s, 0, 1);
    /* An outage or a rate limit: sessions close with valid batches in flight, many times
     * (the old rule quarantined the first after three). */
    for (int round = 0; round < 6; round++) {
        session = new_session();
        b = spool_next(s, 0);
        assert_int_equal(payload_n(b), 0);
        spool_sent(s, b, round);
        spool_sent(s, spool_next(s, 0), 100 + round);
        /* paho may fail the publish before it reports the lost session */
        b->inflight = false;
        spool_requeue(s, 0, session, true); /* the session closed right after */
    }
    assert_int_equal(spool_stats(s).quarantined, 0);
    /* The first one is now a suspect: the sender sends it alone. */
    b = spool_next(s, 0);
    assert_true(spool_batch_alone(b));
    assert_false(spool_batch_alone(b->next));
    /* A close that is not the data's fault (judge false) counts for nothing. */
    for (int round = 0; round < 3; round++) {
        session = new_session();
        spool_sent(s, spool_next(s, 0), 200 + round);
        spool_requeue(s, 0, session, false);
    }
    assert_int_equal(spool_stats(s).quarantined, 0);
    /* Alone, first after the CONNACK, and the session closes: once is not yet proof. */
    session = new_session();
    spool_sent(s, spool_next(s, 0), 300);
    spool_requeue(s, 0, session, true);
    assert_int_equal(spool_stats(s).quarantined, 0);
    session = new_session();
    spool_sent(s, spool_next(s, 0), 301);
    spool_requeue(s, 0, session, true);
    /* Twice is: it is out of the way and kept; the innocent second goes on. */
    assert_int_equal(spool_stats(s).quarantined, 1);
    assert_int_equal(payload_n(spool_next(s, 0)), 1);
    assert_false(spool_batch_alone(spool_next(s, 0)));
    spool_close(s);
    assert_int_equal(rows(f, "quarantine"), 1);
    assert_int_equal(rows(f, "batches"), 1);
}

/* A batch alone in a session in which another was acknowledged was not first after the
 * CONNACK: the close proves nothing against it. */
static void test_no_quarantine_after_an_ack(void **state)
{
    struct fx *f = *state;
    struct spool *s = spool_open(&f->cfg);
    struct batch *b;

    add(s, 0, 0);
    for (int i = 1; i < 8; i++)
        add(s, 0, i);
    for (int round = 0; round < 6; round++) {
        uint64_t session = new_session();

        b = spool_next(s, 0);
        spool_sent(s, b, 2 * round);
        spool_ack(s, b);
        spool_sent(s, spool_next(s, 0), 2 * round + 1);
        spool_requeue(s, 0, session, true);
    }
    assert_int_equal(spool_stats(s).quarantined, 0);
    spool_close(s);
}

static void test_damaged_file_moved_aside(void **state)
{
    struct fx *f = *state;
    char path[128], cmd[256];
    FILE *fp;
    struct spool *s;

    snprintf(path, sizeof(path), "%s/spool.db", f->dir);
    fp = fopen(path, "w");
    fputs("this is not a database, but it is long enough to look like a header ......", fp);
    for (int i = 0; i < 200; i++)
        fputs("garbage garbage garbage garbage garbage garbage garbage garbage\n", fp);
    fclose(fp);
    log_max_level = -1; /* the error line is expected */
    s = spool_open(&f->cfg);
    log_max_level = LOG_WARNING;
    add(s, 0, 7);
    spool_close(s);
    assert_int_equal(rows(f, "batches"), 1);
    snprintf(cmd, sizeof(cmd), "ls %s/spool.db.damaged-* >/dev/null 2>&1", f->dir);
    assert_int_equal(system(cmd), 0);
}

static void test_foreign_database_moved_aside(void **state)
{
    struct fx *f = *state;
    char path[128], cmd[256];
    sqlite3 *db;
    struct spool *s;

    snprintf(path, sizeof(path), "%s/spool.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
                                      "INSERT INTO meta VALUES ('application','other')",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    log_max_level = -1;
    s = spool_open(&f->cfg);
    log_max_level = LOG_WARNING;
    add(s, 0, 1);
    spool_close(s);
    snprintf(cmd, sizeof(cmd), "ls %s/spool.db.damaged-* >/dev/null 2>&1", f->dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(rows(f, "batches"), 1);
}

/* Sequence numbers start at 1: a row at 0 (or below, or near the end of int64) was never
 * written by tbgw, would never be read back and kept its device from sending anything new
 * (tests/fuzz/corpus/spool/regress-seq-zero). Such a file is damaged. */
static void test_rows_out_of_range_moved_aside(void **state)
{
    static const char *const rows_sql[] = {
        "INSERT INTO batches VALUES (0,'a',1,1,0,x'00')",
        "INSERT INTO batches VALUES (-5,'a',1,1,0,x'00')",
        "INSERT INTO batches VALUES (9223372036854775807,'b',1,1,0,x'00')",
    };
    struct fx *f = *state;
    char path[128], cmd[256];
    struct spool *s;
    sqlite3 *db;

    snprintf(path, sizeof(path), "%s/spool.db", f->dir);
    for (size_t i = 0; i < sizeof(rows_sql) / sizeof(rows_sql[0]); i++) {
        snprintf(cmd, sizeof(cmd), "rm -f %s/spool.db*", f->dir);
        assert_int_equal(system(cmd), 0);
        s = spool_open(&f->cfg);
        add(s, 0, 1);
        spool_close(s);
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, rows_sql[i], NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
        log_max_level = -1; /* the error line is expected */
        s = spool_open(&f->cfg);
        log_max_level = LOG_WARNING;
        add(s, 0, 0);
        assert_int_equal(drain(s, 0, 0), 1); /* the new batch goes out */
        spool_close(s);
        snprintf(cmd, sizeof(cmd), "ls %s/spool.db.damaged-* >/dev/null 2>&1", f->dir);
        assert_int_equal(system(cmd), 0);
    }
}

/* A header that says "written by a later SQLite" opens read-only: every commit would fail
 * and the backlog in it would never go out (tests/fuzz/corpus/spool/regress-readonly-header). */
static void test_readonly_format_moved_aside(void **state)
{
    struct fx *f = *state;
    char path[128], cmd[256];
    struct spool *s;
    FILE *fp;

    s = spool_open(&f->cfg);
    add(s, 0, 1);
    spool_close(s);
    snprintf(path, sizeof(path), "%s/spool.db", f->dir);
    fp = fopen(path, "r+b");
    assert_non_null(fp);
    fseek(fp, 18, SEEK_SET); /* file format write version */
    fputc(3, fp);
    fclose(fp);
    log_max_level = -1; /* the error line is expected */
    s = spool_open(&f->cfg);
    log_max_level = LOG_WARNING;
    add(s, 0, 0);
    spool_flush(s);
    assert_int_equal(drain(s, 0, 0), 1);
    spool_close(s);
    snprintf(cmd, sizeof(cmd), "ls %s/spool.db.damaged-* >/dev/null 2>&1", f->dir);
    assert_int_equal(system(cmd), 0);
}

static void test_orphans_kept_then_dropped_first(void **state)
{
    struct fx *f = *state;
    struct spool *s;

    f->cfg.n_devices = 3;
    s = spool_open(&f->cfg);
    for (int i = 0; i < 5; i++)
        add(s, 2, i);
    spool_close(s);
    f->cfg.n_devices = 2; /* device "c" removed from the configuration */
    log_max_level = LOG_ERR;
    s = spool_open(&f->cfg);
    assert_int_equal(spool_stats(s).batches, 5);
    spool_close(s);
    assert_int_equal(rows(f, "batches"), 5); /* kept */

    /* When room is needed, the unsendable rows go before any configured device's data. */
    f->cfg.storage.max_size_mb = 1;
    s = spool_open(&f->cfg);
    for (int i = 0; i < 16; i++) {
        char *big = xmalloc(65536);
        memset(big, ' ', 65535);
        big[65535] = '\0';
        snprintf(big, 16, "{\"n\":%d}", i);
        big[strlen(big)] = ' ';
        spool_append(s, 0, i, 1, big, 65535);
    }
    assert_int_equal(spool_stats(s).dropped, 5);
    assert_int_equal(payload_n(spool_next(s, 0)), 0);
    spool_close(s);
    f->cfg.storage.max_size_mb = 64;
    log_max_level = LOG_WARNING;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_and_acks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_flight_batches_wait_one_interval, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commits_fall_on_a_grid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_sent_in_the_committing_pass_waits, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_restart_resumes_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_backlog_is_bounded_in_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_with_long_backlog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_limit_drops_oldest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quarantine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_quarantine_after_an_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_file_moved_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_database_moved_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rows_out_of_range_moved_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_format_moved_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_orphans_kept_then_dropped_first, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

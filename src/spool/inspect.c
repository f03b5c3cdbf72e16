/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The spool's quarantine, read for `tbgwctl spool`: see inspect.h. Thread: any. */
#include "config.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool/inspect.h"
#include "util/macros.h"
#include "util/utf8.h"

static json_object *row_json(sqlite3_stmt *st)
{
    json_object *o = json_object_new_object();
    const char *dev = (const char *)sqlite3_column_text(st, 1);
    const char *reason = (const char *)sqlite3_column_text(st, 4);
    const void *blob = sqlite3_column_blob(st, 6);
    int len = sqlite3_column_bytes(st, 6);
    char *payload = utf8_sanitize_dup(blob ? blob : "", (size_t)MAX(len, 0));

    json_object_object_add(o, "seq", json_object_new_int64(sqlite3_column_int64(st, 0)));
    json_object_object_add(o, "device", json_object_new_string(dev ? dev : ""));
    json_object_object_add(o, "first_ts", json_object_new_int64(sqlite3_column_int64(st, 2)));
    json_object_object_add(o, "values", json_object_new_int64(sqlite3_column_int64(st, 3)));
    json_object_object_add(o, "reason", json_object_new_string(reason ? reason : ""));
    json_object_object_add(o, "quarantined_at", json_object_new_int64(sqlite3_column_int64(st, 5)));
    json_object_object_add(o, "payload", json_object_new_string(payload));
    free(payload);
    return o;
}

json_object *spool_quarantine_json(const char *storage_path, char *err, size_t errlen)
{
    static const char sql[] =
        "SELECT seq, device, first_ts, n_values, reason, at, payload FROM "
        "(SELECT * FROM quarantine ORDER BY seq DESC LIMIT ?) ORDER BY seq";
    char *path = xasprintf("%s/spool.db", storage_path);
    json_object *root = json_object_new_object(), *list = json_object_new_array();
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t total = 0;
    int r;

    json_object_object_add(root, "batches", list);
    if (access(path, F_OK) < 0 && errno == ENOENT)
        goto out; /* nothing spooled yet */
    r = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
    if (r == SQLITE_OK) {
        sqlite3_busy_timeout(db, 1000);
        r = sqlite3_prepare_v2(db, "SELECT count(*) FROM quarantine", -1, &st, NULL);
    }
    if (r == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        total = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    if (r == SQLITE_OK)
        r = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (r == SQLITE_OK) {
        sqlite3_bind_int(st, 1, SPOOL_INSPECT_MAX);
        while ((r = sqlite3_step(st)) == SQLITE_ROW)
            json_object_array_add(list, row_json(st));
        if (r == SQLITE_DONE)
            r = SQLITE_OK;
    }
    if (r != SQLITE_OK) {
        snprintf(err, errlen, "cannot read the quarantine of '%s': %s", path,
                 db ? sqlite3_errmsg(db) : sqlite3_errstr(r));
        json_object_put(root);
        root = NULL;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
out:
    if (root)
        json_object_object_add(root, "quarantined", json_object_new_int64(total));
    free(path);
    return root;
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once
/*
 * What the spool file keeps for inspection: the batches quarantined because the Edge
 * closed the session twice when each was sent alone (spool.c, "Rejection").
 *
 * Reads <storage.path>/spool.db through its own read-only SQLite connection, so any
 * thread may call it while the uplink writes the file (WAL). Thread: any.
 */
#include <json-c/json.h>
#include <stddef.h>

#define SPOOL_INSPECT_MAX 100 /* batches listed at most, the newest */

/* {"quarantined": N, "batches": [{"seq", "device", "first_ts", "values", "reason",
 * "quarantined_at", "payload"}, ...]} (the newest SPOOL_INSPECT_MAX, oldest first), or NULL
 * with a message in err. A missing file is an empty list. */
json_object *spool_quarantine_json(const char *storage_path, char *err, size_t errlen);

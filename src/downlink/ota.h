/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Over-the-air updates of field devices (thingsboard-device-api.md §10): firmware over
 * v2/fw, software over v2/sw. See ota.c for the flow.
 *
 * Thread: uplink.
 */
#ifndef TBGW_DOWNLINK_OTA_H
#define TBGW_DOWNLINK_OTA_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct downlink;
struct dl_dev;

void ota_init(struct downlink *dl);
void ota_free(struct downlink *dl);
void ota_connected(struct downlink *dl, struct dl_dev *d);
void ota_disconnected(struct downlink *dl, struct dl_dev *d);

/* fw_* / sw_* keys of a shared-attribute message (or of the attribute response). */
void ota_attributes(struct downlink *dl, struct dl_dev *d, json_object *o, bool push);
/* {"deleted": [...]} */
void ota_deleted(struct downlink *dl, struct dl_dev *d, json_object *keys);
/* Is this shared-attribute key one of ours? */
bool ota_key(const char *key);
/* Append ",fw_title,…" to buf (size bytes) for the attribute request at connect; returns
 * the length it needs (buf NULL: only measure). */
size_t ota_request_keys(char *buf, size_t size);
/* v2/fw|sw responses and errors. True if the message was an OTA one. */
bool ota_message(struct downlink *dl, struct dl_dev *d, const char *topic, const char *payload,
                 size_t len);
void ota_tick(struct downlink *dl, uint64_t now_ms);

/* ---- announcements and topics: pure, fuzzed (tests/fuzz/fuzz-ota) ---- */

enum ota_kind {
    OTA_FW, /* fw_* keys, v2/fw topics */
    OTA_SW, /* sw_* keys, v2/sw topics */
    N_OTA_KINDS
};

/* A package as the shared attributes describe it. Strings are valid UTF-8 without control
 * characters (they go back out in telemetry and log lines), or NULL when not announced. */
struct ota_package {
    char *title, *version, *checksum, *alg, *tag, *url;
    long long size; /* -1: unknown */
};

/* Free what p holds and leave it empty (size -1). A zeroed package may be cleared too. */
void ota_package_clear(struct ota_package *p);

/* Apply the fw_* / sw_* members of a shared-attribute object to pkg[OTA_FW] and
 * pkg[OTA_SW]; an announcement may arrive in several messages. Returns the kinds touched
 * as a bit mask (1 << kind). */
unsigned ota_announce(struct ota_package *const pkg[N_OTA_KINDS], json_object *o);

/* The keys of {"deleted": [...]}. Returns the kinds whose package was unassigned (its
 * title or version deleted: the package is cleared) as a bit mask. */
unsigned ota_unannounce(struct ota_package *const pkg[N_OTA_KINDS], json_object *keys);

/* 0: the package is complete and tbgw can fetch it; -EAGAIN: not complete yet (the rest
 * of the push follows); -ENOTSUP: it is a URL, not an MQTT download; -EINVAL: unknown
 * checksum algorithm. */
int ota_package_check(const struct ota_package *p);

/* "v2/<fw|sw>/response/<req>/chunk/<n>": the kind, with *ret_req and *ret_n; -EINVAL for
 * any other topic. */
int ota_chunk_topic(const char *topic, int *ret_req, unsigned *ret_n);

#endif

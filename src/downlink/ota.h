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

struct uplink;
struct up_dev;

void ota_init(struct uplink *u);
void ota_free(struct uplink *u);
void ota_connected(struct uplink *u, struct up_dev *d);
void ota_disconnected(struct uplink *u, struct up_dev *d);

/* fw_* / sw_* keys of a shared-attribute message (or of the attribute response). */
void ota_attributes(struct uplink *u, struct up_dev *d, json_object *o);
/* {"deleted": [...]} */
void ota_deleted(struct uplink *u, struct up_dev *d, json_object *keys);
/* Is this shared-attribute key one of ours? */
bool ota_key(const char *key);
/* Append ",fw_title,…" to buf (size bytes) for the attribute request at connect; returns
 * the length it needs (buf NULL: only measure). */
size_t ota_request_keys(char *buf, size_t size);
/* v2/fw|sw responses and errors. True if the message was an OTA one. */
bool ota_message(struct uplink *u, struct up_dev *d, const char *topic, const char *payload,
                 size_t len);
void ota_tick(struct uplink *u, uint64_t now_ms);

#endif

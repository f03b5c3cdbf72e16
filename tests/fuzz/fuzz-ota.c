/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz target: firmware and software announcements (src/downlink/ota.c). Each line of the
 * input is one message from the Edge, applied in order to one device's packages, as the
 * router hands them to ota.c:
 *   a shared-attribute object            {"fw_title":…,"fw_version":…,"fw_size":…}
 *   an attribute response                {"shared":{…}}
 *   a deletion                           {"deleted":["fw_title",…]}
 *   a chunk topic                        v2/fw/response/7/chunk/3
 *
 * Promises checked (abort when broken): announced strings are valid UTF-8 without control
 * characters, since they go back out in fw_state telemetry and into log lines; a package
 * is declared ready only when everything a download needs is there; a chunk topic is
 * understood only when it names one kind, a request id and a chunk number, and reads the
 * same when written back.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "downlink/ota.h"
#include "downlink/rpc.h"
#include "tests/fuzz/fuzz.h"
#include "util/checksum.h"
#include "util/utf8.h"

static void check_text(const char *s)
{
    if (!s)
        return;
    if (!utf8_valid(s, strlen(s)))
        BROKEN();
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            BROKEN();
}

static void check_package(const struct ota_package *p)
{
    int r = ota_package_check(p);

    check_text(p->title);
    check_text(p->version);
    check_text(p->checksum);
    check_text(p->alg);
    check_text(p->tag);
    check_text(p->url);
    if (p->size < -1)
        BROKEN();
    if (r == 0 && (!p->title || !p->version || !p->checksum || !p->alg || p->size < 0 ||
                   p->url || checksum_alg_from_string(p->alg) < 0))
        BROKEN();
    if (r != 0 && r != -EAGAIN && r != -ENOTSUP && r != -EINVAL)
        BROKEN();
}

static void chunk_topic(const char *topic)
{
    int req, k, req2;
    unsigned n, n2;
    char again[64];

    k = ota_chunk_topic(topic, &req, &n);
    if (k < 0)
        return;
    if (k >= N_OTA_KINDS || req < 0)
        BROKEN();
    snprintf(again, sizeof(again), "v2/%s/response/%d/chunk/%u", k == OTA_FW ? "fw" : "sw", req,
             n);
    if (ota_chunk_topic(again, &req2, &n2) != k || req2 != req || n2 != n)
        BROKEN();
}

static void message(struct ota_package *const pkg[N_OTA_KINDS], const char *line, size_t len)
{
    json_object *o, *m;

    if (len >= 3 && memcmp(line, "v2/", 3) == 0) {
        char *topic = fuzz_strndup((const uint8_t *)line, len);
        chunk_topic(topic);
        free(topic);
        return;
    }
    o = attributes_parse(line, len);
    if (!o)
        return;
    /* As router.c: a deletion message, an attribute response, or shared attributes. */
    if (json_object_object_get_ex(o, "deleted", &m) && json_object_is_type(m, json_type_array) &&
        json_object_object_length(o) == 1)
        ota_unannounce(pkg, m);
    else if ((m = attributes_response_shared(o)))
        ota_announce(pkg, m);
    else
        ota_announce(pkg, o);
    json_object_put(o);
    for (int k = 0; k < N_OTA_KINDS; k++)
        check_package(pkg[k]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ota_package fw, sw;
    struct ota_package *const pkg[N_OTA_KINDS] = {&fw, &sw};
    const char *s = (const char *)data, *end = s + size;

    memset(&fw, 0, sizeof(fw));
    memset(&sw, 0, sizeof(sw));
    ota_package_clear(&fw);
    ota_package_clear(&sw);
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t len = nl ? (size_t)(nl - s) : (size_t)(end - s);

        message(pkg, s, len);
        s += len + (nl ? 1 : 0);
    }
    ota_package_clear(&fw);
    ota_package_clear(&sw);
    return 0;
}

/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uplink/credstore.h"
#include "util/fileio.h"
#include "util/log.h"
#include "util/macros.h"

#define CREDSTORE_MAX_BYTES (4u << 20)

struct entry {
    char *device;
    struct tb_provisioned p;
};

struct credstore {
    char *path;
    struct entry *v;
    size_t n;
};

static char *get_str(json_object *o, const char *name)
{
    json_object *m;

    if (!json_object_object_get_ex(o, name, &m) || !json_object_is_type(m, json_type_string))
        return NULL;
    return xstrdup(json_object_get_string(m));
}

static void add(struct credstore *cs, const char *device, const struct tb_provisioned *p)
{
    cs->v = xreallocarray(cs->v, cs->n + 1, sizeof(*cs->v));
    cs->v[cs->n].device = xstrdup(device);
    cs->v[cs->n].p = *p;
    cs->n++;
}

static int parse(struct credstore *cs, const char *text)
{
    json_object *root = json_tokener_parse(text), *devs;

    if (!root || !json_object_object_get_ex(root, "devices", &devs) ||
        !json_object_is_type(devs, json_type_object)) {
        json_object_put(root);
        return -EBADMSG;
    }
    json_object_object_foreach(devs, name, o) {
        struct tb_provisioned p = {0};
        char *type = get_str(o, "type");

        if (type && strcmp(type, "ACCESS_TOKEN") == 0) {
            p.type = PROV_TOKEN;
            p.token = get_str(o, "token");
        } else if (type && strcmp(type, "MQTT_BASIC") == 0) {
            p.type = PROV_MQTT_BASIC;
            p.client_id = get_str(o, "clientId");
            p.username = get_str(o, "userName");
            p.password = get_str(o, "password");
        } else if (type && strcmp(type, "X509_CERTIFICATE") == 0) {
            p.type = PROV_X509;
            p.cert = get_str(o, "cert");
        }
        free(type);
        if (p.token || p.client_id || p.username || p.cert)
            add(cs, name, &p);
        else
            tb_provisioned_clear(&p);
    }
    json_object_put(root);
    return 0;
}

struct credstore *credstore_load(const char *dir)
{
    struct credstore *cs = xcalloc(1, sizeof(*cs));
    char *text = NULL;
    int r;

    cs->path = xasprintf("%s/credentials.json", dir);
    r = read_file(cs->path, &text, NULL, CREDSTORE_MAX_BYTES);
    if (r == -ENOENT)
        return cs;
    if (r == 0)
        r = parse(cs, text);
    free(text);
    if (r < 0) {
        char *aside = xasprintf("%s.damaged", cs->path);
        if (rename(cs->path, aside) == 0)
            log_error_errno(r, "'%s' is unreadable (%m); moved aside to '%s'. Devices that "
                               "provisioned themselves before must be given their credentials "
                               "again.",
                            cs->path, aside);
        else
            log_error_errno(r, "'%s' is unreadable: %m", cs->path);
        free(aside);
    }
    return cs;
}

struct credstore *credstore_free(struct credstore *cs)
{
    if (!cs)
        return NULL;
    for (size_t i = 0; i < cs->n; i++) {
        free(cs->v[i].device);
        tb_provisioned_clear(&cs->v[i].p);
    }
    free(cs->v);
    free(cs->path);
    free(cs);
    return NULL;
}

const struct tb_provisioned *credstore_get(const struct credstore *cs, const char *device)
{
    for (size_t i = 0; i < cs->n; i++)
        if (strcmp(cs->v[i].device, device) == 0)
            return &cs->v[i].p;
    return NULL;
}

static void put_str(json_object *o, const char *name, const char *v)
{
    if (v)
        json_object_object_add(o, name, json_object_new_string(v));
}

static int save(const struct credstore *cs)
{
    json_object *root = json_object_new_object(), *devs = json_object_new_object();
    const char *text;
    int r;

    json_object_object_add(root, "version", json_object_new_int(1));
    json_object_object_add(root, "devices", devs);
    for (size_t i = 0; i < cs->n; i++) {
        const struct tb_provisioned *p = &cs->v[i].p;
        json_object *o = json_object_new_object();
        static const char *const types[] = {"ACCESS_TOKEN", "MQTT_BASIC", "X509_CERTIFICATE"};

        put_str(o, "type", types[p->type]);
        put_str(o, "token", p->token);
        put_str(o, "clientId", p->client_id);
        put_str(o, "userName", p->username);
        put_str(o, "password", p->password);
        put_str(o, "cert", p->cert);
        json_object_object_add(devs, cs->v[i].device, o);
    }
    text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY);
    r = write_file_atomic(cs->path, text, strlen(text), 0600);
    json_object_put(root);
    return r;
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

int credstore_put(struct credstore *cs, const char *device, const struct tb_provisioned *p)
{
    struct tb_provisioned copy = {
        .type = p->type,
        .token = dup_or_null(p->token),
        .client_id = dup_or_null(p->client_id),
        .username = dup_or_null(p->username),
        .password = dup_or_null(p->password),
        .cert = dup_or_null(p->cert),
    };

    for (size_t i = 0; i < cs->n; i++) {
        if (strcmp(cs->v[i].device, device) == 0) {
            tb_provisioned_clear(&cs->v[i].p);
            cs->v[i].p = copy;
            return save(cs);
        }
    }
    add(cs, device, &copy);
    return save(cs);
}

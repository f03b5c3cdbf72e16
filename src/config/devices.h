/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One device's settings, built from its layers (a template, then the device's own group):
 * the device rows, its tag lists, credentials, OTA and serial-line settings, and the rules
 * that span them. Private to src/config/.
 */
#ifndef TBGW_CONFIG_DEVICES_H
#define TBGW_CONFIG_DEVICES_H

#include "config/walk.h"

struct layer {
    const config_setting_t *s; /* the device's or the template's group */
    const char *path;
    const char *note;          /* for the template layer */
};

/* The tags of list (telemetry, attributes, writes or rpc) of dev into out. */
void cf_parse_tags(struct load *ld, const config_setting_t *list, const char *path,
                   enum tag_role role, const struct device_config *dev, struct tag_list *out);
/* An array of strings; NULL-terminated, owned by the caller. */
char **cf_parse_strings(struct load *ld, const config_setting_t *arr, const char *path);
/* A sub-group (ota, mqtt, …) of layer into target, with its defaults and required rows. */
void cf_parse_group_into(struct load *ld, const struct layer *layer, const char *name,
                         const struct key *keys, unsigned scope, const char *driver_desc,
                         void *target);
/* Exactly one credential form (token, mqtt, x509, provision) of group ds into c (a
 * device's, or edge.gateway's); who names the owner in messages. */
void cf_parse_creds(struct load *ld, const config_setting_t *ds, const char *path,
                    struct credentials *c, const char *who, unsigned scope,
                    const char *driver_desc);
/* Exactly one credential form (token, mqtt, x509, provision) of the device group ds; in
 * gateway mode, none (one is an error). */
void cf_parse_credentials(struct load *ld, const config_setting_t *ds, const char *path,
                          struct device_config *d, unsigned scope, const char *driver_desc);
/* Rules across one device's settings; clean: no error was found in it so far. */
void cf_check_device(struct load *ld, const config_setting_t *ds, const char *path,
                     struct device_config *d, bool clean);
/* The settings of one device from layers = [template?, device]. */
void cf_parse_device_layers(struct load *ld, const struct layer *layers, size_t n_layers,
                            struct device_config *d, unsigned drv_scope,
                            const char *driver_desc);
void cf_device_free(struct device_config *d);

#endif

/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A device's identification (Modbus function 43 / MEI type 14, "Read Device
 * Identification"): the basic objects every conforming device has (vendor name, product
 * code, revision) and the regular ones some have. Published as client attributes under the
 * names below, and printed by `tbgwctl identify`.
 *
 * Pure data. Thread: any (an ident belongs to whoever filled it).
 */
#ifndef TBGW_CORE_IDENT_H
#define TBGW_CORE_IDENT_H

#include <stdlib.h>

enum ident_object {
    IDENT_VENDOR_NAME,  /* object 0, basic */
    IDENT_PRODUCT_CODE, /* 1, basic */
    IDENT_REVISION,     /* 2, basic: MajorMinorRevision */
    IDENT_VENDOR_URL,   /* 3, regular */
    IDENT_PRODUCT_NAME, /* 4, regular */
    IDENT_MODEL_NAME,   /* 5, regular */
    N_IDENT_OBJECTS
};

struct device_ident {
    char *obj[N_IDENT_OBJECTS]; /* NULL: the device did not send it */
};

/* The client attribute name of each object. */
static const char *const ident_attribute_names[N_IDENT_OBJECTS] = {
    "vendorName", "productCode", "revision", "vendorUrl", "productName", "modelName",
};

static inline void device_ident_clear(struct device_ident *id)
{
    for (int i = 0; i < N_IDENT_OBJECTS; i++) {
        free(id->obj[i]);
        id->obj[i] = NULL;
    }
}

#endif

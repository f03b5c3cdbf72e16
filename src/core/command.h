/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A command for a bus: write a value, read a value now, or release/retake the port. It is
 * what the downlink router, the control socket and the OTA runner send to the one thread
 * that may touch the hardware, and what comes back with the result.
 *
 * Ownership: the sender allocates the command and gives it to cmdq_push(); the bus
 * executes it and calls done(cmd) on the bus thread, which hands ownership back (done
 * typically posts it to the sender's own queue). A command whose push fails stays with
 * the sender.
 */
#ifndef TBGW_CORE_COMMAND_H
#define TBGW_CORE_COMMAND_H

#include <stdint.h>
#include <stdlib.h>

#include "config/config.h"
#include "core/ident.h"
#include "core/value.h"

enum cmd_kind {
    CMD_WRITE, /* write value to tag */
    CMD_READ,  /* read tag now; the answer is in out */
    CMD_PAUSE, /* close the port until CMD_RESUME (OTA with exclusive_bus) */
    CMD_RESUME,
    CMD_IDENTIFY, /* read the device identification; the answer is in ident */
};

struct command {
    enum cmd_kind kind;
    uint32_t device;       /* struct device_config.index */
    struct tag_config tag; /* what to read/write; strings borrowed from the config */
    struct value value;    /* CMD_WRITE: the value, in the tag's engineering units */

    /* Filled in by the bus. */
    int result;            /* 0, or -errno (EMBX* for Modbus exceptions) */
    const char *hint;      /* with an error: what to change (static text), or NULL */
    struct value out;      /* CMD_READ */
    struct device_ident ident; /* CMD_IDENTIFY */
    uint32_t latency_us;

    void (*done)(struct command *cmd);
    void *ctx;             /* the sender's */
    uint64_t ctx_id;       /* the sender's */
    struct command *next;  /* queue link */
};

static inline void command_free(struct command *c)
{
    if (!c)
        return;
    value_clear(&c->value);
    value_clear(&c->out);
    device_ident_clear(&c->ident);
    free(c);
}

#endif

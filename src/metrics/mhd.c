/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Loading libmicrohttpd (see mhd.h). MHD_SONAME comes from configure: the library the
 * headers belong to.
 *
 * Thread: main.
 */
#include "config.h"

#include <dlfcn.h>
#include <stddef.h>

#include "metrics/mhd.h"
#include "util/log.h"

static struct mhd api;
static bool loaded;

static bool sym(void *lib, const char *name, void **ret)
{
    *ret = dlsym(lib, name);
    if (!*ret)
        log_error("metrics: %s has no %s: %s", MHD_SONAME, name, dlerror());
    return *ret != NULL;
}

const struct mhd *mhd_load(void)
{
    struct mhd a;
    void *lib;

    if (loaded)
        return &api;
    lib = dlopen(MHD_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        log_error("metrics: cannot load %s (apt-get install libmicrohttpd12, or "
                  "libmicrohttpd12t64 from Debian 13 on): %s", MHD_SONAME, dlerror());
        return NULL;
    }
    if (!sym(lib, "MHD_start_daemon", (void **)&a.start_daemon) ||
        !sym(lib, "MHD_stop_daemon", (void **)&a.stop_daemon) ||
        !sym(lib, "MHD_run", (void **)&a.run) ||
        !sym(lib, "MHD_get_timeout", (void **)&a.get_timeout) ||
        !sym(lib, "MHD_get_daemon_info", (void **)&a.get_daemon_info) ||
        !sym(lib, "MHD_create_response_from_buffer", (void **)&a.create_response_from_buffer) ||
        !sym(lib, "MHD_add_response_header", (void **)&a.add_response_header) ||
        !sym(lib, "MHD_queue_response", (void **)&a.queue_response) ||
        !sym(lib, "MHD_destroy_response", (void **)&a.destroy_response)) {
        dlclose(lib);
        return NULL;
    }
    api = a;
    loaded = true;
    return &api;
}
